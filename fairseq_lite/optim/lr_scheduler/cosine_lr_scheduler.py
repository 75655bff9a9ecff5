"""`--lr-scheduler cosine`: linear warmup, then cosine cycles (SGDR, arXiv:1608.03983).

After warmup, with n = num_updates - warmup_updates and period T (default: max_update -
warmup_updates), cycle i runs over T * t_mult**i updates; within it, at offset t,
    lr = min_lr_i + 0.5 * (max_lr_i - min_lr_i) * (1 + cos(pi * t / T_i))
where both bounds shrink by lr_shrink**i. With t_mult == 1, i = floor(n / T); otherwise i
solves the geometric series T * (1 + t_mult + ... + t_mult**(i-1)) <= n.
"""

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class CosineLRScheduleConfig(FairseqDataclass):
    warmup_updates: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    warmup_init_lr: float = cfg_field(-1, help="initial learning rate during warmup phase; default is min_lr")
    lr: list[float] = cfg_field(II("optimization.lr"), help="max learning rate, must be more than min_lr")
    min_lr: float = cfg_field(0.0, help="min learning rate")
    t_mult: float = cfg_field(1.0, help="factor to grow the length of each period")
    lr_period_updates: float = cfg_field(-1, help="initial number of updates per period")
    lr_shrink: float = cfg_field(0.1, help="shrink factor for annealing")
    # Not required, but is for convenience in inferring lr_period_updates.
    max_update: int = II("optimization.max_update")


@register_lr_scheduler("cosine", dataclass=CosineLRScheduleConfig)
class CosineLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        max_lr, min_lr = single_lr(cfg.lr, "cosine"), float(cfg.min_lr)
        if max_lr <= min_lr:
            raise ConfigError(
                f"lr_scheduler cosine: {key('optimization.lr')} ({max_lr}) must be more than "
                f"{key('lr_scheduler.min_lr')} ({min_lr})"
            )
        if cfg.warmup_updates < 0:
            raise ConfigError(f"{key('lr_scheduler.warmup_updates')} must be >= 0, got {cfg.warmup_updates}")
        if cfg.t_mult <= 0:
            raise ConfigError(f"{key('lr_scheduler.t_mult')} must be > 0, got {cfg.t_mult}")
        if cfg.lr_period_updates <= 0:
            max_update = cfg.max_update or 0
            if max_update <= 0:
                raise ConfigError(
                    f"lr_scheduler cosine needs {key('optimization.max_update')} or "
                    f"{key('lr_scheduler.lr_period_updates')}"
                )
            if max_update - cfg.warmup_updates <= 0:
                raise ConfigError(
                    f"lr_scheduler cosine: {key('optimization.max_update')} ({max_update}) must exceed "
                    f"{key('lr_scheduler.warmup_updates')} ({cfg.warmup_updates})"
                )

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.max_lr = single_lr(cfg.lr, "cosine")
        self.min_lr = float(cfg.min_lr)
        self.warmup_updates = cfg.warmup_updates
        self.warmup_init_lr = self.min_lr if cfg.warmup_init_lr < 0 else float(cfg.warmup_init_lr)
        self.t_mult = float(cfg.t_mult)
        self.lr_shrink = float(cfg.lr_shrink)
        self.period = cfg.lr_period_updates
        if self.period <= 0:
            self.period = (cfg.max_update or 0) - self.warmup_updates
        self.lr_step = (self.max_lr - self.warmup_init_lr) / self.warmup_updates if self.warmup_updates > 0 else 1
        self.lr = self.warmup_init_lr
        self.optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        if num_updates < self.warmup_updates:
            self.lr = self.warmup_init_lr + num_updates * self.lr_step
        else:
            n = num_updates - self.warmup_updates
            if self.t_mult != 1:
                i = math.floor(math.log(1 - n / self.period * (1 - self.t_mult), self.t_mult))
                t_i = self.t_mult**i * self.period
                t_curr = n - (1 - self.t_mult**i) / (1 - self.t_mult) * self.period
            else:
                i = math.floor(n / self.period)
                t_i = self.period
                t_curr = n - self.period * i
            shrink = self.lr_shrink**i
            min_lr, max_lr = self.min_lr * shrink, self.max_lr * shrink
            self.lr = min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * t_curr / t_i))
        self.optimizer.set_lr(self.lr)
        return self.lr
