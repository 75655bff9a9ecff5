"""fairseq-eval-lm: loss (base 2) and perplexity of a trained language model on a data split."""

import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.inference.eval_lm import evaluate_checkpoint
from fairseq_lite.options.legacy_args import LegacyParser

EVAL_GROUPS = ("common", "common_eval", "dataset", "eval_lm")


def main(argv: Sequence[str] | None = None) -> dict[str, float | None]:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = LegacyParser(
        "fairseq-eval-lm",
        "Evaluate a language model (loss in base 2, perplexity).",
        EVAL_GROUPS,
        ("task",),
        positional_data=True,
        defaults={"task": "language_modeling"},
    )
    return evaluate_checkpoint(parser.parse_values(argv), EVAL_GROUPS)


@user_errors_exit("fairseq-eval-lm", flags=True)
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
