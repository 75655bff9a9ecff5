"""`distributed_training.ddp_backend=fully_sharded`: torch's FSDP2 (`fully_shard`) and its sharded
checkpoints (torch.distributed.checkpoint, "DCP").

Each transformer layer becomes its own FSDP unit, so only one layer's full weights exist at a time
during forward and backward; the root unit holds the rest (embeddings, output projection). Gradients
are reduce-scattered and averaged over ranks like DDP's, so the trainer's normalisation is the same
for both backends. A checkpoint's model and optimizer state are written by every rank, each its own
shard, into a directory beside the small checkpoint_*.pt file that names it; DCP re-shards on load, so
a run resumes on any number of ranks, and a single process (generate, eval-lm) reads the full weights.
"""

import logging
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fairseq_lite.errors import CheckpointError

logger = logging.getLogger(__name__)


def _sharding_units(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks worth sharding separately: every member of an nn.ModuleList named `layers`
    (the encoder and decoder layers of our transformers), or of any ModuleList when there is none."""
    units = [
        layer
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList) and name.rsplit(".", 1)[-1] == "layers"
        for layer in module
    ]
    if not units:
        units = [layer for module in model.modules() if isinstance(module, nn.ModuleList) for layer in module]
    return units


def shard_model(model: nn.Module, device: torch.device) -> nn.Module:
    """Apply fully_shard to each layer, then to the whole model (in place; returns the model)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    units = _sharding_units(model)
    for unit in units:
        fully_shard(unit, mesh=mesh)
    fully_shard(model, mesh=mesh)
    logger.info(f"fully_sharded: {len(units)} layers and the root sharded over {dist.get_world_size()} ranks")
    return model


def to_local_value(value: torch.Tensor) -> torch.Tensor:
    """A DTensor (e.g. the total gradient norm over sharded grads) as a plain tensor."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value


# --- sharded checkpoints -------------------------------------------------------------------------


def save_sharded(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Every rank writes its shard of the model (and optimizer) state into `directory` (collective)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict

    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
    else:
        state = {"model": get_model_state_dict(model)}
    dcp.save(state, checkpoint_id=directory)


def load_sharded(directory: str, model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Read a sharded checkpoint into a (sharded or plain) model and optimizer, on any world size."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_state_dict, set_state_dict

    if not os.path.isdir(directory):
        raise CheckpointError(
            f"the sharded model state {directory} is missing; it must stay next to the "
            f"checkpoint_*.pt file that names it"
        )
    distributed = dist.is_available() and dist.is_initialized()
    if optimizer is not None:
        model_state, optim_state = get_state_dict(model, optimizer)
        state = {"model": model_state, "optimizer": optim_state}
        dcp.load(state, checkpoint_id=directory, no_dist=not distributed)
        set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    else:
        state = {"model": get_model_state_dict(model)}
        dcp.load(state, checkpoint_id=directory, no_dist=not distributed)
        set_state_dict(model, [], model_state_dict=state["model"], optim_state_dict={})


def load_full_model_state(directory: str, model: nn.Module) -> dict[str, torch.Tensor]:
    """The full (unsharded) weights of a sharded checkpoint, read in this one process."""
    import torch.distributed.checkpoint as dcp

    state = {"model": {k: v.clone() for k, v in model.state_dict().items()}}
    dcp.load(state, checkpoint_id=directory, no_dist=True)
    return state["model"]


def full_to_sharded_optimizer_state(optim_state: dict[str, Any], model: nn.Module) -> tuple[dict[str, Any], bool]:
    """Re-key torch's optimizer state (parameters numbered in model.parameters() order) by parameter
    name, the form torch's set_optimizer_state_dict takes for a full state; False if it does not fit."""
    names = [name for name, p in model.named_parameters() if p.requires_grad]
    groups = optim_state.get("param_groups", [])
    ids = [i for g in groups for i in g["params"]]
    if sorted(ids) != list(range(len(names))):
        return {}, False
    return {
        "state": {names[i]: v for i, v in optim_state.get("state", {}).items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in groups],
    }, True
