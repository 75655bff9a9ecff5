"""`--lr-scheduler triangular` (Smith, 2017, arXiv:1506.01186): the lr goes linearly from lr up to max_lr
and back every lr_period_updates; each cycle's peak (and with shrink_min its floor) times lr_shrink**cycle.

    s = lr_period_updates // 2;  cycle = floor(n / 2s);  x = |n / s - 2 cycle - 1|
    lr = min + (max - min) * max(0, 1 - x)
"""

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import II, MISSING, OmegaConf

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class TriangularLRScheduleConfig(FairseqDataclass):
    max_lr: float = cfg_field(MISSING, help="max learning rate, must be more than cfg.lr")
    lr_period_updates: float = cfg_field(5000, help="initial number of updates per period (cycle length)")
    lr_shrink: float = cfg_field(0.1, help="shrink factor for annealing")
    shrink_min: bool = cfg_field(False, help="if set, also shrinks min lr")
    lr: list[float] = II("optimization.lr")


@register_lr_scheduler("triangular", dataclass=TriangularLRScheduleConfig)
class TriangularLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        lr = single_lr(cfg.lr, "triangular")
        if OmegaConf.is_missing(cfg, "max_lr"):
            raise ConfigError(f"lr_scheduler triangular needs {key('lr_scheduler.max_lr')} (more than the lr, {lr})")
        if not float(cfg.max_lr) > lr:
            raise ConfigError(
                f"{key('lr_scheduler.max_lr')} ({cfg.max_lr}) must be more than {key('optimization.lr')} ({lr})"
            )
        if cfg.lr_period_updates // 2 <= 0:
            raise ConfigError(f"{key('lr_scheduler.lr_period_updates')} must be >= 2, got {cfg.lr_period_updates}")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.min_lr = single_lr(cfg.lr, "triangular")
        self.max_lr = float(cfg.max_lr)
        self.stepsize = cfg.lr_period_updates // 2
        self.lr_shrink = float(cfg.lr_shrink)
        self.shrink_min = bool(cfg.shrink_min)
        self.lr = self.min_lr
        self.optimizer.set_lr(self.lr)

    def step_update(self, num_updates: int) -> float:
        cycle = math.floor(num_updates / (2 * self.stepsize))
        shrink = self.lr_shrink**cycle
        max_lr = self.max_lr * shrink
        min_lr = self.min_lr * shrink if self.shrink_min else self.min_lr
        x = abs(num_updates / self.stepsize - 2 * (cycle + 1) + 1)
        self.lr = min_lr + (max_lr - min_lr) * max(0, 1 - x)
        self.optimizer.set_lr(self.lr)
        return self.lr
