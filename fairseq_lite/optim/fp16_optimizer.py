"""fairseq's --fp16 and --memory-efficient-fp16 optimizers: an fp16 model, fp32 optimizer math.

Both wrap one of our FairseqOptimizers and present the FairseqOptimizer interface themselves, so the
trainer, gradient clipping, lr schedulers and checkpointing use them unchanged. Loss scaling and
overflow handling are the PrecisionOptimizer's that wraps them (optim/precision.py: DynamicLossScaler):
it unscales with `multiply_grads(1 / loss_scale)` and skips the update when the norm is inf/NaN.

- FP16Optimizer (--fp16): keeps fp32 master copies of the (fp16) model parameters, flattened into
  one contiguous fp32 buffer per parameter group and device, with a flat fp32 gradient buffer. The
  fp16 gradients are copied into it on first use after backward, multiply/clip/step then work in
  fp32 with the wrapped optimizer over the master buffers, and each step copies the updated master
  weights back into the fp16 parameters.
- MemoryEfficientFP16Optimizer (--memory-efficient-fp16): no fp32 copy of the weights. Gradient
  multiplications (unscaling, normalization, clipping) only accumulate into a pending factor; the
  step then, one parameter at a time, casts the parameter and its gradient to fp32, applies the
  factor and torch's AdamW or SGD update with fp32 optimizer state, and writes the result back; the
  optimizers whose update is ours (fairseq's Adam loop, adamax, adafactor, nag, lamb:
  optim/fp32_step_optimizer.py) do that themselves, told the factor. adagrad and adadelta (torch's) and
  composite are not supported, as in fairseq.

Checkpoints: both save the optimizer state in exactly the per-parameter format of an fp32 run of
the same optimizer (torch's own `state_dict()` layout, fp32 state tensors), so a checkpoint moves
freely between fp32, --fp16 and --memory-efficient-fp16 runs. FP16Optimizer adds one key,
`fp32_master_params` (a list of fp32 tensors in parameter order; torch's loader ignores unknown
keys), so that resuming restores the master weights exactly instead of from their fp16 rounding.
They are adopted only when they round to the current fp16 parameters; otherwise (e.g. the model
weights were replaced after saving) the masters are rebuilt from the model, as fairseq always does.
"""

import logging
from collections import OrderedDict
from collections.abc import Callable
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from fairseq_lite.errors import CheckpointError, ConfigError
from fairseq_lite.optim import adam as _adam  # noqa: F401  (registers "adam" for OPTIMIZER_REGISTRY.build)
from fairseq_lite.optim import sgd as _sgd  # noqa: F401  (registers "sgd")
from fairseq_lite.optim.adafactor import FACTORED_STATE
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.registry import OPTIMIZER_REGISTRY, cfg_name
from fairseq_lite.targets import is_target

logger = logging.getLogger(__name__)

MASTER_PARAMS_KEY = "fp32_master_params"
MEMORY_EFFICIENT_OPTIMIZERS = ("adam", "adafactor", "adamax", "lamb", "nag", "sgd")

# What builds the wrapped optimizer: an optimizer config (built through OPTIMIZER_REGISTRY, like the
# trainer does) or any callable taking the parameters, e.g. `lambda params: SGD(cfg, params)`.
OptimizerSource = Any | Callable[[Any], FairseqOptimizer]


def build_fp16_optimizer(
    optimizer_cfg: Any, params: Any, memory_efficient: bool = False, flatten: bool = True
) -> FairseqOptimizer:
    """The trainer's entry point: `--memory-efficient-fp16` or `--fp16` over the model's parameters
    (flatten=False: --fp16-no-flatten-grads)."""
    if memory_efficient:
        return MemoryEfficientFP16Optimizer(optimizer_cfg, params)
    return FP16Optimizer(optimizer_cfg, params, flatten=flatten)


def _is_built_in(name: str) -> bool:
    return OPTIMIZER_REGISTRY.get(name).cls.__module__.startswith("fairseq_lite.")


