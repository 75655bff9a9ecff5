"""Tasks register themselves on import."""

from fairseq_lite.registry import TASK_REGISTRY, register_task
from fairseq_lite.tasks import (
    language_modeling,  # noqa: F401
    translation,  # noqa: F401
)
from fairseq_lite.tasks.fairseq_task import FairseqTask

__all__ = ["TASK_REGISTRY", "FairseqTask", "register_task"]
