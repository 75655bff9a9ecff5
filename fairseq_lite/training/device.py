"""Where and how the model trains: on which device, in which dtype, wrapped in DDP or sharded by FSDP2
across ranks, and compiled."""

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from fairseq_lite.distributed.fsdp import shard_model


class DistributedModel(torch.nn.parallel.DistributedDataParallel):
    """DDP that still answers the model's own methods (get_normalized_probs, encoder, ...)."""

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.module, name)


class FSDPNoSync:
    """FSDP2's equivalent of DDP's no_sync(): accumulate local gradients without reduce-scatter."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.model.set_requires_gradient_sync(False)

    def __exit__(self, *exc):
        self.model.set_requires_gradient_sync(True)
        return False


@dataclass
class Placement:
    model: torch.nn.Module  # the module itself: checkpoints, validation, inference
    train_model: torch.nn.Module  # what training steps run: DDP or FSDP across ranks, compiled
    criterion: torch.nn.Module
    sharded: bool  # fully_sharded: every forward is a collective
    half_model: bool  # fp16: the weights themselves are fp16 (the optimizer keeps fp32 masters)

    def gradient_sync(self, world_size: int, last: bool):
        """DDP and FSDP sync gradients on the last micro-batch of an update only."""
        if world_size == 1 or last:
            return nullcontext()
        if self.sharded:
            return FSDPNoSync(self.model)
        return self.train_model.no_sync()


def place_for_training(
    cfg: Any, model: torch.nn.Module, criterion: torch.nn.Module, device: torch.device, world_size: int, mode: str
) -> Placement:
    """Move (and for fp16 halve) model and criterion, and wrap the model for this world size."""
    dt = cfg.distributed_training
    sharded = world_size > 1 and dt.ddp_backend == "fully_sharded"
    # fp16: the model itself is fp16 and the optimizer keeps the fp32 master weights. FSDP keeps its
    # shards in fp32 instead (they are the master weights) and computes under fp16 autocast.
    half_model = mode == "fp16" and not sharded
    model = model.to(device)
    if half_model:
        model.half()
        criterion = criterion.half()
    train_model = model
    if sharded:
        shard_model(model, device)
    elif world_size > 1:
        train_model = DistributedModel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            bucket_cap_mb=dt.bucket_cap_mb,
            find_unused_parameters=dt.find_unused_parameters,
            broadcast_buffers=False,
        )
    if cfg.common.compile:
        # Compiled once, on the first batches; checkpoints still save the plain module's names.
        train_model = torch.compile(train_model, mode=str(cfg.common.compile_mode))
    return Placement(model, train_model, criterion.to(device), sharded, half_model)
