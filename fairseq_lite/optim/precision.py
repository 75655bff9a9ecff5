"""The optimizer a training step uses: the configured optimizer plus the run's numeric precision.

fairseq's contract is that a task's `train_step(sample, model, criterion, optimizer, update_num,
ignore_grad)` calls `optimizer.backward(loss)`, and that the optimizer knows the precision (fairseq's
FP16Optimizer scales the loss, its AMPOptimizer owns torch's GradScaler). `PrecisionOptimizer` is that
object: it wraps the configured FairseqOptimizer (or its fp16 master-weight wrapper) and adds

- `autocast()`: the context the forward runs in (bf16/fp16 autocast, or nothing for fp32);
- `backward(loss)`: the loss times the loss scale, then backward (fp16 and amp);
- the loss scale taken off the gradients once, folded into the trainer's first `multiply_grads`;
- `clip_grad_norm` raising `GradientOverflow` (an OverflowError, as fairseq's) when fp16 gradients
  overflowed, after lowering the scale; `MinimumLossScaleReached` when it cannot go lower.

Modes: fp32 (nothing to do); bf16 (autocast to bfloat16, CPU or CUDA; no scaling: bf16 has fp32's
range); fp16 (an fp16 model, which the trainer halves, with fp32 master weights in FP16Optimizer or
MemoryEfficientFP16Optimizer and fairseq's DynamicLossScaler: fp16_init_scale, fp16_scale_window,
fp16_scale_tolerance, threshold_loss_scale, min_loss_scale; autocast stays on so that softmax, layer
norm and the loss run in fp32); amp (autocast to float16 with torch's GradScaler, as fairseq's --amp).
"""

from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from fairseq_lite.distributed.fsdp import to_local_value
from fairseq_lite.errors import ConfigError, MinimumLossScaleReached, key, setting
from fairseq_lite.optim.dynamic_loss_scaler import DynamicLossScaler, GradientOverflow
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer

__all__ = ["GradientOverflow", "MinimumLossScaleReached", "PrecisionOptimizer", "autocast_context", "check_precision"]

_AUTOCAST_DTYPES = {"fp16": torch.float16, "amp": torch.float16, "bf16": torch.bfloat16}


def check_precision(common_cfg: Any, device: torch.device | str) -> str:
    """The precision mode the config asks for, or a clear error when it cannot run on `device`."""
    device_type = getattr(device, "type", device)
    # --memory-efficient-fp16 implies --fp16, as in fairseq; messages name the option the user set.
    fp16_key = "common.fp16" if common_cfg.get("fp16", False) else "common.memory_efficient_fp16"
    keys = {"fp16": fp16_key, "bf16": "common.bf16", "amp": "common.amp"}
    fp16 = common_cfg.get("fp16", False) or common_cfg.get("memory_efficient_fp16", False)
    chosen = [name for name in ("fp16", "bf16", "amp") if (fp16 if name == "fp16" else common_cfg.get(name, False))]
    if len(chosen) > 1:
        first, second = key(keys[chosen[0]]), key(keys[chosen[1]])
        raise ConfigError(f"{first} and {second} are both set; choose one precision")
    mode = chosen[0] if chosen else "fp32"
    if mode in ("fp16", "amp") and device_type != "cuda":
        raise ConfigError(
            f"{setting(keys[mode], True)} needs a CUDA GPU (running on {device_type}); "
            f"use {setting('common.bf16', True)} on CPU, or drop {key(keys[mode])}"
        )
    return mode


