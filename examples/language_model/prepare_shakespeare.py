"""Split the embedded Shakespeare plays into train/valid/test and tokenize them for fairseq-preprocess.

    python examples/language_model/prepare_shakespeare.py --out work/shakespeare

Writes train.tokens, valid.tokens, test.tokens: one line per non-empty text line, words and
punctuation separated by single spaces (fairseq-preprocess splits on whitespace).
"""

import argparse
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLAYS = HERE / "data" / "shakespeare"
VALID, TEST = "hamlet_gut.txt", "macbeth_gut.txt"
# A word (with an inner apostrophe, as in "king's" or "o'er") or any single punctuation mark.
TOKEN = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def tokenize(line: str) -> str:
    return " ".join(TOKEN.findall(line))


def write_split(files, out_path: Path) -> int:
    lines = 0
    with open(out_path, "w", encoding="utf-8") as out:
        for path in files:
            for raw in path.read_text(encoding="utf-8").splitlines():
                tokens = tokenize(raw)
                if tokens:
                    out.write(tokens + "\n")
                    lines += 1
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plays = sorted(PLAYS.glob("*_gut.txt"))
    train = [p for p in plays if p.name not in (VALID, TEST)]
    for split, files in (("train", train), ("valid", [PLAYS / VALID]), ("test", [PLAYS / TEST])):
        n = write_split(files, out / f"{split}.tokens")
        print(f"{split}: {len(files)} play(s), {n} lines -> {out / (split + '.tokens')}")


if __name__ == "__main__":
    main()
