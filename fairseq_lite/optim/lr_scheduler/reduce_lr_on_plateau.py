"""`--lr-scheduler reduce_lr_on_plateau`: an optional linear warmup, then torch's ReduceLROnPlateau on the
validation loss at the end of each epoch (lr <- lr * lr_shrink after lr_patience epochs without an
improvement of more than lr_threshold, relative).

warmup (n <= warmup_updates):  lr = warmup_init_lr + n * (lr - warmup_init_lr) / warmup_updates
"""

from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, single_lr
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class ReduceLROnPlateauLRScheduleConfig(FairseqDataclass):
    lr_shrink: float = cfg_field(0.1, help="shrink factor for annealing")
    lr_threshold: float = cfg_field(
        1e-4, help="threshold for measuring the new optimum, to only focus on significant changes"
    )
    lr_patience: int = cfg_field(
        0, help="number of epochs with no improvement after which learning rate will be reduced"
    )
    warmup_updates: int = cfg_field(0, help="warmup the learning rate linearly for the first N updates")
    warmup_init_lr: float = cfg_field(-1, help="initial learning rate during warmup phase; default is cfg.lr")
    lr: list[float] = II("optimization.lr")
    maximize_best_checkpoint_metric: bool = II("checkpoint.maximize_best_checkpoint_metric")


@register_lr_scheduler("reduce_lr_on_plateau", dataclass=ReduceLROnPlateauLRScheduleConfig)
class ReduceLROnPlateauLRSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        single_lr(cfg.lr, "reduce_lr_on_plateau")
        if not 0.0 <= float(cfg.lr_shrink) < 1.0:
            raise ConfigError(f"{key('lr_scheduler.lr_shrink')} must be in [0, 1), got {cfg.lr_shrink}")
        if cfg.lr_patience < 0 or cfg.warmup_updates < 0:
            raise ConfigError(
                f"{key('lr_scheduler.lr_patience')} and {key('lr_scheduler.warmup_updates')} must be >= 0"
            )

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            self.optimizer.optimizer,
            patience=cfg.lr_patience,
            factor=float(cfg.lr_shrink),
            mode="max" if cfg.maximize_best_checkpoint_metric else "min",
            threshold=float(cfg.lr_threshold),
        )
        peak = single_lr(cfg.lr, "reduce_lr_on_plateau")
        self.warmup_updates = cfg.warmup_updates
        if cfg.warmup_init_lr >= 0:
            self.warmup_init_lr = float(cfg.warmup_init_lr)
        else:
            self.warmup_init_lr = 0.0 if self.warmup_updates > 0 else peak
        self.lr_step = (peak - self.warmup_init_lr) / self.warmup_updates if self.warmup_updates > 0 else 0.0
        self.warmup_end = self.warmup_updates <= 0
        self.optimizer.set_lr(peak if self.warmup_end else self.warmup_init_lr)

    def state_dict(self) -> dict[str, Any]:
        # fairseq's two keys, and the counters it drops (so that a resumed run reduces when this one would).
        p = self.plateau
        return {
            "best": p.best,
            "last_epoch": p.last_epoch,
            "num_bad_epochs": p.num_bad_epochs,
            "cooldown_counter": p.cooldown_counter,
            "warmup_end": self.warmup_end,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        p = self.plateau
        p.best = state_dict["best"]
        p.last_epoch = state_dict.get("last_epoch", p.last_epoch)
        p.num_bad_epochs = state_dict.get("num_bad_epochs", 0)
        p.cooldown_counter = state_dict.get("cooldown_counter", 0)
        self.warmup_end = state_dict.get("warmup_end", self.warmup_end)

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        """At an epoch's end: reduce on a plateau of the validation loss, once warmup is over."""
        if val_loss is not None and self.warmup_end:
            self.plateau.step(val_loss)
        else:
            self.plateau.last_epoch = epoch
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        if self.warmup_updates > 0:
            if num_updates <= self.warmup_updates:
                self.optimizer.set_lr(self.warmup_init_lr + num_updates * self.lr_step)
            else:
                self.warmup_end = True
        return self.optimizer.get_lr()
