"""Base class of the training criteria (losses)."""

from collections.abc import Sequence
from typing import Any

import torch.nn as nn
from torch import Tensor


def sum_logs(logging_outputs: Sequence[dict[str, Any]], key: str) -> float:
    """The sum of `key` over logging outputs (0 where missing), as a Python number."""
    total = sum(log.get(key, 0) for log in logging_outputs)
    return total.item() if hasattr(total, "item") else total


class FairseqCriterion(nn.Module):
    """Built as `Criterion(cfg, task)`; `forward(model, sample)` -> (loss, sample_size, logging_output).

    fairseq's contract: the trainer divides gradients by the update's summed `sample_size`; after each
    update (and each validation batch) it hands the logging outputs of all micro-batches and ranks to
    `reduce_metrics(logging_outputs)`, which logs what the log line shows with `metrics.log_scalar`
    (weighted averages over the updates of a log interval) and `metrics.log_derived`. When
    `logging_outputs_can_be_summed()`, the list is one dict: the outputs summed (cheaper across ranks).
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
    def reduce_metrics(cls, logging_outputs: list[dict[str, Any]]) -> None:
        """Log this criterion's statistics (`metrics.log_scalar`) from the logging outputs."""
        raise NotImplementedError

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False
