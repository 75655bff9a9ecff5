"""Weight normalization (Salimans & Kingma, 2016) with the parameter names of torch's original
`nn.utils.weight_norm`, which fairseq's convolutional models use: `weight_g` (the magnitudes) and
`weight_v` (the directions), with `weight = weight_v * (weight_g / ||weight_v||)`, the norm taken over every
dimension but `dim`. torch deprecated that function for `parametrizations.weight_norm`, whose state-dict names
(`parametrizations.weight.original0`, ...) are not fairseq's; this one keeps fairseq's checkpoints loadable.

`weight` stays a plain attribute of the module, recomputed before each forward from the two parameters, so
code that reads `module.weight` (F.linear, a convolution) is unchanged. After the forward it is kept detached:
a weight attached to the graph would make the module impossible to deep-copy (EMA, ensembles) or pickle.
"""

from typing import Any

import torch
import torch.nn as nn
from torch import Tensor


def norm_except_dim(v: Tensor, dim: int) -> Tensor:
    """The 2-norm of `v` over every dimension but `dim` (keeping them, size 1); dim=-1: of the whole tensor."""
    if dim == -1:
        return torch.linalg.vector_norm(v)
    dims = [d for d in range(v.dim()) if d != dim]
    return torch.linalg.vector_norm(v, dim=dims, keepdim=True)


class WeightNorm:
    """The forward pre-hook that recomputes `name` from `name`_g and `name`_v (a class, so that modules
    carrying it can be deep-copied and pickled)."""

    def __init__(self, name: str, dim: int):
        self.name = name
        self.dim = dim

    def compute_weight(self, module: nn.Module) -> Tensor:
        g = getattr(module, self.name + "_g")
        v = getattr(module, self.name + "_v")
        return v * (g / norm_except_dim(v, self.dim))

    def __call__(self, module: nn.Module, inputs: Any) -> None:
        setattr(module, self.name, self.compute_weight(module))

    def detach_weight(self, module: nn.Module, inputs: Any, output: Any) -> None:
        setattr(module, self.name, getattr(module, self.name).detach())


def weight_norm(module: nn.Module, name: str = "weight", dim: int = 0) -> nn.Module:
    """Reparameterize `module.<name>` as magnitude and direction (in place; returns the module). The
    magnitudes start at the weight's norms, so the weight itself is unchanged."""
    if any(isinstance(hook, WeightNorm) and hook.name == name for hook in module._forward_pre_hooks.values()):
        raise RuntimeError(f"{type(module).__name__}.{name} is already weight-normalized")
    if dim < -1:
        dim += getattr(module, name).dim()
    hook = WeightNorm(name, dim)
    weight = getattr(module, name)
    del module._parameters[name]
    if weight.is_meta:
        # A shapes-only build (torch.device("meta")): nothing to normalize, and meta ops are slow.
        shape = [size if d == dim else 1 for d, size in enumerate(weight.shape)]
        module.register_parameter(name + "_g", nn.Parameter(weight.new_empty(shape if dim != -1 else [])))
        module.register_parameter(name + "_v", nn.Parameter(weight.data))
        setattr(module, name, weight.data)
    else:
        module.register_parameter(name + "_g", nn.Parameter(norm_except_dim(weight, dim).data))
        module.register_parameter(name + "_v", nn.Parameter(weight.data))
        with torch.no_grad():
            setattr(module, name, hook.compute_weight(module))
    module.register_forward_pre_hook(hook)
    module.register_forward_hook(hook.detach_weight)
    return module


def remove_weight_norm(module: nn.Module, name: str = "weight") -> nn.Module:
    """Fold `name`_g and `name`_v back into a plain parameter `name`."""
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, WeightNorm) and hook.name == name:
            weight = hook.compute_weight(module).detach()
            delattr(module, name)
            del module._parameters[name + "_g"]
            del module._parameters[name + "_v"]
            module.register_parameter(name, nn.Parameter(weight))
            del module._forward_pre_hooks[key]
            for post_key, post in list(module._forward_hooks.items()):
                if getattr(post, "__self__", None) is hook:
                    del module._forward_hooks[post_key]
            return module
    raise ValueError(f"{type(module).__name__}.{name} is not weight-normalized")


def is_weight_normalized(module: nn.Module, name: str = "weight") -> bool:
    return any(isinstance(hook, WeightNorm) and hook.name == name for hook in module._forward_pre_hooks.values())
