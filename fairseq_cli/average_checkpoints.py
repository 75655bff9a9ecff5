"""fairseq's scripts/average_checkpoints.py: average the weights of checkpoints into a new one.

python scripts/average_checkpoints.py --inputs checkpoints/ --num-epoch-checkpoints 10 --output avg10.pt
"""

import argparse
import sys
from collections.abc import Sequence

from fairseq_lite.checkpoint.average import average_to_file
from fairseq_lite.cli_utils import setup_logging, user_errors_exit


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="average_checkpoints", description="Tool to average the params of input checkpoints to produce a new one"
    )
    parser.add_argument("--inputs", required=True, nargs="+", help="Input checkpoint file paths.")
    parser.add_argument(
        "--output", required=True, metavar="FILE", help="Write the new checkpoint with the averaged weights here."
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--num-epoch-checkpoints",
        type=int,
        help="average the last this many checkpointN.pt files of the directory given as --inputs",
    )
    group.add_argument(
        "--num-update-checkpoints",
        type=int,
        help="average the last this many checkpoint_E_U.pt files of the directory given as --inputs",
    )
    parser.add_argument(
        "--checkpoint-upper-bound",
        type=int,
        help="with --num-*-checkpoints, the last epoch (or update) to use: e.g. --num-epoch-checkpoints 10 "
        "--checkpoint-upper-bound 50 averages epochs 41-50",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> list[str]:
    args = get_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    paths = average_to_file(
        args.inputs, args.output, args.num_epoch_checkpoints, args.num_update_checkpoints, args.checkpoint_upper_bound
    )
    print(f"averaged checkpoints: {paths}")
    print(f"Finished writing averaged checkpoint to {args.output}.")
    return paths


@user_errors_exit("average_checkpoints")
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
