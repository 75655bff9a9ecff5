#!/usr/bin/env bash
# The language-model demo, one fairseq step at a time, on the embedded Shakespeare plays:
# tokenize -> fairseq-preprocess -> fairseq-hydra-train -> fairseq-eval-lm (valid, test), and the
# unigram perplexity of the same test tokens for comparison. About 5 minutes on 2 CPU cores.
#
#   bash examples/language_model/demo.sh            # outputs under demo_output/
#   WORK=/tmp/lm MAX_EPOCH=2 bash examples/language_model/demo.sh
#
# Rerunning continues from demo_output/checkpoints/checkpoint_last.pt (fairseq's resume rule).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-demo_output}
MAX_EPOCH=${MAX_EPOCH:-4}
start=$(date +%s)

python examples/language_model/prepare_shakespeare.py --out "$WORK/tokens"

fairseq-preprocess --only-source \
  --trainpref "$WORK/tokens/train.tokens" --validpref "$WORK/tokens/valid.tokens" \
  --testpref "$WORK/tokens/test.tokens" --destdir "$WORK/data-bin" --thresholdsrc 2 --workers 2

fairseq-hydra-train \
  task=language_modeling task.data="$WORK/data-bin" task.tokens_per_sample=128 \
  model=transformer_lm/transformer_lm_gpt model.decoder_layers=2 model.decoder_embed_dim=128 \
  model.decoder_input_dim=128 model.decoder_output_dim=128 \
  model.decoder_ffn_embed_dim=512 model.decoder_attention_heads=4 model.share_decoder_input_output_embed=true \
  optimizer=adam optimizer.adam_betas="'(0.9, 0.98)'" optimizer.weight_decay=0.01 optimization.clip_norm=1.0 \
  lr_scheduler=inverse_sqrt lr_scheduler.warmup_updates=100 optimization.lr=[0.003] \
  optimization.max_epoch="$MAX_EPOCH" dataset.max_tokens=2048 dataset.num_workers=0 \
  checkpoint.save_dir="$WORK/checkpoints" checkpoint.no_epoch_checkpoints=true \
  common.log_format=simple common.log_interval=50 hydra.run.dir="$WORK/hydra"

for subset in valid test; do
  fairseq-eval-lm "$WORK/data-bin" --path "$WORK/checkpoints/checkpoint_best.pt" --gen-subset "$subset" \
    --max-tokens 8192 --num-workers 0 | tee "$WORK/eval_$subset.log"
done
python examples/language_model/unigram_perplexity.py "$WORK/data-bin" --subset test | tee "$WORK/unigram_test.log"

ppl() { grep -o 'Perplexity: [0-9.]*' "$1" | tail -n 1 | cut -d' ' -f2; }
echo
echo "== demo summary ($(( $(date +%s) - start )) s)"
echo "transformer_lm valid perplexity: $(ppl "$WORK/eval_valid.log")"
echo "transformer_lm test perplexity:  $(ppl "$WORK/eval_test.log")"
echo "unigram test perplexity:         $(grep -o 'perplexity [0-9.]*' "$WORK/unigram_test.log" | cut -d' ' -f2)"
