"""`--optimizer adagrad` (Duchi et al., 2011): torch's implementation, configured as fairseq does."""

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
class AdagradConfig(FairseqDataclass):
    weight_decay: float = cfg_field(0.0, help="weight decay", argparse_alias="--wd")
    lr: list[float] = II("optimization.lr")


@register_optimizer("adagrad", dataclass=AdagradConfig)
class Adagrad(FairseqOptimizer):
    """torch.optim.Adagrad: s <- s + g^2;  p <- p - lr g / (sqrt(s) + 1e-10), with L2 weight decay."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        first_lr(cfg.lr, "adagrad")
        if float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.weight_decay')} must be >= 0, got {cfg.weight_decay}")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        self._optimizer = torch.optim.Adagrad(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {"lr": first_lr(self.cfg.lr, "adagrad"), "weight_decay": float(self.cfg.weight_decay)}
