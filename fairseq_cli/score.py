"""fairseq-score: BLEU of system output against references, line by line (fairseq's fairseq_cli/score.py).

fairseq-score --sys gen.out.sys --ref gen.out.ref              # BLEU4 = ..., as fairseq-generate prints it
fairseq-score --sys gen.out.sys --ref gen.out.ref --sacrebleu  # sacrebleu's detokenized BLEU
fairseq-score --sys gen.out.sys --ref gen.out.ref --sentence-bleu  # one +1-smoothed BLEU per line
"""

import argparse
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.inference.score import score_files


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairseq-score", description="Command-line script for BLEU scoring.")
    parser.add_argument("-s", "--sys", default="-", help="system output")
    parser.add_argument("-r", "--ref", required=True, help="references")
    parser.add_argument("-o", "--order", default=4, metavar="N", type=int, help="consider ngrams up to this order")
    parser.add_argument("--ignore-case", action="store_true", help="case-insensitive scoring")
    parser.add_argument("--sacrebleu", action="store_true", help="score with sacrebleu")
    parser.add_argument(
        "--sentence-bleu", action="store_true", help="report sentence-level BLEUs (i.e., with +1 smoothing)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[str]:
    args = get_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    lines = score_files(args.sys, args.ref, args.order, args.ignore_case, args.sacrebleu, args.sentence_bleu)
    print("\n".join(lines))
    return lines


@user_errors_exit("fairseq-score")
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
