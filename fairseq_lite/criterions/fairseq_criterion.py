"""Base class of the training criteria (losses)."""

from typing import Any

import torch.nn as nn
from torch import Tensor


class FairseqCriterion(nn.Module):
    """Built as `Criterion(cfg, task)`; `forward(model, sample)` -> (loss, sample_size, logging_output).

    The trainer divides gradients by the summed `sample_size`, and passes logging outputs summed
    over batches and workers to `reduce_metrics` (when `logging_outputs_can_be_summed()`).
    """

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Reject settings this criterion cannot run with (a one-line ConfigError), before anything is
        built: the checks before a run call it, and so does __init__."""

    @classmethod
    def check_model_config(cls, cfg: Any, model_cfg: Any) -> None:
        """Reject a model this criterion cannot train (one line), before anything is built."""

    @classmethod
    def validation_metrics(cls, cfg: Any) -> list[str] | None:
        """The statistics `reduce_metrics` reports in validation with this config (so that a
        checkpoint.best_checkpoint_metric it never reports is caught before training); None: unknown."""
        return None

    def __init__(self, cfg: Any, task: Any):
        super().__init__()
        if cfg is not None:
            self.check_config(cfg)
        self.cfg = cfg
        self.task = task
        dictionary = getattr(task, "target_dictionary", None)
        self.padding_idx = dictionary.pad() if dictionary is not None else -100

    def forward(
        self, model: nn.Module, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, int, dict[str, Any]]:
        raise NotImplementedError

    @classmethod
    def reduce_metrics(cls, agg: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