def _supports_flat_params(source: OptimizerSource) -> bool:
    """Whether the configured optimizer's update is the same over one flat buffer as over its tensors."""
    if callable(source):
        return True
    if is_target(source):
        registered = OPTIMIZER_REGISTRY.registered_config(source)
        if registered is None:
            return False  # any torch optimizer: nothing says its update is elementwise
        source = registered
    check = getattr(OPTIMIZER_REGISTRY.get(cfg_name(source)).cls, "supports_flat_params", None)
    return True if check is None else bool(check(source))


def _build_wrapped(source: OptimizerSource, params: Any) -> FairseqOptimizer:
    optimizer = source(params) if callable(source) else OPTIMIZER_REGISTRY.build(source, params)
    if not isinstance(optimizer, FairseqOptimizer):
        raise TypeError(f"the fp16 optimizers wrap a FairseqOptimizer, got {type(optimizer).__name__}")
    return optimizer


def _param_groups(params: Any) -> list[dict[str, Any]]:
    """Plain parameter lists and torch-style lists of group dicts, as a list of group dicts."""
    params = list(params)
    if not params:
        raise ValueError("the optimizer got an empty parameter list")
    if isinstance(params[0], dict):
        return [dict(group, params=list(group["params"])) for group in params]
    return [{"params": params}]


def _total_norm_fp32(grads: list[Tensor]) -> Tensor:
    """L2 norm over all gradients, computed in fp32: the norm of scaled fp16 grads easily exceeds
    fp16's range (65504) even when every element is fine."""
    device = grads[0].device
    norms = [torch.linalg.vector_norm(g, dtype=torch.float32).to(device) for g in grads]
    return torch.linalg.vector_norm(torch.stack(norms))


def _check_shape(value: Any, param: Tensor, key: str, index: int) -> None:
    """Per-element state must have the parameter's shape; a mismatch means another model's checkpoint."""
    if key in FACTORED_STATE:  # Adafactor's row and column statistics
        expected = param.shape[:-1] if key.endswith("row") else param.shape[:-2] + param.shape[-1:]
        if torch.is_tensor(value) and value.shape != expected:
            raise CheckpointError(
                f"optimizer state '{key}' of parameter {index} has shape {tuple(value.shape)} but the parameter "
                f"has shape {tuple(param.shape)}: the checkpoint is for another model; use --reset-optimizer"
            )
        return
    if torch.is_tensor(value) and key != "step" and value.dim() > 0 and value.shape != param.shape:
        raise CheckpointError(
            f"optimizer state '{key}' of parameter {index} has shape {tuple(value.shape)} but the parameter "
            f"has shape {tuple(param.shape)}: the checkpoint is for another model; use --reset-optimizer"
        )


def _check_group_sizes(saved_groups: list[dict[str, Any]], sizes: list[int]) -> None:
    saved = [len(g["params"]) for g in saved_groups]
    if saved != sizes:
        raise CheckpointError(
            f"the checkpoint's optimizer has parameter groups of sizes {saved}, this model's "
            f"has {sizes}: the checkpoint is for another model; use --reset-optimizer"
        )


class _FlatMaster:
    """One contiguous fp32 master buffer standing for a list of model parameters on one device.
    `master` is what the wrapped optimizer sees (1-D; shaped like the parameter when it stands for one
    parameter and `shaped`); `slices()` cuts it back into parameter shapes."""

    def __init__(self, params: list[Tensor], shaped: bool = False):
        self.params = params
        self.offsets = []
        total = 0
        for p in params:
            self.offsets.append(total)
            total += p.numel()
        self.numel = total
        flat = torch.empty(total, dtype=torch.float32, device=params[0].device)
        if shaped and len(params) == 1:
            flat = flat.view(params[0].shape)
        self.master = torch.nn.Parameter(flat)
        group = getattr(params[0], "param_group", None)
        if group is not None:
            self.master.param_group = group  # what --optimizer composite sorts parameters by
        self.copy_from_model()

    def slices(self, tensor: Tensor) -> list[Tensor]:
        """`tensor` (anything of the flat buffer's size) cut into views shaped like the parameters."""
        flat = tensor.reshape(-1)
        return [flat[o : o + p.numel()].view(p.shape) for o, p in zip(self.offsets, self.params)]

    @torch.no_grad()
    def copy_from_model(self) -> None:
        for view, p in zip(self.slices(self.master), self.params):
            view.copy_(p)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        for view, p in zip(self.slices(self.master), self.params):
            p.copy_(view)

    @torch.no_grad()
    def copy_grads_from_model(self) -> None:
        if self.master.grad is None:
            self.master.grad = torch.empty_like(self.master)
        for view, p in zip(self.slices(self.master.grad), self.params):
            if p.grad is None:
                view.zero_()  # unused this step: fairseq's flat buffer also steps it with a zero grad
            else:
                view.copy_(p.grad)


