"""Plain SGD with optional momentum (`--optimizer sgd`), torch's implementation."""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr
from fairseq_lite.registry import register_optimizer


@dataclass
class SGDConfig(FairseqDataclass):
    momentum: float = cfg_field(0.0, help="momentum factor")
    weight_decay: float = cfg_field(0.0, help="weight decay")
    lr: list[float] = II("optimization.lr")


@register_optimizer("sgd", dataclass=SGDConfig)
class SGD(FairseqOptimizer):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        first_lr(cfg.lr, "sgd")
        if float(cfg.momentum) < 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.momentum')} and {key('optimizer.weight_decay')} must be >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        config = self.optimizer_config
        self._optimizer = torch.optim.SGD(params, **config, foreach=True)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "sgd"),
            "momentum": float(self.cfg.momentum),
            "weight_decay": float(self.cfg.weight_decay),
        }
