"""Explicit error classes.

Every error a user can cause by what they typed or pointed us at derives from `FairseqLiteError`;
the commands print such errors as one line and exit non-zero, while anything else (a bug of ours)
keeps its traceback.
"""


class FairseqLiteError(Exception):
    """Base class for errors caused by user input (config, data, files)."""


class ConfigError(FairseqLiteError, ValueError):
    """A config value, flag or component name is invalid."""


class RegistryError(ConfigError):
    """Unknown or duplicate component name."""


class DataError(FairseqLiteError):
    """Input data is missing, malformed or inconsistent (dictionary, .bin/.idx, text files)."""


class NonFiniteLossError(FairseqLiteError):
    """The loss became NaN/inf in fp32/bf16 training: the run stops with where it happened."""


class OutOfMemoryError(FairseqLiteError):
    """A training step ran out of GPU memory and could not be skipped (several ranks, or too often)."""


class CheckpointError(FairseqLiteError):
    """A checkpoint is missing, unreadable or incompatible."""


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after saving a checkpoint to resume from (not an error)."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
