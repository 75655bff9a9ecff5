"""`--optimizer adafactor` (Shazeer & Stern, 2018, arXiv:1804.04235), as fairseq computes it.

Per parameter of shape (..., R, C) at step t, with decay rate d (-0.8) and eps = (eps1, eps2):

    b2t = 1 - t**d;   G = g^2 + eps1
    factored (2+ dims): row <- b2t row + (1 - b2t) mean_C(G);  col <- b2t col + (1 - b2t) mean_R(G)
                        V = row col / mean_R(row)            (the rank-1 estimate of the second moment)
    otherwise:          V <- b2t V + (1 - b2t) G
    U = g / sqrt(V);    U <- U / max(1, RMS(U) / clip_threshold)
    step size a = lr, or with relative_step min(1e-2, 1/sqrt(t)) (warmup_init: min(1e-6 t, 1/sqrt(t)));
                  times max(eps2, RMS(p)) with scale_parameter
    U <- a U;   with beta1: m <- beta1 m + (1 - beta1) U and U = m
    p <- p - a wd p - U

fairseq writes each parameter's `a` back into the group's lr, so with scale_parameter the next
parameter's rate is scaled again (the rates compound along the model); we scale each parameter's
step by its own RMS only, as the paper does. With scale_parameter off (fairseq's default) the two agree.
With relative_step, the rate comes from the step count and the lr schedule's value is not used.
"""

import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field, eval_str_list
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.registry import register_optimizer

logger = logging.getLogger(__name__)


@dataclass
class FairseqAdafactorConfig(FairseqDataclass):
    adafactor_eps: Any = cfg_field("(1e-30, 1e-3)", help="epsilons for Adafactor optimizer")
    clip_threshold: float = cfg_field(1.0, help="threshold for clipping update root mean square")
    decay_rate: float = cfg_field(-0.8, help="decay rate of the second moment estimator")
    beta1: float | None = cfg_field(None, help="beta for first moment estimator. Optional")
    weight_decay: float = cfg_field(0.0, help="weight decay", argparse_alias="--wd")
    scale_parameter: bool = cfg_field(False, help="scale learning rate by root mean square of parameter")
    relative_step: bool = cfg_field(
        False,
        help="set learning rate to inverse square root of timestep, otherwise use external learning rate",
    )
    warmup_init: bool = cfg_field(False, help="use relative step for warm-up learning rate schedule")
    lr: list[float] = II("optimization.lr")


# State that is not per element: a parameter of shape (..., R, C) has a row statistic of shape (..., R) and a
# column one of shape (..., C).
FACTORED_STATE = ("exp_avg_sq_row", "exp_avg_sq_col")


def rms(t: torch.Tensor) -> torch.Tensor:
    return t.norm(2) / (t.numel() ** 0.5)


