"""fairseq-generate: translate (or continue, for a language model) a binarized data split with beam
search or sampling, print fairseq's S-/T-/H-/D-/P- lines and score the output with BLEU."""

import sys
from collections.abc import Sequence
from typing import Any

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.inference.generate import generate
from fairseq_lite.inference.loading import prepare

GENERATE_GROUPS = ("common", "common_eval", "dataset", "generation")
DESCRIPTION = "Generate translations (or continuations) of a binarized data split."


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else list(argv)
    return generate(prepare("fairseq-generate", DESCRIPTION, argv, GENERATE_GROUPS))


@user_errors_exit("fairseq-generate", flags=True)
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
