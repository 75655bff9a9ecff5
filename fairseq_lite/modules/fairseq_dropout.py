"""fairseq's `FairseqDropout(p, module_name)`: dropout in training only, unless
`make_generation_fast_(retain_dropout=True)` keeps it on at inference (for sampling with dropout)."""

import logging
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

logger = logging.getLogger(__name__)


class FairseqDropout(nn.Module):
    def __init__(self, p: float, module_name: str | None = None):
        super().__init__()
        self.p = p
        self.module_name = module_name
        self.apply_during_inference = False

    def forward(self, x: Tensor, inplace: bool = False) -> Tensor:
        if self.p > 0 and (self.training or self.apply_during_inference):
            return F.dropout(x, p=self.p, training=True, inplace=inplace)
        return x

    def make_generation_fast_(
        self, name: str, retain_dropout: bool = False, retain_dropout_modules: list[str] | None = None, **kwargs: Any
    ) -> None:
        if retain_dropout:
            if retain_dropout_modules is not None and self.module_name is None:
                logger.warning(f"cannot enable dropout during inference for module {name}: module_name is missing")
            elif retain_dropout_modules is None or self.module_name in retain_dropout_modules:
                logger.info(f"enabling dropout during inference for module: {name}")
                self.apply_during_inference = True
