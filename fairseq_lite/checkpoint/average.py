"""Average the weights of several checkpoints (fairseq's scripts/average_checkpoints.py), e.g. the last
10 epochs' of a translation run, which usually translates better than any one of them.

The result is the first checkpoint's state (config, counters, ...) with the averaged weights: fp16 weights are
summed and averaged in fp32, as fairseq does, other floating-point ones in their own dtype, integer buffers
with floor division. Sharded (FSDP) checkpoints are not averaged: their weights are not in the file.
"""

import os
import re
from collections.abc import Sequence
from typing import Any

import torch

from fairseq_lite.checkpoint.io import read_checkpoint, write_checkpoint
from fairseq_lite.errors import CheckpointError


def average_checkpoints(paths: Sequence[str]) -> dict[str, Any]:
    if not paths:
        raise CheckpointError("no checkpoints to average")
    averaged: dict[str, torch.Tensor] = {}
    first: dict[str, Any] | None = None
    keys: list[str] | None = None
    for path in paths:
        state = read_checkpoint(path)
        weights = state.get("model") if isinstance(state, dict) else None
        if not isinstance(weights, dict) or not weights:
            raise CheckpointError(f"{path} has no weights to average (a sharded checkpoint keeps them in its shards)")
        if keys is None:
            first, keys = state, list(weights)
        elif list(weights) != keys:
            missing = sorted(set(keys) ^ set(weights))
            raise CheckpointError(
                f"{path} has other weights than {paths[0]} ({', '.join(missing[:3]) or 'another order'}): "
                "only checkpoints of one model can be averaged"
            )
        for name, tensor in weights.items():
            value = tensor.float() if tensor.dtype == torch.float16 else tensor
            if name in averaged:
                if value.shape != averaged[name].shape:
                    raise CheckpointError(
                        f"{path}: '{name}' is {tuple(value.shape)}, {paths[0]}'s {tuple(averaged[name].shape)}"
                    )
                averaged[name] += value
            else:
                averaged[name] = value.clone()  # a tied weight must not be summed into its twin
    for total in averaged.values():
        if total.is_floating_point():
            total.div_(len(paths))
        else:
            total.floor_divide_(len(paths))
    assert first is not None
    return {**first, "model": averaged}


def last_n_checkpoints(directory: str, n: int, update_based: bool, upper_bound: int | None = None) -> list[str]:
    """The newest `n` epoch checkpoints (checkpointN.pt) or update checkpoints (checkpoint_E_U.pt) in
    `directory`, newest first, optionally none past epoch/update `upper_bound`."""
    if not os.path.isdir(directory):
        raise CheckpointError(f"--inputs {directory}: with --num-*-checkpoints, give the directory of the checkpoints")
    pattern = re.compile(r"checkpoint_\d+_(\d+)\.pt" if update_based else r"checkpoint(\d+)\.pt")
    found = []
    for name in os.listdir(directory):
        m = pattern.fullmatch(name)
        if m and (upper_bound is None or int(m.group(1)) <= upper_bound):
            found.append((int(m.group(1)), name))
    if len(found) < n:
        kind = "update" if update_based else "epoch"
        raise CheckpointError(f"found {len(found)} {kind} checkpoints in {directory} but need at least {n}")
    return [os.path.join(directory, name) for _, name in sorted(found, reverse=True)[:n]]


def average_to_file(
    inputs: Sequence[str],
    output: str,
    num_epoch_checkpoints: int | None = None,
    num_update_checkpoints: int | None = None,
    checkpoint_upper_bound: int | None = None,
) -> list[str]:
    """fairseq's average_checkpoints.py: average `inputs` (or the last N checkpoints of the directory given)
    into `output`, written atomically; returns the checkpoints averaged."""
    if num_epoch_checkpoints is not None and num_update_checkpoints is not None:
        raise CheckpointError("--num-epoch-checkpoints and --num-update-checkpoints cannot be combined")
    n = num_update_checkpoints if num_update_checkpoints is not None else num_epoch_checkpoints
    if checkpoint_upper_bound is not None and n is None:
        raise CheckpointError("--checkpoint-upper-bound needs --num-epoch-checkpoints or --num-update-checkpoints")
    paths = list(inputs)
    if n is not None:
        if len(paths) != 1:
            raise CheckpointError("with --num-epoch-checkpoints/--num-update-checkpoints, --inputs is one directory")
        paths = last_n_checkpoints(paths[0], n, num_update_checkpoints is not None, checkpoint_upper_bound)
    if os.path.abspath(output) in {os.path.abspath(p) for p in paths}:
        raise CheckpointError(f"--output {output} is one of the checkpoints averaged: write it elsewhere")
    write_checkpoint(average_checkpoints(paths), output)
    return paths
