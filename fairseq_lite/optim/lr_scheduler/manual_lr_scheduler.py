"""`--lr-scheduler manual`: the lr set by hand per epoch (`epoch2lr`) and per update (`update2lr`).

Each is a dict from epochs (updates) to a learning rate, e.g. `--epoch2lr "{'1-3': 0.1, '4,6': 0.05, 7: 0.01}"`:
a key is a number, a range 'a-b' or a list 'a,b'. An epoch (update) takes the value of the greatest
key at or below it; update2lr, where one applies, wins over epoch2lr; before the first key the lr stays
what it was (`optimization.lr` at the start).
"""

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import II, OmegaConf

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, lr_list
from fairseq_lite.registry import register_lr_scheduler


@dataclass
class ManualLRScheduleConfig(FairseqDataclass):
    epoch2lr: Any = cfg_field("{}", help="a dictionary used to set lr for each epoch manually")
    update2lr: Any = cfg_field("{}", help="a dictionary used to set lr for each update manually")
    lr: list[float] = II("optimization.lr")


def parse_manual_lrs(value: Any, setting: str) -> dict[int, float]:
    """{'1-3': 0.1, '5,7': 0.2, 9: 0.3} (or its string) -> {1: 0.1, 2: 0.1, 3: 0.1, 5: 0.2, 7: 0.2, 9: 0.3}."""
    example = "\"{'1-3': 0.1, 4: 0.05}\""
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.replace(" ", ""))
        except (ValueError, SyntaxError):
            raise ConfigError(f"{key(setting)} must be a dict like {example}, got {value!r}") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"{key(setting)} must be a dict like {example}, got {value!r}")
    out: dict[int, float] = {}
    for k, v in value.items():
        try:
            text = str(k).replace(" ", "")
            if "," in text:
                steps = [int(s) for s in text.split(",")]
            elif "-" in text.lstrip("-"):
                start, end = text.split("-", 1)
                steps = list(range(int(start), int(end) + 1))
            else:
                steps = [int(text)]
            lr = float(v)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{key(setting)}: {k!r}: {v!r} is not 'number', 'a-b' or 'a,b' mapped to a learning rate"
            ) from None
        for step in steps:
            out[step] = lr
    return out


def value_at(table: dict[int, float], n: int) -> float | None:
    keys = [k for k in table if k <= n]
    return table[max(keys)] if keys else None


@register_lr_scheduler("manual", dataclass=ManualLRScheduleConfig)
class ManualSchedule(FairseqLRScheduler):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        parse_manual_lrs(cfg.epoch2lr, "lr_scheduler.epoch2lr")
        parse_manual_lrs(cfg.update2lr, "lr_scheduler.update2lr")
        if not lr_list(cfg.lr):
            raise ConfigError(f"lr_scheduler manual: {key('optimization.lr')} is empty")

    def __init__(self, cfg: Any, optimizer: Any):
        super().__init__(cfg, optimizer)
        self.epoch2lr = parse_manual_lrs(cfg.epoch2lr, "lr_scheduler.epoch2lr")
        self.update2lr = parse_manual_lrs(cfg.update2lr, "lr_scheduler.update2lr")
        if 1 in self.epoch2lr:
            self.lr = self.epoch2lr[1]
        elif 1 in self.update2lr:
            self.lr = self.update2lr[1]
        else:
            self.lr = lr_list(cfg.lr)[0]
        self.optimizer.set_lr(self.lr)

    def state_dict(self) -> dict[str, Any]:
        return {"lr": self.lr}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "lr" in state_dict:
            self.lr = state_dict["lr"]
            self.optimizer.set_lr(self.lr)

    def step_begin_epoch(self, epoch: int) -> float:
        lr = value_at(self.epoch2lr, epoch)
        if lr is not None:
            self.lr = lr
        self.optimizer.set_lr(self.lr)
        return self.optimizer.get_lr()

    def step_update(self, num_updates: int) -> float:
        lr = value_at(self.update2lr, num_updates)
        if lr is not None:
            self.optimizer.set_lr(lr)
        return self.optimizer.get_lr()
