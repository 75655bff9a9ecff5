"""Adam with decoupled weight decay (`--optimizer adam`).

fairseq's Adam applies weight decay as `p -= lr * weight_decay * p`, separately from the
gradient moments, i.e. it is AdamW. By default we use torch's AdamW (its fused kernel when the
parameters' device/dtype has one, else the multi-tensor foreach path). The one difference from
fairseq's loop is where epsilon goes: fairseq adds eps to sqrt(v) before bias correction, torch
after; that only matters in the first few steps with tiny v.

`use_old_adam` runs fairseq's own loop instead (`Adam` below, the update fairseq 0.12.2 makes on a
CPU or a GPU without apex, to the last bit), and `fp16_adam_stats` that loop with both moments kept
in fp16, each tensor divided by a scale (1e-8 + its max / 65504, recomputed every step, as in
fairseq's FusedAdamV1 and OpenAI's jukebox): half the optimizer-state memory. fairseq has
fp16_adam_stats only inside apex's FusedAdamV1, whose weight decay is an L2 term scaled by the
bias-corrected step size; ours keeps fairseq's decoupled decay, like every other fairseq Adam.
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field, eval_str_list
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr, fused_or_foreach
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.registry import register_optimizer


@dataclass
class FairseqAdamConfig(FairseqDataclass):
    adam_betas: Any = cfg_field("(0.9, 0.999)", help="betas for Adam optimizer")
    adam_eps: float = cfg_field(1e-8, help="epsilon for Adam optimizer")
    weight_decay: float = cfg_field(0.0, help="weight decay")
    use_old_adam: bool = cfg_field(
        False, help="use fairseq's own Adam loop (fairseq.optim.adam.Adam) instead of torch's fused AdamW"
    )
    fp16_adam_stats: bool = cfg_field(
        False, help="keep Adam's moments in fp16, each tensor scaled by its max (halves the optimizer state)"
    )
    lr: list[float] = II("optimization.lr")


FLOAT16_MAX = 65504.0


class Adam(FP32StepOptimizer):
    """fairseq's Adam: decoupled weight decay, eps added to sqrt(v) before bias correction.

        m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2          (v: max over steps with amsgrad)
        p <- p - lr wd p;  p <- p - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)

    With fp16_stats, m and v are stored as fp16 after division by a per-tensor scale and used in fp32.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        fp16_stats: bool = False,
    ):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad))
        self.fp16_stats = fp16_stats

    def update(self, p: torch.Tensor, grad: torch.Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        moments = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if group["amsgrad"] else ())
        if "step" not in state:
            state["step"] = 0
        for name in moments:
            # Stored scaled (fp16 stats; torch's loader may have cast it to the parameter's dtype) or not.
            stored, scale = state.get(name), state.pop(f"{name}_scale", None)
            if stored is None:
                state[name] = torch.zeros_like(p)
            else:
                state[name] = stored.to(p.device, torch.float32)
                if scale is not None:
                    state[name] = state[name] * scale
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        beta1, beta2 = group["betas"]
        state["step"] += 1
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        if group["amsgrad"]:
            torch.max(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = state["max_exp_avg_sq"].sqrt().add_(group["eps"])
        else:
            denom = exp_avg_sq.sqrt().add_(group["eps"])
        step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
        if group["weight_decay"] != 0:
            p.add_(p, alpha=-group["weight_decay"] * group["lr"])
        p.addcdiv_(exp_avg, denom, value=-step_size)
        if self.fp16_stats:
            for name in moments:
                # A Python float: torch's loader would cast a tensor to an fp16 parameter's dtype.
                scale = 1e-8 + state[name].abs().max().item() / FLOAT16_MAX
                state[name] = (state[name] / scale).half()
                state[f"{name}_scale"] = scale


def parse_betas(value: Any, setting: str = "optimizer.adam_betas") -> tuple[float, float]:
    """Accept '(0.9, 0.98)', '[0.9, 0.98]' or a list/tuple of two floats in [0, 1)."""
    try:
        betas = eval_str_list(value, type=float)
    except ValueError:
        betas = None
    if betas is None or len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(f"{key(setting)} must be two numbers in [0, 1), e.g. '(0.9, 0.98)'; got {value!r}")
    return betas[0], betas[1]


@register_optimizer("adam", dataclass=FairseqAdamConfig)
class FairseqAdam(FairseqOptimizer):
    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        return not cfg.get("fp16_adam_stats", False)  # one fp16 scale per tensor

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        parse_betas(cfg.adam_betas)
        first_lr(cfg.lr, "adam")
        if float(cfg.adam_eps) < 0 or float(cfg.weight_decay) < 0:
            raise ConfigError(f"{key('optimizer.adam_eps')} and {key('optimizer.weight_decay')} must be >= 0")

    def __init__(self, cfg: Any, params: Iterable[Any]):
        self.check_config(cfg)
        super().__init__(cfg)
        params = list(params)
        config = self.optimizer_config
        if cfg.use_old_adam or cfg.fp16_adam_stats:
            self._optimizer = Adam(params, **config, fp16_stats=bool(cfg.fp16_adam_stats))
            return
        tensors = [p for group in params for p in group["params"]] if params and isinstance(params[0], dict) else params
        self._optimizer = torch.optim.AdamW(params, **config, **fused_or_foreach(tensors))

    @property
    def optimizer_config(self) -> dict:
        return {
            "lr": first_lr(self.cfg.lr, "adam"),
            "betas": parse_betas(self.cfg.adam_betas),
            "eps": float(self.cfg.adam_eps),
            "weight_decay": float(self.cfg.weight_decay),
        }
