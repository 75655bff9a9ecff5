"""`--lr-scheduler inverse_sqrt`: linear warmup to lr, then decay ~ 1/sqrt(num_updates).

warmup:  lr = warmup_init_lr + num_updates * (lr - warmup_init_lr) / warmup_updates
after:   lr = lr * sqrt(warmup_updates) / sqrt(num_updates)
"""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class InverseSquareRootLRScheduleConfig(FairseqDataclass):
    warmup_updates: int = cfg_field(4000, help="warmup the learning rate linearly for the first N updates")
    warmup_init_lr: float = cfg_field(-1, help="initial learning rate during warmup phase; default is 0")
    lr: list[float] = II("optimization.lr")


@register_lr_scheduler("inverse_sqrt", dataclass=InverseSquareRootLRScheduleConfig)
class InverseSquareRootSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        single_lr(cfg.lr, "inverse_sqrt")
        if cfg.warmup_updates <= 0:
            raise ConfigError(
                f"{key('lr_scheduler.warmup_updates')} must be > 0 for inverse_sqrt, got {cfg.warmup_updates}"
            )

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        peak_lr = single_lr(cfg.lr, "inverse_sqrt")
        self.warmup_updates = cfg.warmup_updates
        self.warmup_init_lr = 0.0 if cfg.warmup_init_lr < 0 else float(cfg.warmup_init_lr)
        self.lr_step = (peak_lr - self.warmup_init_lr) / self.warmup_updates
        self.decay_factor = peak_lr * self.warmup_updates**0.5
        self.lr = self.warmup_init_lr
        self.optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            self.lr = self.warmup_init_lr + num_updates * self.lr_step
        else:
            self.lr = self.decay_factor * num_updates**-0.5
        self.optimizer.set_lr(self.lr)
        return self.lr
