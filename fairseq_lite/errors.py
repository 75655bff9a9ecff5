"""Explicit error classes.

Every error a user can cause by what they typed, pointed us at, or ran us on derives from
`FairseqLiteError`; the commands print such errors as one line and exit non-zero, while anything else
(a bug of ours) keeps its traceback.

A message names config keys with `key("task.tokens_per_sample")`, so that each command can say them the
way its user wrote them: `str(error)` and fairseq-hydra-train say `task.tokens_per_sample`, the
argparse commands (fairseq-train, -generate, -eval-lm, -interactive) say `--tokens-per-sample`.
"""

import re

# A key reference inside a message: ESC "key:" NAME [= VALUE] ESC. Control characters never occur in the
# rest of a message, so rendering cannot touch anything but the references.
_KEY = re.compile("\x1bkey:([A-Za-z_][\\w.]*)(?:=([^\x1b]*))?\x1b")
# Keys whose fairseq-train spelling is not `--field-name`.
_FLAG_NAMES = {"task.data": "data"}  # fairseq-train's positional argument


def key(name: str) -> str:
    """A reference to the config key `name` ("group.field") inside an error message."""
    return f"\x1bkey:{name}\x1b"


def setting(name: str, value: object) -> str:
    """A reference to `name` set to `value`: `common.fp16=true` (Hydra), `--fp16` (fairseq-train)."""
    if isinstance(value, bool):
        value = str(value).lower()
    return f"\x1bkey:{name}={value}\x1b"


def flag_name(name: str) -> str:
    """How fairseq's argparse commands spell a config key: `dataset.max_tokens` -> `--max-tokens`."""
    return _FLAG_NAMES.get(name, "--" + name.rsplit(".", 1)[-1].replace("_", "-"))


def _render_key(name: str, value: str | None, flags: bool) -> str:
    if not flags:
        return name if value is None else f"{name}={value}"
    flag = flag_name(name)
    if value is None or value == "true":
        return flag
    if value == "false":
        return f"no {flag}"
    return f"{flag} {value}"


class FairseqLiteError(Exception):
    """Base class for errors caused by user input (config, data, files) or the machine a run is on."""

    def render(self, flags: bool = False) -> str:
        """The message with its config keys as `group.field` (Hydra) or as `--flags` (fairseq-train)."""
        return _KEY.sub(lambda m: _render_key(m.group(1), m.group(2), flags), super().__str__())

    def __str__(self) -> str:
        return self.render(flags=False)


class ConfigError(FairseqLiteError, ValueError):
    """A config value, flag or component name is invalid."""


class RegistryError(ConfigError):
    """Unknown or duplicate component name."""


class DataError(FairseqLiteError):
    """Input data is missing, malformed or inconsistent (dictionary, .bin/.idx, text files)."""


class CheckpointError(FairseqLiteError):
    """A checkpoint is missing, unreadable or incompatible."""


class DiskFullError(FairseqLiteError, OSError):
    """A file could not be written for lack of space; what was there before is untouched."""


class NonFiniteLossError(FairseqLiteError):
    """The loss became NaN/inf in fp32/bf16 training: the run stops with where it happened."""


class MinimumLossScaleReached(FairseqLiteError, FloatingPointError):
    """fp16: the loss scale would fall below min_loss_scale, so the run cannot go on in fp16.
    (A FloatingPointError too, the class fairseq raises for it.)"""


class OutOfMemoryError(FairseqLiteError):
    """A training step ran out of GPU memory and could not be skipped (several ranks, or too often)."""


class RankUnresponsiveError(FairseqLiteError):
    """Another rank stopped answering (hung, stopped, or its host is gone): the job ends."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint to resume from (not an error)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
