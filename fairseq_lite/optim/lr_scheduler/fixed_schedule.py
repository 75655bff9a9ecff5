"""`--lr-scheduler fixed`: one lr per epoch (the last one repeats), optional annealing and warmup."""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, lr_list
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class FixedLRScheduleConfig(FairseqDataclass):
    force_anneal: int | None = cfg_field(None, help="force annealing at specified epoch")
    lr_shrink: float = cfg_field(0.1, help="shrink factor for annealing, lr_new = (lr * lr_shrink)")
    warmup_updates: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    lr: list[float] = II("optimization.lr")


@register_lr_scheduler("fixed", dataclass=FixedLRScheduleConfig)
class FixedLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if not lr_list(cfg.lr):
            raise ConfigError(f"lr_scheduler fixed: {key('optimization.lr')} is empty")
        if cfg.warmup_updates < 0:
            raise ConfigError(f"{key('lr_scheduler.warmup_updates')} must be >= 0, got {cfg.warmup_updates}")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.lrs = lr_list(cfg.lr)
        self.lr = self.lrs[0]
        self.warmup_factor = 1.0 / cfg.warmup_updates if cfg.warmup_updates > 0 else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "lr": self.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        if "lr" in state_dict:
            self.lr = state_dict["lr"]

    def get_next_lr(self, epoch: int) -> float:
        force_anneal = self.cfg.force_anneal
        if force_anneal is None or epoch < force_anneal:
            return self.lrs[min(epoch - 1, len(self.lrs) - 1)]  # epochs count from 1
        return self.lrs[-1] * self.cfg.lr_shrink ** (epoch + 1 - force_anneal)

    def step_begin_epoch(self, epoch: int) -> float:
        self.lr = self.get_next_lr(epoch)
        self.optimizer.set_lr(self.warmup_factor * self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        warmup = self.cfg.warmup_updates
        if warmup > 0 and num_updates < warmup:
            self.warmup_factor = (num_updates + 1) / float(warmup)
            self.optimizer.set_lr(self.warmup_factor * self.lr)
        else:
            self.optimizer.set_lr(self.lr)
        return self.optimizer.get_lr()
