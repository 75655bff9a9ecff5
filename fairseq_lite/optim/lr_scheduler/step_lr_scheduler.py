"""`--lr-scheduler step`: linear warmup, then lr * lr_decay ** floor((n - warmup) / lr_deacy_period), at
least min_lr (`lr_deacy_period` is fairseq's spelling).

warmup (n < warmup_updates):  lr = warmup_init_lr + n * (lr - warmup_init_lr) / warmup_updates
"""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class StepLRScheduleConfig(FairseqDataclass):
    warmup_updates: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    warmup_init_lr: float = cfg_field(-1, help="initial learning rate during warmup phase; default is cfg.lr")
    lr: list[float] = cfg_field(II("optimization.lr"), help="max learning rate, must be more than cfg.min_lr")
    min_lr: float = cfg_field(0.0, help="min learning rate")
    lr_deacy_period: int = cfg_field(25000, help="decay period")
    lr_decay: float = cfg_field(0.5, help="decay factor")


@register_lr_scheduler("step", dataclass=StepLRScheduleConfig)
class StepLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        max_lr = single_lr(cfg.lr, "step")
        if int(cfg.lr_deacy_period) <= 0:
            raise ConfigError(f"{key('lr_scheduler.lr_deacy_period')} must be > 0, got {int(cfg.lr_deacy_period)}")
        if not float(cfg.lr_decay) <= 1:
            raise ConfigError(f"{key('lr_scheduler.lr_decay')} must be <= 1, got {cfg.lr_decay}")
        if not 0 <= float(cfg.min_lr) < max_lr:
            raise ConfigError(
                f"lr_scheduler step: {key('lr_scheduler.min_lr')} ({cfg.min_lr}) must be >= 0 and less than "
                f"{key('optimization.lr')} ({max_lr})"
            )
        if cfg.warmup_updates < 0:
            raise ConfigError(f"{key('lr_scheduler.warmup_updates')} must be >= 0, got {cfg.warmup_updates}")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.max_lr = single_lr(cfg.lr, "step")
        self.min_lr = float(cfg.min_lr)
        self.period = int(cfg.lr_deacy_period)
        self.lr_decay = float(cfg.lr_decay)
        self.warmup_updates = cfg.warmup_updates
        self.warmup_init_lr = float(cfg.warmup_init_lr) if cfg.warmup_init_lr >= 0 else self.min_lr
        self.warmup_lr_step = (self.max_lr - self.warmup_init_lr) / self.warmup_updates if self.warmup_updates else 1
        self.lr = self.warmup_init_lr
        self.optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            self.lr = self.warmup_init_lr + num_updates * self.warmup_lr_step
        else:
            decays = (num_updates - self.warmup_updates) // self.period
            self.lr = max(self.max_lr * self.lr_decay**decays, self.min_lr)
        self.optimizer.set_lr(self.lr)
        return self.lr
