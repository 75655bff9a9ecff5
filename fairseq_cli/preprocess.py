#!/usr/bin/env python3
"""fairseq-preprocess: build vocabularies and binarize text into mmap indexed datasets, with fairseq
0.12.2's flags, file names and bytes (the run itself is fairseq_lite/preprocess.py)."""

import argparse
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.preprocess import preprocess

PROG = "fairseq-preprocess"


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build vocabularies and binarize training data (fairseq 0.12.2 compatible)."
    )
    group = parser.add_argument_group("Preprocessing")
    add = group.add_argument
    add("-s", "--source-lang", default=None, metavar="SRC", help="source language")
    add("-t", "--target-lang", default=None, metavar="TARGET", help="target language")
    add("--trainpref", metavar="FP", default=None, help="train file prefix (also used to build dictionaries)")
    add(
        "--validpref",
        metavar="FP",
        default=None,
        help="comma separated, valid file prefixes (words missing from train set are replaced with <unk>)",
    )
    add(
        "--testpref",
        metavar="FP",
        default=None,
        help="comma separated, test file prefixes (words missing from train set are replaced with <unk>)",
    )
    add("--align-suffix", metavar="FP", default=None, help="alignment file suffix")
    add("--destdir", metavar="DIR", default="data-bin", help="destination dir")
    add(
        "--thresholdtgt",
        metavar="N",
        default=0,
        type=int,
        help="map words appearing less than threshold times to unknown",
    )
    add(
        "--thresholdsrc",
        metavar="N",
        default=0,
        type=int,
        help="map words appearing less than threshold times to unknown",
    )
    add("--tgtdict", metavar="FP", help="reuse given target dictionary")
    add("--srcdict", metavar="FP", help="reuse given source dictionary")
    add("--nwordstgt", metavar="N", default=-1, type=int, help="number of target words to retain")
    add("--nwordssrc", metavar="N", default=-1, type=int, help="number of source words to retain")
    add("--alignfile", metavar="ALIGN", default=None, help="an alignment file (not supported)")
    add(
        "--dataset-impl",
        metavar="FORMAT",
        default="mmap",
        help="output dataset implementation (only 'mmap' is supported)",
    )
    add("--joined-dictionary", action="store_true", help="Generate joined dictionary")
    add("--only-source", action="store_true", help="Only process the source language")
    add("--padding-factor", metavar="N", default=8, type=int, help="Pad dictionary size to be multiple of N")
    add("--workers", metavar="N", default=1, type=int, help="number of parallel workers")
    add("--dict-only", action="store_true", help="if true, only builds a dictionary and then exits")

    # Options every fairseq command accepts; scripts pass some of them to preprocess too.
    compat = parser.add_argument_group("accepted for fairseq compatibility (no effect)")
    compat.add_argument("--task", metavar="TASK", default="translation")
    compat.add_argument("--seed", type=int, default=1)
    compat.add_argument("--cpu", action="store_true")
    compat.add_argument("--no-progress-bar", action="store_true")
    compat.add_argument("--log-interval", type=int, default=100)
    compat.add_argument("--log-format", default=None)
    compat.add_argument("--user-dir", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else get_parser().parse_args(argv)
    preprocess(args)


@user_errors_exit(PROG)
def cli_main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    cli_main()
