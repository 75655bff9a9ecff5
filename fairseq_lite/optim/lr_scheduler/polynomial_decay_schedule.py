"""`--lr-scheduler polynomial_decay`: linear warmup, then polynomial decay to end_learning_rate.

warmup (n <= warmup_updates):  lr = lr * n / warmup_updates
after:                         lr = (lr - end) * (1 - (n - warmup) / (total - warmup))**power + end
n >= total_num_update:         lr = end
"""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, lr_list
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class PolynomialDecayLRScheduleConfig(FairseqDataclass):
    warmup_updates: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    force_anneal: int | None = cfg_field(None, help="force annealing at specified epoch")
    end_learning_rate: float = cfg_field(0.0, help="learning rate to decay to")
    power: float = cfg_field(1.0, help="decay exponent")
    total_num_update: float = cfg_field(
        II("optimization.max_update"), help="total number of updates over which to decay learning rate"
    )
    lr: list[float] = II("optimization.lr")


@register_lr_scheduler("polynomial_decay", dataclass=PolynomialDecayLRScheduleConfig)
class PolynomialDecayLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if not lr_list(cfg.lr):
            raise ConfigError(f"lr_scheduler polynomial_decay: {key('optimization.lr')} is empty")
        if not cfg.total_num_update or cfg.total_num_update <= 0:
            raise ConfigError(
                f"lr_scheduler polynomial_decay needs {key('lr_scheduler.total_num_update')} > 0 (defaults to "
                f"{key('optimization.max_update')})"
            )
        if cfg.warmup_updates < 0:
            raise ConfigError(f"{key('lr_scheduler.warmup_updates')} must be >= 0, got {cfg.warmup_updates}")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.lrs = lr_list(cfg.lr)
        self.warmup_updates = cfg.warmup_updates
        self.lr = self.lrs[0]
        self.warmup_factor = 1.0 / self.warmup_updates if self.warmup_updates > 0 else 1.0
        self.end_learning_rate = float(cfg.end_learning_rate)
        self.total_num_update = cfg.total_num_update
        self.power = float(cfg.power)
        self.optimizer.set_lr(self.warmup_factor * self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "lr": self.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        if "lr" in state_dict:
            self.lr = state_dict["lr"]

    def get_next_lr(self, epoch: int) -> float:
        force_anneal = self.cfg.force_anneal
        if force_anneal is None or epoch < force_anneal:
            return self.lrs[min(epoch, len(self.lrs) - 1)]  # fairseq indexes by epoch here, not epoch - 1
        return self.optimizer.get_lr()

    def step_begin_epoch(self, epoch: int) -> float:
        self.lr = self.get_next_lr(epoch)
        self.optimizer.set_lr(self.warmup_factor * self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        warmup = self.warmup_updates
        if warmup > 0 and num_updates <= warmup:
            self.warmup_factor = num_updates / float(warmup)
            lr = self.warmup_factor * self.lr
        elif num_updates >= self.total_num_update:
            lr = self.end_learning_rate
        else:
            remaining = 1 - (num_updates - warmup) / (self.total_num_update - warmup)
            lr = (self.lr - self.end_learning_rate) * remaining**self.power + self.end_learning_rate
        self.optimizer.set_lr(lr)
        return self.optimizer.get_lr()
