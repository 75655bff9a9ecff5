"""Split the embedded KJV <-> Reina-Valera 1909 verses and encode them as sentencepiece pieces.

    python examples/translation/prepare_kjv_rv1909.py --out work/kjv
    fairseq-preprocess --source-lang en --target-lang es --joined-dictionary \\
        --trainpref work/kjv/train --validpref work/kjv/valid --testpref work/kjv/test \\
        --destdir data-bin/kjv_rv1909.en-es --workers 2

Writes, under --out:
  spm.model, spm.vocab          a joint (English + Spanish) unigram sentencepiece model, trained on train
  {train,valid,test}.{en,es}    one verse a line, as space-separated pieces
  {train,valid,test}.raw.{en,es} the same verses as plain text (references for BLEU after decoding)
The split is random with a fixed seed (--seed): --valid-size and --test-size verses are held out,
the rest is train. Decode model output with `--bpe sentencepiece --sentencepiece-model spm.model`
(or `--post-process sentencepiece`).
"""

import argparse
import random
import sys
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
DEFAULT_INPUT = HERE / "data" / "kjv_rv1909.en-es.subset.tsv"
LANGS = ("en", "es")

Pair = tuple[str, str]


def read_pairs(path: Path) -> list[Pair]:
    pairs = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            sys.exit(f"{path}:{lineno}: expected 'english<TAB>spanish'")
        pairs.append((fields[0].strip(), fields[1].strip()))
    return pairs


def split_pairs(pairs: list[Pair], valid_size: int, test_size: int, seed: int) -> dict[str, list[Pair]]:
    if valid_size + test_size >= len(pairs):
        sys.exit(f"--valid-size + --test-size ({valid_size + test_size}) leaves no training data ({len(pairs)} pairs)")
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held_valid = set(order[:valid_size])
    held_test = set(order[valid_size : valid_size + test_size])
    # Each split keeps corpus (book) order, which makes the files easy to read side by side.
    return {
        "train": [p for i, p in enumerate(pairs) if i not in held_valid and i not in held_test],
        "valid": [p for i, p in enumerate(pairs) if i in held_valid],
        "test": [p for i, p in enumerate(pairs) if i in held_test],
    }


def train_sentencepiece(train: list[Pair], model_prefix: Path, vocab_size: int, seed: int) -> Path:
    import sentencepiece as spm

    # One model for both languages, so that --joined-dictionary and --share-all-embeddings apply.
    sentences = [side for pair in train for side in pair]
    spm.set_random_generator_seed(seed)
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_prefix=str(model_prefix),
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        num_threads=1,
        minloglevel=2,
    )
    return model_prefix.with_suffix(".model")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--input", default=str(DEFAULT_INPUT), help="english<TAB>spanish verse pairs")
    parser.add_argument("--valid-size", type=int, default=1000, help="verses held out for validation")
    parser.add_argument("--test-size", type=int, default=1000, help="verses held out for test")
    parser.add_argument("--vocab-size", type=int, default=8000, help="joint sentencepiece vocabulary size")
    parser.add_argument("--seed", type=int, default=1, help="seed of the split and of sentencepiece")
    args = parser.parse_args()

    from fairseq_lite.data.encoders.sentencepiece_bpe import SentencepieceBPE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_pairs(read_pairs(Path(args.input)), args.valid_size, args.test_size, args.seed)
    model_path = train_sentencepiece(splits["train"], out / "spm", args.vocab_size, args.seed)
    bpe = SentencepieceBPE(
        SimpleNamespace(
            sentencepiece_model=str(model_path), sentencepiece_enable_sampling=False, sentencepiece_alpha=None
        )
    )
    for split, pairs in splits.items():
        for side, lang in enumerate(LANGS):
            texts = [pair[side] for pair in pairs]
            (out / f"{split}.raw.{lang}").write_text("".join(t + "\n" for t in texts), encoding="utf-8")
            (out / f"{split}.{lang}").write_text("".join(bpe.encode(t) + "\n" for t in texts), encoding="utf-8")
        print(f"{split}: {len(pairs)} verse pairs -> {out / split}.{{en,es}}")
    print(f"sentencepiece model: {model_path} ({args.vocab_size} pieces)")
    print(
        f"next: fairseq-preprocess --source-lang en --target-lang es --joined-dictionary "
        f"--trainpref {out}/train --validpref {out}/valid --testpref {out}/test --destdir data-bin/kjv_rv1909.en-es"
    )


if __name__ == "__main__":
    main()