class FP16Optimizer(FairseqOptimizer):
    """`FP16Optimizer(optimizer_cfg_or_builder, params)`: the wrapped optimizer (adam, sgd, ...) is built
    over flat fp32 master copies of `params` (fp16, bf16 or fp32 tensors, or torch-style group dicts).

    Build it after the model's weights are final (it copies them into the masters), and call
    `zero_grad()` before each update's backward passes: that is what tells it to re-read the fp16
    gradients on the next multiply_grads/clip_grad_norm/step.
    """

    def __init__(self, optimizer: OptimizerSource, params: Any, flatten: bool = True):
        groups = _param_groups(params)
        if flatten and not _supports_flat_params(optimizer):
            logger.info(
                f"--fp16: optimizer '{cfg_name(optimizer)}' updates each tensor by its shape or norm: one fp32 "
                "master tensor per parameter (as with --fp16-no-flatten-grads)"
            )
            flatten = False
        self.fp16_groups: list[list[Tensor]] = [g["params"] for g in groups]  # checkpoint index order
        self.flat_masters: list[_FlatMaster] = []  # in the wrapped optimizer's parameter order
        self._flat_groups: list[list[int]] = []  # per group: indices into flat_masters
        wrapped_groups = []
        for group in groups:
            # One buffer per device and `param_group` attribute (composite's groups), or per parameter.
            by_device: dict[Any, list[Tensor]] = OrderedDict()
            for i, p in enumerate(group["params"]):
                bucket = (p.device, getattr(p, "param_group", None)) if flatten else i
                by_device.setdefault(bucket, []).append(p)
            indices = []
            for members in by_device.values():
                indices.append(len(self.flat_masters))
                self.flat_masters.append(_FlatMaster(members, shaped=not flatten))
            self._flat_groups.append(indices)
            wrapped_groups.append(dict(group, params=[self.flat_masters[i].master for i in indices]))
        plain = len(groups) == 1 and set(groups[0]) == {"params"}
        self.fp32_optimizer = _build_wrapped(optimizer, wrapped_groups[0]["params"] if plain else wrapped_groups)
        super().__init__(self.fp32_optimizer.cfg)
        self._optimizer = self.fp32_optimizer.optimizer
        self._needs_sync = True  # fp16 grads not yet copied into the fp32 flat grads

    @property
    def optimizer_config(self) -> dict[str, Any]:
        return self.fp32_optimizer.optimizer_config

    @property
    def lr_scheduler(self) -> Any:
        return self.fp32_optimizer.lr_scheduler

    def get_lr(self) -> float:
        return self.fp32_optimizer.get_lr()

    def group_lrs(self) -> dict[str, float] | None:
        return self.fp32_optimizer.group_lrs()

    @property
    def fp16_params(self) -> list[Tensor]:
        return [p for group in self.fp16_groups for p in group]

    # --- gradients ---------------------------------------------------------------------------------
    def _sync_fp16_grads_to_fp32(self) -> None:
        if self._needs_sync:
            for flat in self.flat_masters:
                flat.copy_grads_from_model()
            self._needs_sync = False

    def backward(self, loss: Tensor) -> None:
        loss.backward()
        self._needs_sync = True

    def multiply_grads(self, c: float | Tensor) -> None:
        self._sync_fp16_grads_to_fp32()
        super().multiply_grads(c)  # on the fp32 flat grads: no fp16 underflow from 1/loss_scale

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        self._sync_fp16_grads_to_fp32()
        return super().clip_grad_norm(max_norm)  # inf/NaN when the fp16 grads overflowed

    def step(self, closure: Any = None, scale: float = 1.0) -> None:
        self._sync_fp16_grads_to_fp32()
        if scale != 1.0:
            self.multiply_grads(1.0 / scale)
        self.fp32_optimizer.step(closure)
        for flat in self.flat_masters:
            flat.copy_to_model()

    def zero_grad(self) -> None:
        for p in self.fp16_params:
            p.grad = None
        for flat in self.flat_masters:
            flat.master.grad = None  # reallocated (every element written) at the next sync
        self._needs_sync = True

    # --- checkpoints -------------------------------------------------------------------------------
    def _flat_members(self):
        """(flat index, checkpoint index of each member parameter) for every flat master."""
        index = 0
        for group, flat_indices in zip(self.fp16_groups, self._flat_groups):
            position = {id(p): index + i for i, p in enumerate(group)}
            for f in flat_indices:
                yield f, [position[id(p)] for p in self.flat_masters[f].params]
            index += len(group)

    def state_dict(self) -> dict[str, Any]:
        """The state an fp32 run of the wrapped optimizer would save, plus the fp32 master weights."""
        flat_state = self.fp32_optimizer.state_dict()
        state: dict[int, dict[str, Any]] = {}
        masters: list[Tensor | None] = [None] * len(self.fp16_params)
        for f, members in self._flat_members():
            flat = self.flat_masters[f]
            for index, view in zip(members, flat.slices(flat.master.detach())):
                masters[index] = view
            saved = flat_state["state"].get(f)
            if not saved:
                continue
            per_param = [dict() for _ in members]
            for key, value in saved.items():
                if torch.is_tensor(value) and key != "step" and value.dim() == 1 and value.numel() == flat.numel:
                    parts = flat.slices(value)  # views: torch.save writes the shared storage once
                else:  # per-parameter counters: separate tensors, since torch increments "step" in place
                    parts = [value.clone() if torch.is_tensor(value) else value for _ in members]
                for entry, part in zip(per_param, parts):
                    entry[key] = part
            state.update(zip(members, per_param))
        groups, index = [], 0
        for saved_group, params in zip(flat_state["param_groups"], self.fp16_groups):
            groups.append(dict(saved_group, params=list(range(index, index + len(params)))))
            index += len(params)
        return {"state": state, "param_groups": groups, MASTER_PARAMS_KEY: masters}

    def load_state_dict(self, state_dict: dict[str, Any], optimizer_overrides: dict[str, Any] | None = None) -> None:
        """Load per-parameter state (from an fp32, --fp16 or --memory-efficient-fp16 run) into the flat
        state, then the master weights when they were saved and still match the model."""
        saved_groups = state_dict["param_groups"]
        _check_group_sizes(saved_groups, [len(g) for g in self.fp16_groups])
        saved_ids = list(chain.from_iterable(g["params"] for g in saved_groups))
        params = self.fp16_params
        flat_state = {}
        for f, members in self._flat_members():
            entries = [state_dict["state"].get(saved_ids[i]) or {} for i in members]
            merged = self._merge_param_states(self.flat_masters[f], entries, members)
            if merged:
                flat_state[f] = merged
        flat_groups = [dict(saved, params=indices) for saved, indices in zip(saved_groups, self._flat_groups)]
        self.fp32_optimizer.load_state_dict({"state": flat_state, "param_groups": flat_groups}, optimizer_overrides)
        self._load_master_params(state_dict.get(MASTER_PARAMS_KEY), params)

    @staticmethod
    def _merge_param_states(flat: _FlatMaster, entries: list[dict[str, Any]], members: list[int]) -> dict[str, Any]:
        """Concatenate per-parameter state into the flat layout. Parameters an fp32 run never stepped
        (no state) get zeros, i.e. fresh state; differing "step" counters merge to the largest."""
        keys = list(OrderedDict.fromkeys(k for entry in entries for k in entry))
        merged = {}
        for key in keys:
            values = [entry.get(key) for entry in entries]
            present = [v for v in values if v is not None]
            if not present:
                merged[key] = None
                continue
            for value, p, index in zip(values, flat.params, members):
                _check_shape(value, p, key, index)
            per_element = key != "step" and all(
                torch.is_tensor(v) and v.shape == p.shape for v, p in zip(values, flat.params) if v is not None
            )
            if per_element:
                merged[key] = torch.cat(
                    [
                        (v.to(torch.float32) if v is not None else torch.zeros(p.shape, dtype=torch.float32))
                        .reshape(-1)
                        .to(flat.master.device)
                        for v, p in zip(values, flat.params)
                    ]
                ).view(flat.master.shape)
            elif len(values) == 1:
                # An unflattened master: its state is the parameter's own, whatever its shape (e.g. Adafactor's
                # row and column statistics).
                value = present[0]
                if torch.is_tensor(value) and value.is_floating_point() and key != "step":
                    value = value.to(flat.master.device, torch.float32)
                merged[key] = value
            elif all(torch.is_tensor(v) for v in present):
                merged[key] = max(present, key=lambda v: v.item()).clone()
            else:
                merged[key] = present[0]
        return merged

    def _load_master_params(self, saved: list[Tensor] | None, params: list[Tensor]) -> None:
        if saved is None:
            return  # a checkpoint from another kind of run: the masters stay the model's weights
        usable = len(saved) == len(params) and all(
            torch.is_tensor(m) and m.shape == p.shape and torch.equal(m.to(p.device, p.dtype), p.detach())
            for m, p in zip(saved, params)
        )
        if not usable:
            logger.info(
                "the checkpoint's fp32 master weights do not match the model's weights; rebuilding them from the model"
            )
            return
        index = {id(p): i for i, p in enumerate(params)}
        with torch.no_grad():
            for flat in self.flat_masters:
                for view, p in zip(flat.slices(flat.master), flat.params):
                    view.copy_(saved[index[id(p)]])


