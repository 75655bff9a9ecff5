"""fairseq's `checkpoint_utils` for scripts and plugins: checkpoints read to the CPU, and models (with
their task) rebuilt from them, under fairseq's names and signatures.

    models, cfg, task = checkpoint_utils.load_model_ensemble_and_task(["checkpoints/checkpoint_best.pt"])

`arg_overrides` sets, by field name, that field in every config group of the checkpoint that has it
(fairseq's rule: {"data": "new/data-bin"} moves task.data). Checkpoints written by fairseq 0.12.2
load too (checkpoint/fairseq.py converts them).
"""

import copy
from collections.abc import Sequence
from typing import Any

import torch.nn as nn

from fairseq_lite.checkpoint.io import load_checkpoint_to_cpu as _read_state
from fairseq_lite.checkpoint.io import load_model_weights
from fairseq_lite.errors import CheckpointError
from fairseq_lite.models.fairseq_model import FairseqDecoder, FairseqEncoder
from fairseq_lite.options.compose import config_from_dict
from fairseq_lite.registry import TASK_REGISTRY
from fairseq_lite.utils import import_user_module


def _override_by_name(cfg: dict[str, Any], overrides: dict[str, Any]) -> None:
    for group in cfg.values():
        if isinstance(group, dict):
            for name, value in overrides.items():
                if name in group:
                    group[name] = value


def load_checkpoint_to_cpu(path: str, arg_overrides: dict[str, Any] | None = None, load_on_all_ranks: bool = False):
    """The checkpoint's state (model weights, cfg, optimizer history...), tensors on the CPU."""
    state = _read_state(path)
    if arg_overrides:
        state = {**state, "cfg": copy.deepcopy(state["cfg"])}
        _override_by_name(state["cfg"], arg_overrides)
    return state


def load_model_ensemble_and_task(
    filenames: Sequence[str],
    arg_overrides: dict[str, Any] | None = None,
    task: Any = None,
    strict: bool = True,
    suffix: str = "",
    num_shards: int = 1,
    state: dict[str, Any] | None = None,
) -> tuple[list[nn.Module], Any, Any]:
    """(models, cfg of the first, task): one model per file, built by the task (made from the first
    checkpoint's config unless given) and loaded with its weights."""
    if num_shards != 1:
        raise CheckpointError(
            f"num_shards={num_shards}: model-parallel checkpoint shards are not supported; a fully_sharded "
            "run's checkpoint loads as one file"
        )
    models, first_cfg = [], None
    for filename in filenames:
        path = filename.replace(".pt", suffix + ".pt") if suffix else filename
        file_state = state if state is not None else load_checkpoint_to_cpu(path, arg_overrides)
        cfg = config_from_dict(file_state["cfg"])
        if cfg.common.get("user_dir"):
            import_user_module(cfg.common)  # its model or task may come from the plugin that trained it
        if task is None:
            task = TASK_REGISTRY.build(cfg.task)
        model = task.build_model(cfg.model)
        load_model_weights(model, file_state, path, strict=strict)
        models.append(model)
        first_cfg = first_cfg if first_cfg is not None else cfg
    return models, first_cfg, task


def load_model_ensemble(
    filenames: Sequence[str],
    arg_overrides: dict[str, Any] | None = None,
    task: Any = None,
    strict: bool = True,
    suffix: str = "",
    num_shards: int = 1,
    state: dict[str, Any] | None = None,
) -> tuple[list[nn.Module], Any]:
    """(models, cfg) as load_model_ensemble_and_task, without the task."""
    models, cfg, _ = load_model_ensemble_and_task(filenames, arg_overrides, task, strict, suffix, num_shards, state)
    return models, cfg


def load_pretrained_component_from_model(component: nn.Module, checkpoint: str, strict: bool = True) -> nn.Module:
    """Load the weights of a checkpoint's encoder (or decoder) into `component`, an encoder (or decoder)
    of the same shape, e.g. to start a translation model from a pretrained one."""
    if isinstance(component, FairseqEncoder):
        prefix = "encoder."
    elif isinstance(component, FairseqDecoder):
        prefix = "decoder."
    else:
        raise ValueError(
            f"component to load must be a FairseqEncoder or FairseqDecoder, got {type(component).__name__}"
        )
    weights = load_checkpoint_to_cpu(checkpoint)["model"]
    own = {name[len(prefix) :]: value for name, value in weights.items() if name.startswith(prefix)}
    if not own:
        raise CheckpointError(f"{checkpoint} has no '{prefix[:-1]}' weights to load")
    component.load_state_dict(own, strict=strict)
    return component
