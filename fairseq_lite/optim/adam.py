"""Adam with decoupled weight decay (`--optimizer adam`).

fairseq's Adam applies weight decay as `p -= lr * weight_decay * p`, separately from the
gradient moments, i.e. it is AdamW. We use torch's AdamW (its fused kernel when the parameters'
device/dtype has one, else the multi-tensor foreach path) instead of writing our own loop.
The one difference from fairseq's loop is where epsilon goes: fairseq adds eps to sqrt(v)
before bias correction, torch after; that only matters in the first few steps with tiny v.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field, eval_str_list
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, first_lr, fused_or_foreach
from fairseq_lite.registry import register_optimizer


@dataclass
class FairseqAdamConfig(FairseqDataclass):
    adam_betas: Any = cfg_field("(0.9, 0.999)", help="betas for Adam optimizer")
    adam_eps: float = cfg_field(1e-8, help="epsilon for Adam optimizer")
    weight_decay: float = cfg_field(0.0, help="weight decay")
    lr: list[float] = II("optimization.lr")


def parse_betas(value: Any) -> tuple[float, float]:
    """Accept '(0.9, 0.98)', '[0.9, 0.98]' or a list/tuple of two floats in [0, 1)."""
    try:
        betas = eval_str_list(value, type=float)
    except ValueError:
        betas = None
    if betas is None or len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ConfigError(
            f"{key('optimizer.adam_betas')} must be two numbers in [0, 1), e.g. '(0.9, 0.98)'; got {value!r}"
        )
    return betas[0], betas[1]


@register_optimizer("adam", dataclass=FairseqAdamConfig)
class FairseqAdam(FairseqOptimizer):
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
