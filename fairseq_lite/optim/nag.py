"""Nesterov's accelerated gradient as fairseq's `--optimizer nag` does it (Sutskever et al., 2013, in the
form that stores the look-ahead weights), with momentum corrected when the learning rate changes.

Per parameter, with gradient g, learning rate lr, the rate of the previous step lr_old and
c = lr / lr_old (1 on the first step):

    p   <- p * (1 - lr * weight_decay)            (when weight_decay > 0)
    p   <- p + momentum**2 * c * buf - (1 + momentum) * lr * g
    buf <- momentum * c * buf - lr * g            (buf starts at 0)

The math runs in fp32 whatever the parameters' dtype; `lr_old` is kept in the parameter group, so it is
checkpointed with the optimizer state and a resumed run steps exactly as an uninterrupted one.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.registry import register_optimizer


@dataclass
class FairseqNAGConfig(FairseqDataclass):
    momentum: float = cfg_field(0.99, help="momentum factor")
    weight_decay: float = cfg_field(0.0, help="weight decay")
    lr: list[float] = II("optimization.lr")


class NAG(FP32StepOptimizer):
    def __init__(self, params: Iterable[Any], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, lr_old=lr, momentum=momentum, weight_decay=weight_decay))

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        lr_old = group.get("lr_old", lr)
        correction = lr / lr_old if lr_old > 0 else lr
        buf = state.get("momentum_buffer")
        if buf is None:
            buf = state["momentum_buffer"] = torch.zeros_like(grad)
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        p.add_(buf, alpha=momentum * momentum * correction)
        p.add_(grad, alpha=-(1 + momentum) * lr)
        buf.mul_(momentum * correction).add_(grad, alpha=-lr)

    def end_group(self, group: dict[str, Any]) -> None:
        group["lr_old"] = group["lr"]


@register_optimizer("nag", dataclass=FairseqNAGConfig)
class FairseqNAG(FairseqOptimizer):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        first_lr(cfg.lr, "nag")
        if not 0.0 <= float(cfg.momentum) < 1.0:
            raise ConfigError(f"{key('optimizer.momentum')} must be in [0, 1), got {cfg.momentum}")
        if float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.weight_decay')} must be >= 0, got {cfg.weight_decay}")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        self._optimizer = NAG(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "nag"),
            "momentum": float(self.cfg.momentum),
            "weight_decay": float(self.cfg.weight_decay),
        }