class Adafactor(FP32StepOptimizer):
    def __init__(
        self,
        params: Iterable[Any],
        lr: float | None = None,
        eps: tuple[float, float] = (1e-30, 1e-3),
        clip_threshold: float = 1.0,
        decay_rate: float = -0.8,
        beta1: float | None = None,
        weight_decay: float = 0.0,
        scale_parameter: bool = True,
        relative_step: bool = True,
        warmup_init: bool = False,
    ):
        if warmup_init and not relative_step:
            raise ValueError("warmup_init requires relative_step=True")
        defaults = dict(
            lr=lr,
            eps=eps,
            clip_threshold=clip_threshold,
            decay_rate=decay_rate,
            beta1=beta1,
            weight_decay=weight_decay,
            scale_parameter=scale_parameter,
            relative_step=relative_step,
            warmup_init=warmup_init,
        )
        super().__init__(params, defaults)

    @staticmethod
    def step_size(group: dict[str, Any], step: int, p: torch.Tensor) -> float | torch.Tensor:
        """The rate a; a 0-dim tensor with scale_parameter (reading RMS(p) back would sync a GPU)."""
        rate = group["lr"]
        if group["relative_step"]:
            min_step = 1e-6 * step if group["warmup_init"] else 1e-2
            rate = min(min_step, 1.0 / math.sqrt(step))
        if group["scale_parameter"]:
            return rms(p).clamp(min=group["eps"][1]) * rate
        return rate

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        shape = grad.shape
        factored = len(shape) >= 2
        first_moment = group["beta1"] is not None
        if not state:
            state["step"] = 0
            if first_moment:
                state["exp_avg"] = torch.zeros_like(grad)
            if factored:
                state["exp_avg_sq_row"] = grad.new_zeros(shape[:-1])
                state["exp_avg_sq_col"] = grad.new_zeros(shape[:-2] + shape[-1:])
            else:
                state["exp_avg_sq"] = torch.zeros_like(grad)
        for name in ("exp_avg", "exp_avg_sq_row", "exp_avg_sq_col", "exp_avg_sq"):
            if name in state:
                state[name] = state[name].to(grad)
        state["step"] += 1
        lr = self.step_size(group, state["step"], p)

        beta2t = 1.0 - math.pow(state["step"], group["decay_rate"])
        update = grad**2 + group["eps"][0]
        if factored:
            row, col = state["exp_avg_sq_row"], state["exp_avg_sq_col"]
            row.mul_(beta2t).add_(update.mean(dim=-1), alpha=1.0 - beta2t)
            col.mul_(beta2t).add_(update.mean(dim=-2), alpha=1.0 - beta2t)
            r_factor = (row / row.mean(dim=-1, keepdim=True)).rsqrt_().unsqueeze(-1)
            update = torch.mul(r_factor, col.unsqueeze(-2).rsqrt()).mul_(grad)
        else:
            exp_avg_sq = state["exp_avg_sq"]
            exp_avg_sq.mul_(beta2t).add_(update, alpha=1.0 - beta2t)
            update = exp_avg_sq.rsqrt().mul_(grad)
        update.div_((rms(update) / group["clip_threshold"]).clamp_(min=1.0))
        update.mul_(lr)
        if first_moment:
            exp_avg = state["exp_avg"]
            exp_avg.mul_(group["beta1"]).add_(update, alpha=1 - group["beta1"])
            update = exp_avg
        if group["weight_decay"] != 0:
            if torch.is_tensor(lr):
                p.sub_(p * (group["weight_decay"] * lr))
            else:
                p.add_(p, alpha=-group["weight_decay"] * lr)
        p.add_(-update)


def parse_eps(value: Any) -> tuple[float, float]:
    try:
        eps = eval_str_list(value, type=float)
    except ValueError:
        eps = None
    if eps is None or len(eps) != 2 or not all(e >= 0 for e in eps):
        raise ConfigError(
            f"{key('optimizer.adafactor_eps')} must be two numbers >= 0, e.g. '(1e-30, 1e-3)'; got {value!r}"
        )
    return eps[0], eps[1]


@register_optimizer("adafactor", dataclass=FairseqAdafactorConfig)
class FairseqAdafactor(FairseqOptimizer):
    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        return False  # factored by each tensor's shape

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        parse_eps(cfg.adafactor_eps)
        first_lr(cfg.lr, "adafactor")
        if cfg.warmup_init and not cfg.relative_step:
            raise ConfigError(
                f"{key('optimizer.warmup_init')} needs {setting('optimizer.relative_step', True)} "
                "(it warms the relative step size up)"
            )
        if cfg.beta1 is not None and not 0.0 <= float(cfg.beta1) < 1.0:
            raise ConfigError(f"{key('optimizer.beta1')} must be in [0, 1), got {cfg.beta1}")
        if float(cfg.clip_threshold) <= 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.clip_threshold')} must be > 0 and {key('optimizer.weight_decay')} >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        if cfg.relative_step:
            logger.info(
                "adafactor: relative_step is on, so the step size is min(%s, 1/sqrt(step)) and the learning "
                "rate schedule's value is not used",
                "1e-6 * step" if cfg.warmup_init else "1e-2",
            )
        self._optimizer = Adafactor(params, **self.optimizer_config)

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "adafactor"),
            "eps": parse_eps(self.cfg.adafactor_eps),
            "clip_threshold": float(self.cfg.clip_threshold),
            "decay_rate": float(self.cfg.decay_rate),
            "beta1": None if self.cfg.beta1 is None else float(self.cfg.beta1),
            "weight_decay": float(self.cfg.weight_decay),
            "scale_parameter": bool(self.cfg.scale_parameter),
            "relative_step": bool(self.cfg.relative_step),
            "warmup_init": bool(self.cfg.warmup_init),
        }
