"""Find where a NaN or inf came from: rerun the forward pass with hooks and name the first module
(in execution order) whose output is not finite."""

from collections.abc import Callable

import torch


def _has_nonfinite(value) -> bool:
    if torch.is_tensor(value):
        return value.is_floating_point() and not bool(torch.isfinite(value).all())
    if isinstance(value, (tuple, list)):
        return any(_has_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nonfinite(v) for v in value.values())
    return False


@torch.no_grad()
def first_nonfinite_module(model: torch.nn.Module, run_forward: Callable[[], object]) -> tuple[str, str] | None:
    """(qualified name, class name) of the first module whose output has NaN/inf, or None."""
    found = []
    handles = []

    def hook(name):
        def check(module, inputs, output):
            if not found and _has_nonfinite(output):
                found.append((name or "<model>", type(module).__name__))

        return check

    for name, module in model.named_modules():
        handles.append(module.register_forward_hook(hook(name)))
    try:
        run_forward()
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None