def autocast_context(mode: str, device: torch.device):
    """The context a forward pass runs in for precision `mode` on `device`."""
    dtype = _AUTOCAST_DTYPES.get(mode)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class PrecisionOptimizer(FairseqOptimizer):
    """`PrecisionOptimizer(optimizer, common_cfg, device)`; `mode` overrides what the config asks for."""

    def __init__(
        self,
        optimizer: FairseqOptimizer,
        common_cfg: Any,
        device: torch.device,
        mode: str | None = None,
        update_freq: int = 1,
        world_size: int = 1,
    ):
        super().__init__(optimizer.cfg)
        self.wrapped = optimizer
        self._optimizer = optimizer.optimizer
        self.mode = mode or check_precision(common_cfg, device.type)
        self.device = device
        self.dtype = _AUTOCAST_DTYPES.get(self.mode)
        self.min_loss_scale = common_cfg.get("min_loss_scale", 1e-4)
        # fairseq's default window: 2**14 updates' worth of batches, shared by ranks and micro-batches.
        window = common_cfg.get("fp16_scale_window") or max(1, int(2**14 / world_size / update_freq))
        self.loss_scaler: DynamicLossScaler | None = None  # fp16: fairseq's scaler
        self.grad_scaler: torch.amp.GradScaler | None = None  # amp: torch's
        if self.mode == "fp16":
            self.loss_scaler = DynamicLossScaler(
                init_scale=float(common_cfg.fp16_init_scale),
                scale_window=int(window),
                tolerance=common_cfg.get("fp16_scale_tolerance", 0.0),
                threshold=common_cfg.get("threshold_loss_scale"),
                min_loss_scale=self.min_loss_scale,
            )
        elif self.mode == "amp":
            self.grad_scaler = torch.amp.GradScaler(
                device.type, init_scale=float(common_cfg.fp16_init_scale), growth_interval=int(window)
            )
        self._unscaled = False  # whether this update's gradients no longer carry the loss scale
        self.num_updates = 0  # told by the trainer, for the messages

    # --- the forward and backward of a micro-batch --------------------------------------------------
    def autocast(self):
        return autocast_context(self.mode, self.device)

    def backward(self, loss: Tensor) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        elif self.grad_scaler is not None:
            loss = self.grad_scaler.scale(loss)
        self.wrapped.backward(loss)

    # --- the update -----------------------------------------------------------------------------------
    def multiply_grads(self, c: float | Tensor) -> None:
        """Multiply the gradients by `c`; the first call of an update also takes off the loss scale,
        in the same pass where the optimizer allows."""
        if not self._unscaled:
            self._unscaled = True
            if self.loss_scaler is not None:
                c = c / self.loss_scaler.loss_scale
            elif self.grad_scaler is not None:
                self.grad_scaler.unscale_(self.wrapped.optimizer)
        if not (isinstance(c, float) and c == 1.0):
            self.wrapped.multiply_grads(c)

    def clip_grad_norm(self, max_norm: float) -> Tensor:
        """The total gradient norm, clipping to `max_norm` (0: only measure). fp16: an inf/NaN norm
        lowers the loss scale and raises GradientOverflow, to skip this update."""
        if not self._unscaled:
            self.multiply_grads(1.0)
        norm = to_local_value(self.wrapped.clip_grad_norm(max_norm))  # FSDP: a DTensor over the shards
        if self.loss_scaler is not None:
            try:
                self.loss_scaler.check_overflow(float(norm))
            except MinimumLossScaleReached as e:
                raise MinimumLossScaleReached(f"update {self.num_updates + 1}: {e.args[0]}") from None
        return norm

    def step(self, closure: Any = None, scale: float = 1.0) -> None:
        if scale != 1.0:
            self.multiply_grads(1.0 / scale)
        if self.grad_scaler is not None:
            self.grad_scaler.step(self.wrapped.optimizer)  # skips the update when grads overflowed
            self.grad_scaler.update()
            if self.grad_scaler.get_scale() < self.min_loss_scale:
                scale = setting("common.min_loss_scale", self.min_loss_scale)
                raise MinimumLossScaleReached(
                    f"update {self.num_updates + 1}: minimum loss scale reached ({scale}): the loss is probably "
                    f"exploding; try a lower learning rate, gradient clipping ({key('optimization.clip_norm')}), a "
                    f"larger batch, or {setting('common.bf16', True)} instead of fp16"
                )
            return
        self.wrapped.step(closure)
        if self.loss_scaler is not None:
            self.loss_scaler.update()

    def zero_grad(self) -> None:
        self.wrapped.zero_grad()
        self._unscaled = False

    # --- what FairseqOptimizer users and checkpoints see ---------------------------------------------
    @property
    def optimizer_config(self) -> dict[str, Any]:
        return self.wrapped.optimizer_config

    def get_lr(self) -> float:
        return self.wrapped.get_lr()

    def group_lrs(self) -> dict[str, float] | None:
        return self.wrapped.group_lrs()

    @property
    def loss_scale(self) -> float | None:
        if self.loss_scaler is not None:
            return self.loss_scaler.loss_scale
        return self.grad_scaler.get_scale() if self.grad_scaler is not None else None

    def state_dict(self) -> dict[str, Any]:
        return self.wrapped.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any], optimizer_overrides: dict[str, Any] | None = None) -> None:
        self.wrapped.load_state_dict(state_dict, optimizer_overrides)

    def precision_state_dict(self) -> dict[str, Any]:
        """The loss scaler's state (empty for fp32/bf16), saved as the checkpoint's "precision_state"."""
        if self.loss_scaler is not None:
            return self.loss_scaler.state_dict()
        return self.grad_scaler.state_dict() if self.grad_scaler is not None else {}

    def load_precision_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.loss_scaler is not None and "loss_scale" in state:
            self.loss_scaler.load_state_dict(state)
        elif self.grad_scaler is not None and "scale" in state:
            self.grad_scaler.load_state_dict(state)
