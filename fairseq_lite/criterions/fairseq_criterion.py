"""Base class of the training criteria (losses)."""

import inspect
from collections.abc import Sequence
from typing import Any

import torch.nn as nn
from torch import Tensor

from fairseq_lite.dataclass.utils import add_registered_args
from fairseq_lite.errors import ConfigError


def sum_logs(logging_outputs: Sequence[dict[str, Any]], key: str) -> float:
    """The sum of `key` over logging outputs (0 where missing), as a Python number."""
    total = sum(log.get(key, 0) for log in logging_outputs)
    return total.item() if hasattr(total, "item") else total


class FairseqCriterion(nn.Module):
    """Built by `build_criterion(cfg, task)`, which calls `__init__(task, <fields of cfg by name>)` as
    fairseq does; `forward(model, sample)` -> (loss, sample_size, logging_output).

    fairseq's contract: the trainer divides gradients by the update's summed `sample_size`; after each
    update (and each validation batch) it hands the logging outputs of all micro-batches and ranks to
    `reduce_metrics(logging_outputs)`, which logs what the log line shows with `metrics.log_scalar`
    (weighted averages over the updates of a log interval) and `metrics.log_derived`. When
    `logging_outputs_can_be_summed()`, the list is one dict: the outputs summed (cheaper across ranks).
    """

    @classmethod
    def add_args(cls, parser: Any) -> None:
        """fairseq's: the flags of the criterion's config, for a subclass's own add_args to extend."""
        add_registered_args(cls, parser)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Reject settings this criterion cannot run with (a one-line ConfigError), before anything is
        built: the checks before a run call it, and so does build_criterion."""

    @classmethod
    def check_model_config(cls, cfg: Any, model_cfg: Any) -> None:
        """Reject a model this criterion cannot train (one line), before anything is built."""

    @classmethod
    def validation_metrics(cls, cfg: Any) -> list[str] | None:
        """The statistics `reduce_metrics` reports in validation with this config (so that a
        checkpoint.best_checkpoint_metric it never reports is caught before training); None: unknown."""
        return None

    def __init__(self, task: Any):
        super().__init__()
        self.task = task
        dictionary = getattr(task, "target_dictionary", None)
        self.padding_idx = dictionary.pad() if dictionary is not None else -100

    @classmethod
    def build_criterion(cls, cfg: Any, task: Any) -> "FairseqCriterion":
        """fairseq's rule: `__init__`'s parameters are filled by name, `task` with the task, `cfg` with the
        whole config, any other from the config field of that name (or left to its default)."""
        if cfg is not None:
            cls.check_config(cfg)
        kwargs: dict[str, Any] = {}
        for p in inspect.signature(cls).parameters.values():
            if p.kind not in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                raise ConfigError(
                    f"criterion {cls.__name__}: __init__ takes {p}, which cannot be filled from the config; "
                    f"give it named parameters or write {cls.__name__}.build_criterion"
                )
            if p.name == "task":
                kwargs["task"] = task
            elif p.name == "cfg":
                kwargs["cfg"] = cfg
            elif cfg is not None and p.name in cfg:
                kwargs[p.name] = cfg[p.name]
            elif p.default is p.empty:
                raise ConfigError(
                    f"criterion {cls.__name__}: __init__ needs '{p.name}', which its config does not have; add "
                    f"the field to its dataclass or write {cls.__name__}.build_criterion"
                )
        return cls(**kwargs)

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


class LegacyFairseqCriterion(FairseqCriterion):
    """fairseq's criterion of the older style: `__init__(args, task)`, flags from `add_args(parser)`."""

    def __init__(self, args: Any, task: Any):
        super().__init__(task=task)
        self.args = args

    @classmethod
    def build_criterion(cls, args: Any, task: Any) -> "LegacyFairseqCriterion":
        return cls(args, task)
