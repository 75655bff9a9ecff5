"""The base of the optimizers whose update we write ourselves (fairseq's Adam, Adamax, Adafactor, NAG, LAMB).

Their update runs in fp32 for parameters of any floating dtype: an fp16/bf16 parameter is copied to fp32,
updated and written back, and the state is fp32. `step(grad_scale=c)` multiplies every gradient by `c`
after it is cast to fp32, so `--memory-efficient-fp16` can run them over fp16 weights with neither an fp32
copy of the weights nor an in-place unscaling of fp16 gradients (which underflows). The gradients
themselves are never modified, and only one parameter's fp32 copies exist at a time.
"""

from typing import Any

import torch
from torch import Tensor


def fp32_grad(p: Tensor, grad_scale: float | Tensor, owner: str) -> Tensor:
    """p's gradient in fp32, times grad_scale (the gradient itself when it is fp32 and the scale is 1)."""
    if p.grad.is_sparse:
        raise RuntimeError(f"{owner} does not support sparse gradients")
    grad = p.grad.float()
    if torch.is_tensor(grad_scale):
        return grad * grad_scale.to(grad.device)
    return grad if grad_scale == 1.0 else grad * grad_scale


class FP32StepOptimizer(torch.optim.Optimizer):
    """Subclasses implement `update(p32, grad32, state, group)`, which updates `p32` in place and must not
    write into `grad32` (for an fp32 parameter it is the gradient itself); `begin_step(grad_scale)` runs
    first and `end_group(group)` after each group."""

    def update(self, p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        raise NotImplementedError

    def begin_step(self, grad_scale: float | Tensor) -> None:
        """Whole-model work before any parameter is updated (e.g. LAMB's global gradient norm)."""

    def end_group(self, group: dict[str, Any]) -> None:
        """Per-group bookkeeping after every parameter of the group was updated (e.g. NAG's lr_old)."""

    @torch.no_grad()
    def step(self, closure: Any = None, grad_scale: float | Tensor = 1.0) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.begin_step(grad_scale)
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = fp32_grad(p, grad_scale, type(self).__name__)
                p32 = p if p.dtype == torch.float32 else p.float()
                self.update(p32, grad, self.state[p], group)
                if p32 is not p:
                    p.copy_(p32)
            self.end_group(group)
        return loss
