"""Tasks register themselves on import."""

from typing import Any

from fairseq_lite.registry import TASK_REGISTRY, cfg_name, register_task
from fairseq_lite.tasks import (
    language_modeling,  # noqa: F401
    multilingual_translation,  # noqa: F401
    translation,  # noqa: F401
    translation_multi_simple_epoch,  # noqa: F401
)
from fairseq_lite.tasks.fairseq_task import FairseqTask, LegacyFairseqTask


def setup_task(cfg: Any, **kwargs: Any) -> FairseqTask:
    """The task `cfg` names (its `_name`, or fairseq's Namespace's `task`), set up from `cfg` (loads its
    dictionaries), as fairseq's `tasks.setup_task`."""
    name = cfg_name(cfg) or getattr(cfg, "task", None)
    return TASK_REGISTRY.get(name).cls.setup_task(cfg, **kwargs)


def get_task(name: str) -> type[FairseqTask]:
    return TASK_REGISTRY.get(name).cls


__all__ = ["LegacyFairseqTask", "TASK_REGISTRY", "FairseqTask", "get_task", "register_task", "setup_task"]
