"""`--lr-scheduler tri_stage` (Park et al., 2019, arXiv:1904.08779): warmup, hold, exponential decay.

    warmup (n < W):          lr = init_lr_scale * lr + n * (lr - init_lr_scale * lr) / W
    hold   (n < W + H):      lr
    decay  (n <= W + H + D): lr * exp(-(n - W - H) * -ln(final_lr_scale) / D)
    after:                   lr * final_lr_scale

W, H, D are warmup_steps, hold_steps, decay_steps, or phase_ratio (three fractions summing to 1) of
max_update.
"""

import math
from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field, eval_str_list
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class TriStageLRScheduleConfig(FairseqDataclass):
    warmup_steps: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    hold_steps: int = cfg_field(0, help="steps in hold stage")
    decay_steps: int = cfg_field(0, help="steps in decay stages")
    phase_ratio: Any = cfg_field(
        None,
        help="if set, automatically sets warmup/hold/decay steps to the ratio specified here from max_updates. "
        "the ratios must add up to 1.0",
    )
    init_lr_scale: float = cfg_field(0.01, help="initial learning rate scale during warmup phase")
    final_lr_scale: float = cfg_field(0.01, help="final learning rate scale")
    max_update: float = II("optimization.max_update")
    lr: list[float] = II("optimization.lr")


def stage_steps(cfg: Any) -> tuple[int, int, int]:
    if cfg.phase_ratio is None:
        return int(cfg.warmup_steps), int(cfg.hold_steps), int(cfg.decay_steps)
    try:
        ratio = eval_str_list(cfg.phase_ratio, type=float)
    except ValueError:
        ratio = None
    if ratio is None or len(ratio) != 3 or any(r < 0 for r in ratio) or sum(ratio) != 1:
        raise ConfigError(
            f"{key('lr_scheduler.phase_ratio')} must be three fractions adding up to 1, e.g. "
            f"'(0.1, 0.4, 0.5)'; got {cfg.phase_ratio!r}"
        )
    if not cfg.max_update or cfg.max_update <= 0:
        raise ConfigError(
            f"{key('lr_scheduler.phase_ratio')} divides {key('optimization.max_update')}, which is not set"
        )
    return tuple(int(cfg.max_update * r) for r in ratio)


@register_lr_scheduler("tri_stage", dataclass=TriStageLRScheduleConfig)
class TriStageLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        single_lr(cfg.lr, "tri_stage")
        steps = stage_steps(cfg)
        if any(s < 0 for s in steps) or sum(steps) <= 0:
            raise ConfigError(
                f"lr_scheduler tri_stage needs {key('lr_scheduler.warmup_steps')}, {key('lr_scheduler.hold_steps')} "
                f"and {key('lr_scheduler.decay_steps')} (>= 0, not all 0) or {key('lr_scheduler.phase_ratio')}"
            )
        if not float(cfg.final_lr_scale) > 0:
            raise ConfigError(f"{key('lr_scheduler.final_lr_scale')} must be > 0, got {cfg.final_lr_scale}")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.peak_lr = single_lr(cfg.lr, "tri_stage")
        self.init_lr = float(cfg.init_lr_scale) * self.peak_lr
        self.final_lr = float(cfg.final_lr_scale) * self.peak_lr
        self.warmup_steps, self.hold_steps, self.decay_steps = stage_steps(cfg)
        self.warmup_rate = (self.peak_lr - self.init_lr) / self.warmup_steps if self.warmup_steps else 0.0
        # fairseq divides by decay_steps unconditionally; with no decay stage there is nothing to decay.
        self.decay_factor = -math.log(float(cfg.final_lr_scale)) / self.decay_steps if self.decay_steps else 0.0
        self.lr = self.init_lr
        self.optimizer.set_lr(self.lr)

    def stage(self, num_updates: int) -> tuple[int, int]:
        """(stage 0-3, updates into it)."""
        offset = 0
        if num_updates < self.warmup_steps:
            return 0, num_updates
        offset += self.warmup_steps
        if num_updates < offset + self.hold_steps:
            return 1, num_updates - offset
        offset += self.hold_steps
        if num_updates <= offset + self.decay_steps:
            return 2, num_updates - offset
        return 3, num_updates - offset - self.decay_steps

    def step_update(self, num_updates: int) -> float:
        stage, steps = self.stage(num_updates)
        if stage == 0:
            self.lr = self.init_lr + self.warmup_rate * steps
        elif stage == 1:
            self.lr = self.peak_lr
        elif stage == 2:
            self.lr = self.peak_lr * math.exp(-self.decay_factor * steps)
        else:
            self.lr = self.final_lr
        self.optimizer.set_lr(self.lr)
        return self.lr
