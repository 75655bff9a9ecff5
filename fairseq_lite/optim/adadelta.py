"""`--optimizer adadelta` (Zeiler, 2012): torch's implementation, configured as fairseq does."""

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
class AdadeltaConfig(FairseqDataclass):
    adadelta_rho: float = cfg_field(0.9, help="coefficient used for computing a running average of squared gradients")
    adadelta_eps: float = cfg_field(1e-6, help="term added to the denominator to improve numerical stability")
    weight_decay: float = cfg_field(0.0, help="weight decay", argparse_alias="--wd")
    anneal_eps: bool = cfg_field(
        False, help="refused: fairseq 0.12.2 accepts this flag but never reads it (there is no eps annealing)"
    )
    lr: list[float] = II("optimization.lr")


@register_optimizer("adadelta", dataclass=AdadeltaConfig)
class Adadelta(FairseqOptimizer):
    """torch.optim.Adadelta: E[g^2] <- rho E[g^2] + (1 - rho) g^2;  d = sqrt(E[dx^2] + eps) / sqrt(E[g^2] + eps) g;
    E[dx^2] <- rho E[dx^2] + (1 - rho) d^2;  p <- p - lr d (L2 weight decay)."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        first_lr(cfg.lr, "adadelta")
        if cfg.anneal_eps:
            raise ConfigError(
                f"{key('optimizer.anneal_eps')}: fairseq 0.12.2 accepts it but never reads it, so it has never "
                "changed a run; drop it"
            )
        if not 0.0 <= float(cfg.adadelta_rho) <= 1.0:
            raise ConfigError(f"{key('optimizer.adadelta_rho')} must be in [0, 1], got {cfg.adadelta_rho}")
        if float(cfg.adadelta_eps) < 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.adadelta_eps')} and {key('optimizer.weight_decay')} must be >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        self._optimizer = torch.optim.Adadelta(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "adadelta"),
            "rho": float(self.cfg.adadelta_rho),
            "eps": float(self.cfg.adadelta_eps),
            "weight_decay": float(self.cfg.weight_decay),
        }
