"""Small helpers every stage shares: which device a run uses, and moving a batch onto it."""

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