class MemoryEfficientFP16Optimizer(FairseqOptimizer):
    """`MemoryEfficientFP16Optimizer(optimizer_cfg_or_builder, params)`: the wrapped optimizer is built
    over the fp16 parameters themselves (its param_groups, lr and state layout are torch's), but its
    step runs per parameter in fp32, with fp32 state: ours matching torch.optim.AdamW / SGD, or the
    wrapped FP32StepOptimizer's own."""

    def __init__(self, optimizer: OptimizerSource, params: Any):
        name = None if callable(optimizer) or is_target(optimizer) else cfg_name(optimizer)
        if name is not None and name not in MEMORY_EFFICIENT_OPTIMIZERS and _is_built_in(name):
            raise ConfigError(self._unsupported(name))  # before building it
        self.wrapped_optimizer = _build_wrapped(optimizer, params)
        inner = self.wrapped_optimizer.optimizer
        if not (isinstance(inner, FP32StepOptimizer) or type(inner) in (torch.optim.AdamW, torch.optim.SGD)):
            raise ConfigError(
                self._unsupported(
                    getattr(self.wrapped_optimizer, "__registered_name__", type(self.wrapped_optimizer).__name__)
                )
            )
        super().__init__(self.wrapped_optimizer.cfg)
        self._optimizer = inner
        # Product of every multiply_grads/clip since the last step or zero_grad; the fp16 grads are
        # never touched, so unscaling by 1/loss_scale cannot underflow them.
        self._multiply_factor: float | Tensor = 1.0

    @staticmethod
    def _unsupported(name: str) -> str:
        return (
            f"Unsupported optimizer '{name}' with --memory-efficient-fp16 (supported: "
            f"{', '.join(MEMORY_EFFICIENT_OPTIMIZERS)}); use --fp16 instead"
        )

    @property
    def optimizer_config(self) -> dict[str, Any]:
        return self.wrapped_optimizer.optimizer_config

    @property
    def lr_scheduler(self) -> Any:
        return self.wrapped_optimizer.lr_scheduler

    def get_lr(self) -> float:
        return self.wrapped_optimizer.get_lr()

    def group_lrs(self) -> dict[str, float] | None:
        return self.wrapped_optimizer.group_lrs()

    # --- gradients ---------------------------------------------------------------------------------
    def multiply_grads(self, c: float | Tensor) -> None:
        self._multiply_factor = self._multiply_factor * c

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return torch.tensor(0.0)
        total_norm = _total_norm_fp32(grads) * self._multiply_factor  # inf/NaN when the grads overflowed
        if max_norm > 0:
            # The rule of FairseqOptimizer.clip_grad_norm (never scale up), folded into the factor.
            self._multiply_factor = self._multiply_factor * (max_norm / (total_norm + 1e-6)).clamp(max=1.0)
        return total_norm

    def zero_grad(self) -> None:
        self.wrapped_optimizer.zero_grad()
        self._multiply_factor = 1.0

    @torch.no_grad()
    def step(self, closure: Any = None, scale: float = 1.0) -> None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if scale != 1.0:
            self.multiply_grads(1.0 / scale)
        if isinstance(self.optimizer, FP32StepOptimizer):  # its own fp32 update, told the pending factor
            self.optimizer.step(grad_scale=self._multiply_factor)
            self._multiply_factor = 1.0
            return loss
        update = self._adamw_update if isinstance(self.optimizer, torch.optim.AdamW) else self._sgd_update
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                # A private fp32 copy with the pending factor applied; fp32 params are updated in place.
                grad = p.grad.to(torch.float32).mul(self._multiply_factor)
                if group.get("maximize", False):
                    grad.neg_()
                p32 = p if p.dtype == torch.float32 else p.to(torch.float32)
                update(p32, grad, self.optimizer.state[p], group)
                if p32 is not p:
                    p.copy_(p32)
        self._multiply_factor = 1.0
        return loss

    @staticmethod
    def _adamw_update(p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """torch.optim.AdamW's single-tensor update (decoupled weight decay), state in fp32."""
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)  # on the CPU, as torch's unfused path
            state["exp_avg"] = torch.zeros_like(p, dtype=torch.float32)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = torch.zeros_like(p, dtype=torch.float32)
        lr, (beta1, beta2), eps, weight_decay = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        state["step"] += 1
        step = state["step"].item()
        if weight_decay != 0:
            p.mul_(1 - lr * weight_decay)
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        step_size = lr / (1 - beta1**step)
        bias_correction2_sqrt = (1 - beta2**step) ** 0.5
        if group["amsgrad"]:
            torch.maximum(state["max_exp_avg_sq"], exp_avg_sq, out=state["max_exp_avg_sq"])
            denom = (state["max_exp_avg_sq"].sqrt() / bias_correction2_sqrt).add_(eps)
        else:
            denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        p.addcdiv_(exp_avg, denom, value=-step_size)

    @staticmethod
    def _sgd_update(p: Tensor, grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> None:
        """torch.optim.SGD's single-tensor update, momentum buffer in fp32."""
        if group["weight_decay"] != 0:
            grad = grad.add(p, alpha=group["weight_decay"])
        momentum = group["momentum"]
        if momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = grad.clone()
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - group["dampening"])
            grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
        p.add_(grad, alpha=-group["lr"])

    # --- checkpoints -------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: dict[str, Any], optimizer_overrides: dict[str, Any] | None = None) -> None:
        """torch's loader casts state to the parameters' dtype (fp16 here): put the saved fp32 values back."""
        _check_group_sizes(state_dict["param_groups"], [len(g["params"]) for g in self.param_groups])
        saved_ids = list(chain.from_iterable(g["params"] for g in state_dict["param_groups"]))
        params = list(self.params)
        for index, (saved_id, p) in enumerate(zip(saved_ids, params)):
            for key, value in (state_dict["state"].get(saved_id) or {}).items():
                _check_shape(value, p, key, index)
        super().load_state_dict(state_dict, optimizer_overrides)
        for saved_id, p in zip(saved_ids, params):
            state = self.optimizer.state.get(p)
            for key, value in (state_dict["state"].get(saved_id) or {}).items():
                if not torch.is_tensor(value):
                    continue
                if key == "step":  # our update reads it every step: keep it on the CPU
                    state[key] = value.detach().to("cpu", torch.float32).clone()
                elif value.is_floating_point():
                    state[key] = value.detach().to(p.device, torch.float32)
