#!/usr/bin/env bash
# English -> Spanish on KJV <-> Reina-Valera 1909 verses, on CPU: sentencepiece, fairseq-preprocess,
# fairseq-train (a small transformer, about 20 minutes on 2 cores), fairseq-generate with beam 5 on the
# 1,000 held-out test verses, and the BLEU of copying the source for comparison.
#
#   bash examples/translation/run.sh                 # outputs under translation_output/
#   WORK=/tmp/kjv MAX_EPOCH=2 bash examples/translation/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${WORK:-translation_output}
MAX_EPOCH=${MAX_EPOCH:-8}
STOP_HOURS=${STOP_HOURS:-0.35}
start=$(date +%s)

python examples/translation/prepare_kjv_rv1909.py --out "$WORK/spm"

fairseq-preprocess --source-lang en --target-lang es --joined-dictionary \
  --trainpref "$WORK/spm/train" --validpref "$WORK/spm/valid" --testpref "$WORK/spm/test" \
  --destdir "$WORK/data-bin" --workers 2

train_start=$(date +%s)
fairseq-train "$WORK/data-bin" --task translation --source-lang en --target-lang es \
  --arch transformer_iwslt_de_en --share-all-embeddings \
  --encoder-layers 3 --decoder-layers 3 --encoder-embed-dim 256 --decoder-embed-dim 256 \
  --encoder-ffn-embed-dim 512 --decoder-ffn-embed-dim 512 --encoder-attention-heads 4 --decoder-attention-heads 4 \
  --dropout 0.2 --criterion label_smoothed_cross_entropy --label-smoothing 0.1 \
  --optimizer adam --adam-betas '(0.9, 0.98)' --lr 0.002 --lr-scheduler inverse_sqrt --warmup-updates 200 \
  --clip-norm 1.0 --max-tokens 4096 --max-epoch "$MAX_EPOCH" --stop-time-hours "$STOP_HOURS" \
  --save-dir "$WORK/checkpoints" --no-epoch-checkpoints --num-workers 0 --log-format simple --log-interval 50
train_seconds=$(( $(date +%s) - train_start ))

fairseq-generate "$WORK/data-bin" --path "$WORK/checkpoints/checkpoint_best.pt" --gen-subset test \
  --beam 5 --batch-size 64 --post-process sentencepiece --scoring sacrebleu --results-path "$WORK/generate"

# The baseline: BLEU of the English source itself as the "translation".
python - "$WORK" <<'PY'
import sys
from pathlib import Path

import sacrebleu

work = Path(sys.argv[1]) / "spm"
src = (work / "test.raw.en").read_text(encoding="utf-8").splitlines()
ref = (work / "test.raw.es").read_text(encoding="utf-8").splitlines()
print(f"copy-the-source baseline: {sacrebleu.corpus_bleu(src, [ref]).format()}")
PY

echo
echo "== translation summary ($(( $(date +%s) - start )) s, of which training ${train_seconds} s)"
grep -h "Generate test with beam=5" "$WORK/generate/generate-test.txt"
