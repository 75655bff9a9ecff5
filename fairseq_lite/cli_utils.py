"""What every command shares: one-line user errors with a non-zero exit, and logging setup."""

import functools
import logging
import os
import sys

from fairseq_lite.errors import FairseqLiteError, TrainingInterrupted


def setup_logging(level: int = logging.INFO) -> None:
    # fairseq's format, so logs look the same to people and to their log parsers.
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        level=os.environ.get("LOGLEVEL", logging.getLevelName(level)).upper(),
        stream=sys.stdout,
    )


def user_errors_exit(prog: str, flags: bool = False):
    """Decorate a command's entry point: a FairseqLiteError becomes `prog: error: ...` and exit 1.

    `flags`: the command takes argparse flags, so config keys in messages read `--max-tokens`
    instead of `dataset.max_tokens`. Set HYDRA_FULL_ERROR=1 (or FAIRSEQ_LITE_FULL_ERROR=1) to see the
    traceback instead.
    """

    def decorator(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except FairseqLiteError as e:
                if os.environ.get("HYDRA_FULL_ERROR") == "1" or os.environ.get("FAIRSEQ_LITE_FULL_ERROR") == "1":
                    raise
                print_user_error(prog, e, flags)
                sys.exit(1)
            except TrainingInterrupted as e:
                print(f"{prog}: {e}", file=sys.stderr)
                sys.exit(128 + e.signum)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                sys.exit(130)

        return wrapper

    return decorator


def print_user_error(prog: str, error: FairseqLiteError, flags: bool = False) -> None:
    """`prog: error: <message>` on stderr, on one line."""
    print(f"{prog}: error: {one_line(error.render(flags=flags))}", file=sys.stderr)


def one_line(message: str) -> str:
    return " ".join(message.split())
