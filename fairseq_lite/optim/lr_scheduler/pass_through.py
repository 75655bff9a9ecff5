"""`--lr-scheduler pass_through`: the optimizer schedules itself (`optimizer.lr_scheduler`, e.g. each group's
schedule of `--optimizer composite`); this only forwards the trainer's calls to it."""

from dataclasses import dataclass
from typing import Any

from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq_lite.registry import OPTIMIZER_REGISTRY, cfg_name, register_lr_scheduler
from fairseq_lite.targets import TARGET_KEY, is_target


@dataclass
class PassThroughScheduleConfig(FairseqDataclass):
    pass


def primary(lrs: Any, optimizer: Any) -> float:
    """The trainer's one lr (what it logs as `lr` and compares with stop_min_lr): the default group's."""
    if isinstance(lrs, dict):
        if not lrs:
            return optimizer.get_lr()
        return lrs["default"] if "default" in lrs else next(iter(lrs.values()))
    return lrs


@register_lr_scheduler("pass_through", dataclass=PassThroughScheduleConfig)
class PassThroughScheduleSchedule(FairseqLRScheduler):
    @classmethod
    def check_optimizer_config(cls, cfg: Any, optimizer_cfg: Any) -> None:
        """Called before the run: the optimizer must bring its own schedule."""
        name = cfg_name(optimizer_cfg)
        if is_target(optimizer_cfg):  # a torch optimizer has no schedule of its own
            registered = OPTIMIZER_REGISTRY.registered_config(optimizer_cfg)
            name = optimizer_cfg[TARGET_KEY] if registered is None else cfg_name(registered)
            optimizer_cfg = registered
        has_own = None
        if optimizer_cfg is not None:
            has_own = getattr(OPTIMIZER_REGISTRY.get(name).cls, "has_own_lr_scheduler", None)
        if has_own is None or not has_own(optimizer_cfg):
            raise ConfigError(
                f"{setting('lr_scheduler._name', 'pass_through')} hands the schedule to the optimizer's own, and "
                f"optimizer '{name}' has none: use {setting('optimizer._name', 'composite')} with an lr_scheduler in "
                f"every one of {key('optimizer.groups')}, or another lr_scheduler"
            )

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.own = getattr(optimizer, "lr_scheduler", None)
        if self.own is None:
            raise ConfigError(
                f"{setting('lr_scheduler._name', 'pass_through')} needs an optimizer with its own lr scheduler "
                f"({type(optimizer).__name__} has none)"
            )

    def state_dict(self) -> dict[str, Any]:
        return self.own.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.own.load_state_dict(state_dict)

    def step_begin_epoch(self, epoch: int) -> float:
        return primary(self.own.step_begin_epoch(epoch), self.optimizer)

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        return primary(self.own.step(epoch, val_loss), self.optimizer)

    def step_update(self, num_updates: int) -> float:
        return primary(self.own.step_update(num_updates), self.optimizer)
