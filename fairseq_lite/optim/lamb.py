"""`--optimizer lamb` (You et al., 2019, arXiv:1904.00962) as fairseq 0.12.2 runs it: apex's FusedLAMB with
fairseq's lr, betas, eps and weight decay and apex's other defaults (bias correction, decoupled weight
decay, gradient averaging, global gradient clipping at norm 1.0, trust ratio only where weight decay is
on). fairseq needs apex and a GPU for it; this is the same update in PyTorch, for any device.

One step, with N the L2 norm of all gradients together and c = max(1, N / 1.0):

    per group: t <- t + 1;  per parameter, g' = g / c:
        m <- b1 m + (1 - b1) g';  v <- b2 v + (1 - b2) g'^2
        u = (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps) + wd p
        r = lr ||p|| / ||u||   when wd != 0 and both norms are non-zero, else lr
        p <- p - r u
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
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer, fp32_grad
from fairseq_lite.registry import register_optimizer


@dataclass
class FairseqLAMBConfig(FairseqDataclass):
    lamb_betas: Any = cfg_field("(0.9, 0.999)", help="betas for LAMB optimizer")
    lamb_eps: float = cfg_field(1e-8, help="epsilon for LAMB optimizer")
    weight_decay: float = cfg_field(0.0, help="weight decay", argparse_alias="--wd")
    lr: list[float] = II("optimization.lr")


class LAMB(FP32StepOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.01,
        max_grad_norm: float = 1.0,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))
        self.max_grad_norm = max_grad_norm
        self._clip: torch.Tensor | float = 1.0

    def begin_step(self, grad_scale: float | torch.Tensor) -> None:
        for group in self.param_groups:
            # apex keeps one step count per group, in the group (so it is checkpointed with it).
            group["step"] = group.get("step", 0) + 1
        norms = [
            fp32_grad(p, grad_scale, "LAMB").norm(2)
            for group in self.param_groups
            for p in group["params"]
            if p.grad is not None
        ]
        if not norms:
            self._clip = 1.0
            return
        device = norms[0].device
        total = torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))
        self._clip = torch.where(total > self.max_grad_norm, total / self.max_grad_norm, torch.ones_like(total))

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        if not state:
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        exp_avg = state["exp_avg"] = state["exp_avg"].to(p)
        exp_avg_sq = state["exp_avg_sq"] = state["exp_avg_sq"].to(p)
        beta1, beta2 = group["betas"]
        step, weight_decay = group["step"], group["weight_decay"]
        clip = self._clip.to(p.device) if torch.is_tensor(self._clip) else self._clip
        scaled = grad / clip
        exp_avg.mul_(beta1).add_(scaled, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(scaled, scaled, value=1 - beta2)
        denom = (exp_avg_sq / (1 - beta2**step)).sqrt_().add_(group["eps"])
        update = (exp_avg / (1 - beta1**step)).div_(denom)
        if weight_decay != 0:
            update.add_(p, alpha=weight_decay)
            p_norm, u_norm = p.norm(2), update.norm(2)
            ratio = torch.where((p_norm != 0) & (u_norm != 0), p_norm / u_norm, torch.ones_like(p_norm))
            p.sub_(update * (ratio * group["lr"]))
        else:
            p.add_(update, alpha=-group["lr"])


@register_optimizer("lamb", dataclass=FairseqLAMBConfig)
class FairseqLAMB(FairseqOptimizer):
    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        return False  # a trust ratio per tensor

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        parse_betas(cfg.lamb_betas, "optimizer.lamb_betas")
        first_lr(cfg.lr, "lamb")
        if float(cfg.lamb_eps) < 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.lamb_eps')} and {key('optimizer.weight_decay')} must be >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        self._optimizer = LAMB(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "lamb"),
            "betas": parse_betas(self.cfg.lamb_betas, "optimizer.lamb_betas"),
            "eps": float(self.cfg.lamb_eps),
            "weight_decay": float(self.cfg.weight_decay),
        }
