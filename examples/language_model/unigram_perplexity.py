"""The baseline a language model must beat: perplexity of a unigram model on the same tokens.

    python examples/language_model/unigram_perplexity.py DATA_BIN [--subset test]

Counts token frequencies on the binarized train split (add-one smoothed over the dictionary) and
scores the chosen split token by token, end-of-line tokens included, exactly the tokens
fairseq-eval-lm scores.
"""

import argparse
import os

import numpy as np

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset


def token_counts(prefix: str, vocab_size: int) -> np.ndarray:
    data = MMapIndexedDataset(prefix)
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(len(data)):
        counts += np.bincount(data[i].numpy(), minlength=vocab_size)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="fairseq-preprocess --only-source output directory")
    parser.add_argument("--subset", default="test")
    args = parser.parse_args()
    dictionary = Dictionary.load(os.path.join(args.data, "dict.txt"))
    train = token_counts(os.path.join(args.data, "train"), len(dictionary))
    probs = (train + 1) / (train.sum() + len(dictionary))
    scored = token_counts(os.path.join(args.data, args.subset), len(dictionary))
    nll_bits = -(scored * np.log2(probs)).sum() / scored.sum()
    print(
        f"unigram model on '{args.subset}': {scored.sum():,} tokens, loss (base 2) {nll_bits:.4f}, "
        f"perplexity {2**nll_bits:.2f}"
    )


if __name__ == "__main__":
    main()
