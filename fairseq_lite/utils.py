"""Small helpers every stage shares: which device a run uses, moving a batch onto it, and fairseq's
helpers that plugins call (get_perplexity)."""

import builtins
from typing import Any

import torch


def select_device(cfg: Any) -> torch.device:
    """The CUDA device `distributed_training.device_id` unless there is none or `common.cpu` is set."""
    if torch.cuda.is_available() and not cfg.common.cpu:
        return torch.device("cuda", cfg.distributed_training.device_id)
    return torch.device("cpu")


def move_to_device(sample: Any, device: torch.device) -> Any:
    """The same nested dicts/lists/tuples of tensors, on `device` (asynchronously from pinned memory)."""
    if torch.is_tensor(sample):
        return sample.to(device, non_blocking=True)
    if isinstance(sample, dict):
        return {k: move_to_device(v, device) for k, v in sample.items()}
    if isinstance(sample, (list, tuple)):
        return type(sample)(move_to_device(v, device) for v in sample)
    return sample


def get_perplexity(loss: float | None, round: int = 2, base: float = 2) -> float:
    """base**loss rounded to `round` digits (inf when it overflows), as fairseq logs ppl."""
    if loss is None:
        return 0.0
    try:
        return builtins.round(base**loss, round)
    except OverflowError:
        return float("inf")
