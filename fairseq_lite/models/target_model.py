"""A model given as a `_target_` node: any torch.nn.Module class or factory, its sub-modules `_target_` nodes
of their own (Hydra builds them first), given the task (task=) when it takes one. It trains with the
task and criterion it is configured with, so it must answer what they ask of a model (for language
modeling: forward(src_tokens) -> (logits, extra), get_normalized_probs, get_targets, max_positions)."""

from typing import Any

import torch.nn as nn

from fairseq_lite.errors import ConfigError, key
from fairseq_lite.registry import MODEL_REGISTRY, TargetBuilder
from fairseq_lite.targets import TARGET_KEY, accepts, instantiate_target, locate_target


def build_target_model(cfg: Any, task: Any) -> nn.Module:
    target = locate_target(cfg[TARGET_KEY], "model")
    model = instantiate_target(cfg, "model", **({"task": task} if accepts(target, "task") else {}))
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"{key('model.' + TARGET_KEY)}={cfg[TARGET_KEY]} made a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


MODEL_REGISTRY.register_target_builder(TargetBuilder(build_target_model, task=True))
