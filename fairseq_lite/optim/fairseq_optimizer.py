"""Base class wrapping a torch optimizer with fairseq's optimizer interface."""

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from fairseq_lite.dataclass.utils import add_registered_args
from fairseq_lite.errors import ConfigError, key


def first_lr(lr: Any, component: str) -> float:
    """fairseq's `lr` is a list (one value per epoch for `fixed`); most components use the first."""
    if isinstance(lr, (int, float)):
        return float(lr)
    values = list(lr)
    if not values:
        raise ConfigError(f"{component}: {key('optimization.lr')} is empty")
    return float(values[0])


class FairseqOptimizer:
    """Built as `Optimizer(cfg, params)`; subclasses set `self._optimizer` to a torch optimizer."""

    @classmethod
    def add_args(cls, parser: Any) -> None:
        """fairseq's: the flags of the optimizer's config, for a subclass's own add_args to extend."""
        add_registered_args(cls, parser)

    # An optimizer that schedules its own learning rate sets this (what lr_scheduler=pass_through runs).
    lr_scheduler: Any = None

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Reject settings this optimizer cannot run with (a one-line ConfigError), before anything is
        built: the checks before a run call it, and so does __init__."""

    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        """Whether the update over one flat buffer of many tensors equals the update over each (true of an
        elementwise update); --fp16 flattens its fp32 master weights only then."""
        return True

    def __init__(self, cfg: Any):
        self.cfg = cfg
        self._optimizer: torch.optim.Optimizer | None = None

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        if self._optimizer is None:
            raise NotImplementedError(f"{type(self).__name__} did not create its torch optimizer")
        return self._optimizer

    @property
    def optimizer_config(self) -> dict[str, Any]:
        """The hyper-parameters that override those stored in a checkpoint when resuming."""
        raise NotImplementedError

    @property
    def params(self) -> Iterable[Tensor]:
        for group in self.param_groups:
            yield from group["params"]

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    def get_lr(self) -> float:
        return self.param_groups[0]["lr"]

    def group_lrs(self) -> dict[str, float] | None:
        """Each named group's lr, for an optimizer with several (composite); None for one lr."""
        return None

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], optimizer_overrides: dict[str, Any] | None = None) -> None:
        """Load optimizer state, then let the current hyper-parameters (e.g. a new lr) win."""
        self.optimizer.load_state_dict(state_dict)
        if optimizer_overrides:
            for group in self.param_groups:
                group.update(optimizer_overrides)

    def backward(self, loss: Tensor) -> None:
        loss.backward()

    def multiply_grads(self, c: float | Tensor) -> None:
        # One multi-tensor kernel per device and dtype rather than one launch per parameter.
        groups: dict[Any, list[Tensor]] = {}
        for p in self.params:
            if p.grad is not None:
                groups.setdefault((p.grad.device, p.grad.dtype), []).append(p.grad)
        for (device, _), grads in groups.items():
            torch._foreach_mul_(grads, c.to(device) if torch.is_tensor(c) else c)

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """Total L2 norm of the gradients; rescale them to max_norm if above (0 = only measure)."""
        params = [p for p in self.params if p.grad is not None]
        if not params:
            return torch.tensor(0.0)
        total_norm = torch.nn.utils.get_total_norm([p.grad for p in params]).float()
        if max_norm > 0:
            # Scales by max_norm / (norm + 1e-6), never up: the same rule as fairseq.
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, total_norm)
        return total_norm

    def step(self, closure: Any = None, scale: float = 1.0) -> None:
        if scale != 1.0:
            self.multiply_grads(1.0 / scale)
        self.optimizer.step(closure)

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)


def fused_or_foreach(params: Sequence[Tensor]) -> dict[str, bool]:
    """Ask torch for its fused kernel when every parameter is on a device/dtype that has one."""
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        devices = set(_get_fused_kernels_supported_devices())
    except ImportError:
        devices = {"cuda"}
    if params and all(p.is_floating_point() and p.device.type in devices for p in params):
        return {"fused": True}
    return {"foreach": True}


class LegacyFairseqOptimizer(FairseqOptimizer):
    """fairseq's optimizer of the older style: `__init__(args, params)` with the flat `args` Namespace
    (its values as `self.args.lr`, ...), flags from `add_args(parser)`."""

    def __init__(self, args: Any):
        super().__init__(args)
        self.args = args
