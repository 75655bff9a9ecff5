"""fairseq's `checkpoint_wrapper(module)`: the module's forward recomputed in the backward pass instead
of keeping its activations (torch.utils.checkpoint), trading compute for memory.

`offload_to_cpu` keeps the saved inputs in CPU memory meanwhile (torch's save_on_cpu hooks)."""

import functools
from typing import Any

import torch
import torch.nn as nn
from torch.utils.checkpoint import checkpoint


def checkpoint_wrapper(m: nn.Module, offload_to_cpu: bool = False) -> nn.Module:
    """Wrap `m.forward` in place and return `m` (its parameters and state_dict keys are unchanged)."""
    if getattr(m, "precheckpoint_forward", None) is not None:
        return m  # wrapped already
    original = m.forward

    @functools.wraps(original)
    def forward(*args: Any, **kwargs: Any) -> Any:
        if not torch.is_grad_enabled():  # inference: nothing to recompute
            return original(*args, **kwargs)
        if offload_to_cpu:
            with torch.autograd.graph.save_on_cpu(pin_memory=torch.cuda.is_available()):
                return checkpoint(original, *args, use_reentrant=False, **kwargs)
        return checkpoint(original, *args, use_reentrant=False, **kwargs)

    m.precheckpoint_forward = original
    m.forward = forward
    return m


def unwrap_checkpoint(m: nn.Module) -> nn.Module:
    """Undo checkpoint_wrapper on `m` and its sub-modules."""
    for module in m.modules():
        original = getattr(module, "precheckpoint_forward", None)
        if original is not None:
            module.forward = original
            del module.precheckpoint_forward
    return m
