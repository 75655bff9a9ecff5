"""`--optimizer adamax`: Adam with the infinity norm (Kingma & Ba, 2015, section 7.1), as fairseq computes it.

    m <- b1 m + (1 - b1) g;   u <- max(b2 u, |g|)
    p <- p - lr wd p;         p <- p - lr / (1 - b1^t) * m / (u + eps)     (no 1 - b1^t: no_bias_correction)

Weight decay is decoupled (fairseq's fix over torch's Adamax, which adds wd p to the gradient).
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.adam import parse_betas
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.registry import register_optimizer


@dataclass
class FairseqAdamaxConfig(FairseqDataclass):
    adamax_betas: Any = cfg_field("(0.9, 0.999)", help="betas for Adam optimizer")
    adamax_eps: float = cfg_field(1e-8, help="epsilon for Adam optimizer")
    weight_decay: float = cfg_field(0.0, help="weight decay", argparse_alias="--wd")
    no_bias_correction: bool = cfg_field(False, help="disable bias correction")
    lr: list[float] = II("optimization.lr")


class Adamax(FP32StepOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        bias_correction: bool = True,
    ):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, bias_correction=bias_correction)
        super().__init__(params, defaults)

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_inf"] = torch.zeros_like(p)
        exp_avg = state["exp_avg"] = state["exp_avg"].to(p)
        exp_inf = state["exp_inf"] = state["exp_inf"].to(p)
        beta1, beta2 = group["betas"]
        state["step"] += 1
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        torch.max(exp_inf.mul_(beta2), grad.abs(), out=exp_inf)
        step_size = group["lr"]
        if group["bias_correction"]:
            step_size /= 1 - beta1 ** state["step"]
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * group["lr"])
        p.addcdiv_(exp_avg, exp_inf.add(group["eps"]), value=-step_size)


@register_optimizer("adamax", dataclass=FairseqAdamaxConfig)
class FairseqAdamax(FairseqOptimizer):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        parse_betas(cfg.adamax_betas, "optimizer.adamax_betas")
        first_lr(cfg.lr, "adamax")
        if float(cfg.adamax_eps) < 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.adamax_eps')} and {key('optimizer.weight_decay')} must be >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        self._optimizer = Adamax(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "adamax"),
            "betas": parse_betas(self.cfg.adamax_betas, "optimizer.adamax_betas"),
            "eps": float(self.cfg.adamax_eps),
            "weight_decay": float(self.cfg.weight_decay),
            "bias_correction": not self.cfg.no_bias_correction,
        }
