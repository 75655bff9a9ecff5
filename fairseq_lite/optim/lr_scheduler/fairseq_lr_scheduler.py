"""Base class of the learning-rate schedulers.

The trainer calls `step_begin_epoch(epoch)` at the start of each epoch, `step_update(n)` after
each update (and once with 0 right after building), and `step(epoch, val_loss)` at epoch end.
"""

from typing import Any

from fairseq_lite.dataclass.utils import add_registered_args
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer


def lr_list(lr: Any) -> list[float]:
    return [float(lr)] if isinstance(lr, (int, float)) else [float(v) for v in lr]


def single_lr(lr: Any, name: str) -> float:
    values = lr_list(lr)
    if len(values) != 1:
        raise ConfigError(
            f"lr_scheduler {name} takes a single {key('optimization.lr')}, got {values}; "
            f"use lr_scheduler=fixed for a per-epoch list"
        )
    return values[0]


class FairseqLRScheduler:
    """Built as `Scheduler(cfg, optimizer)` with a FairseqOptimizer whose lr it sets."""

    @classmethod
    def add_args(cls, parser: Any) -> None:
        """fairseq's: the flags of the lr_scheduler's config, for a subclass's own add_args to extend."""
        add_registered_args(cls, parser)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Reject settings this schedule cannot run with (a one-line ConfigError), before anything is
        built: the checks before a run call it, and so does __init__."""

    def __init__(self, cfg: Any, optimizer: FairseqOptimizer):
        self.check_config(cfg)
        if optimizer is not None and not isinstance(optimizer, FairseqOptimizer):
            raise TypeError("optimizer must be a FairseqOptimizer")
        self.cfg = cfg
        self.optimizer = optimizer
        self.best: float | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")

    def step_begin_epoch(self, epoch: int) -> float | None:
        return None

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        if val_loss is not None:
            self.best = float(val_loss) if self.best is None else min(self.best, float(val_loss))
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        return self.optimizer.get_lr()


class LegacyFairseqLRScheduler(FairseqLRScheduler):
    """fairseq's schedule of the older style: `__init__(args, optimizer)`, flags from `add_args(parser)`."""

    def __init__(self, args: Any, optimizer: FairseqOptimizer):
        if optimizer is not None and not isinstance(optimizer, FairseqOptimizer):
            raise TypeError("optimizer must be a FairseqOptimizer")
        self.args = args
        self.cfg = args
        self.optimizer = optimizer
        self.best: float | None = None
