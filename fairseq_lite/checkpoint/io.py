"""Reading and writing checkpoint files.

A checkpoint holds only tensors and plain Python containers (the config included, resolved), so
`torch.load(path, weights_only=True)` reads it and loading one never runs code. Files are written with
`file_io.atomic_write`: a crash or a full disk leaves the previous file whole. Checkpoints written by
fairseq 0.12.2 load too, for inference and fine-tuning (checkpoint/fairseq.py).
"""

import argparse
import os
from typing import Any

import torch

from fairseq_lite.checkpoint.fairseq import convert_fairseq_checkpoint, is_fairseq_checkpoint
from fairseq_lite.errors import CheckpointError
from fairseq_lite.file_io import atomic_copy, atomic_write


def torch_load_weights_only(path: str, mmap: bool = False) -> Any:
    """torch.load that unpickles tensors and plain containers only (never runs code from the file)."""
    # fairseq 0.12.2 keeps an argparse.Namespace in some configs: plain data, safe to allow.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _first_line(error: BaseException) -> str:
    text = str(error)
    return text.splitlines()[0] if text else type(error).__name__


def read_checkpoint(path: str, mmap: bool = False) -> Any:
    """The unpickled file, or a one-line CheckpointError when it is missing, truncated or foreign.
    With `mmap` the tensors are mapped, not read: cheap for looking at a checkpoint's small entries."""
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch_load_weights_only(path, mmap=mmap)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"cannot read checkpoint {path}: {_first_line(e)}") from e


def load_checkpoint_to_cpu(path: str) -> dict[str, Any]:
    """A fairseq-lite checkpoint's state (a fairseq 0.12.2 one converted), tensors on the CPU."""
    state = read_checkpoint(path)
    if isinstance(state, dict) and is_fairseq_checkpoint(state):
        return convert_fairseq_checkpoint(state, path)
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise CheckpointError(f"{path} is not a fairseq-lite checkpoint (no 'model'/'cfg' entries)")
    return state


def checkpoint_summary(path: str) -> dict[str, Any]:
    """What a run resumed from `path` would start at, read without loading its tensors:
    {"num_updates", "epoch", "written_by"}. Raises CheckpointError when the file cannot be read."""
    state = read_checkpoint(path, mmap=True)
    if isinstance(state, dict) and is_fairseq_checkpoint(state):
        return {"num_updates": None, "epoch": None, "written_by": "fairseq"}
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise CheckpointError(f"{path} is not a fairseq-lite checkpoint (no 'model'/'cfg' entries)")
    extra = state.get("extra_state") or {}
    return {"num_updates": int(state.get("num_updates", 0)), "epoch": extra.get("epoch"), "written_by": None}


def state_nbytes(value: Any) -> int:
    """About how many bytes torch.save writes for `value`: its tensors' storage (views counted once)."""
    seen: dict[int, int] = {}

    def visit(v: Any) -> None:
        if torch.is_tensor(v):
            storage = v.untyped_storage()
            seen[storage.data_ptr() if storage.data_ptr() else id(storage)] = storage.nbytes()
        elif isinstance(v, dict):
            for item in v.values():
                visit(item)
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)

    visit(value)
    return sum(seen.values()) + (64 << 10)  # plus the pickled containers and zip records, generously


def write_checkpoint(state: dict[str, Any], path: str) -> None:
    """torch.save to `path` atomically; a full disk is a DiskFullError saying how much was needed."""
    with atomic_write(path, "wb", size_hint=state_nbytes(state)) as f:
        torch.save(state, f)


def copy_checkpoint(src: str, dst: str) -> None:
    atomic_copy(src, dst)


def model_weights(state: dict[str, Any], path: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights of a checkpoint read by load_checkpoint_to_cpu, gathered from its shard
    directory when a fully_sharded run wrote it (`model` gives the names and shapes)."""
    if state.get("model") is not None or not state.get("sharded_state"):
        return state["model"]
    from fairseq_lite.distributed.fsdp import load_full_model_state

    directory = os.path.join(os.path.dirname(os.path.abspath(path)), state["sharded_state"])
    if not os.path.isdir(directory):
        raise CheckpointError(f"{path} keeps its weights in {directory}, which is missing")
    return load_full_model_state(directory, model)


def load_model_weights(model: torch.nn.Module, state: dict[str, Any], path: str, strict: bool = True) -> None:
    """Load a checkpoint's weights (model_weights) into the model its config built; weights that do not
    fit are one line naming the checkpoint."""
    try:
        model.load_state_dict(model_weights(state, path, model), strict=strict)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model its config describes ({str(e).splitlines()[0]})"
        ) from e
