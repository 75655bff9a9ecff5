"""An optimizer given as a `_target_` node (any torch.optim.Optimizer, e.g. torch.optim.AdamW), called
with the model's parameters as its first argument, behind the FairseqOptimizer interface."""

from collections.abc import Iterable
from typing import Any

import torch

from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer
from fairseq_lite.registry import OPTIMIZER_REGISTRY, TargetBuilder
from fairseq_lite.targets import TARGET_KEY, instantiate_target


class TorchOptimizer(FairseqOptimizer):
    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        return False  # nothing says its update is elementwise: --fp16 keeps one master per parameter

    def __init__(self, cfg: Any, params: Iterable[Any]):
        super().__init__(cfg)
        optimizer = instantiate_target(cfg, "optimizer", list(params))
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise ConfigError(
                f"{key('optimizer.' + TARGET_KEY)}={cfg[TARGET_KEY]} made a {type(optimizer).__name__}, not a "
                "torch.optim.Optimizer"
            )
        self._optimizer = optimizer
        self.__registered_name__ = cfg[TARGET_KEY]  # what messages call it

    @property
    def optimizer_config(self) -> dict[str, Any]:
        return {}  # its settings live in its param_groups, saved and restored with its state


OPTIMIZER_REGISTRY.register_target_builder(TargetBuilder(TorchOptimizer, positional=1))
