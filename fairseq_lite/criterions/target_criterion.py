"""A criterion given as a `_target_` node: a torch.nn.Module class whose forward(model, sample, reduce)
returns (loss, sample_size, logging_output) and whose reduce_metrics reports them (FairseqCriterion's
contract), given the task (task=) when it takes one."""

from typing import Any

import torch.nn as nn

from fairseq_lite.errors import ConfigError, key
from fairseq_lite.registry import CRITERION_REGISTRY, TargetBuilder
from fairseq_lite.targets import TARGET_KEY, accepts, instantiate_target, locate_target


def build_target_criterion(cfg: Any, task: Any) -> nn.Module:
    target = locate_target(cfg[TARGET_KEY], "criterion")
    criterion = instantiate_target(cfg, "criterion", **({"task": task} if accepts(target, "task") else {}))
    if not isinstance(criterion, nn.Module) or not hasattr(criterion, "reduce_metrics"):
        raise ConfigError(
            f"{key('criterion.' + TARGET_KEY)}={cfg[TARGET_KEY]} made a {type(criterion).__name__}: a criterion is a "
            "torch.nn.Module with forward(model, sample, reduce) and reduce_metrics (see FairseqCriterion)"
        )
    return criterion


CRITERION_REGISTRY.register_target_builder(TargetBuilder(build_target_criterion, task=True))
