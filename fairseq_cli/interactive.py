"""fairseq-interactive: translate raw text from stdin (or --input), or continue it with a language
model, printing fairseq's S-/W-/H-/D-/P- lines as each buffer of lines is done."""

import sys
import time
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.inference.interactive import interactive
from fairseq_lite.inference.loading import prepare

INTERACTIVE_GROUPS = ("common", "common_eval", "dataset", "generation", "interactive")
DESCRIPTION = "Translate or continue raw text, one line per input."


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    start_time = time.perf_counter()
    return interactive(prepare("fairseq-interactive", DESCRIPTION, argv, INTERACTIVE_GROUPS), start_time)


@user_errors_exit("fairseq-interactive", flags=True)
def cli_main() -> None:
    setup_logging()
    main()


if __name__ == "__main__":
    cli_main()
