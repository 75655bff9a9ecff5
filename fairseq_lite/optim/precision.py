"""Numeric precision of a training step: autocast dtype and, for fp16, loss scaling.

The task's train_step sees this object as its `optimizer` argument, as fairseq's tasks do: it
calls `optimizer.autocast()` around the forward and `optimizer.backward(loss)`.

- fp32: nothing to do.
- bf16: autocast to bfloat16 (CPU or CUDA); no scaling needed, bf16 has fp32's range.
- fp16: an fp16 model (the trainer halves it) whose optimizer keeps fp32 master weights (fairseq's
  FP16Optimizer; --memory-efficient-fp16: fp32 optimizer state but no fp32 weights), with fairseq's
  dynamic loss scaler (fp16_init_scale, fp16_scale_window, fp16_scale_tolerance, threshold_loss_scale,
  min_loss_scale). Autocast stays on so that softmax, layer norm and the loss run in fp32.
- amp: autocast to float16 with torch's GradScaler, as fairseq's --amp does.
"""

from contextlib import nullcontext

import torch

from fairseq_lite.errors import ConfigError
from fairseq_lite.optim.dynamic_loss_scaler import DynamicLossScaler, GradientOverflow, MinimumLossScaleReached

__all__ = ["Precision", "check_precision", "GradientOverflow", "MinimumLossScaleReached"]


def check_precision(common_cfg, device: torch.device) -> str:
    """The precision mode the config asks for, or a clear error when it cannot run here."""
    # --memory-efficient-fp16 implies --fp16, as in fairseq
    fp16 = common_cfg.get("fp16", False) or common_cfg.get("memory_efficient_fp16", False)
    chosen = [name for name in ("fp16", "bf16", "amp") if (fp16 if name == "fp16" else common_cfg.get(name, False))]
    if len(chosen) > 1:
        raise ConfigError(f"common.{chosen[0]} and common.{chosen[1]} are both set; choose one precision")
    mode = chosen[0] if chosen else "fp32"
    if mode in ("fp16", "amp") and device.type != "cuda":
        raise ConfigError(
            f"common.{mode}=true needs a CUDA GPU (running on {device.type}); "
            f"use common.bf16=true on CPU, or drop --{mode}"
        )
    return mode


class Precision:
    def __init__(self, common_cfg, device: torch.device, mode: str = None, update_freq: int = 1, world_size: int = 1):
        self.mode = mode or check_precision(common_cfg, device)
        self.device = device
        self.dtype = {"fp16": torch.float16, "amp": torch.float16, "bf16": torch.bfloat16}.get(self.mode)
        self.min_loss_scale = common_cfg.get("min_loss_scale", 1e-4)
        # fairseq's default window: 2**14 updates' worth of batches, shared by ranks and micro-batches.
        window = common_cfg.get("fp16_scale_window") or max(1, int(2**14 / world_size / update_freq))
        self.loss_scaler = None  # fp16: fairseq's scaler
        self.scaler = None  # amp: torch's GradScaler
        if self.mode == "fp16":
            self.loss_scaler = DynamicLossScaler(
                init_scale=float(common_cfg.fp16_init_scale),
                scale_window=int(window),
                tolerance=common_cfg.get("fp16_scale_tolerance", 0.0),
                threshold=common_cfg.get("threshold_loss_scale"),
                min_loss_scale=self.min_loss_scale,
            )
        elif self.mode == "amp":
            self.scaler = torch.amp.GradScaler(
                device.type, init_scale=float(common_cfg.fp16_init_scale), growth_interval=int(window)
            )

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        if self.loss_scaler is not None:
            loss = self.loss_scaler.scale(loss)
        elif self.scaler is not None:
            loss = self.scaler.scale(loss)
        loss.backward()

    def unscale_grads(self, optimizer, factor: float = 1.0) -> None:
        """Divide the gradients by the loss scale and multiply them by `factor`, in one pass where
        possible."""
        if self.loss_scaler is not None:
            optimizer.multiply_grads(factor / self.loss_scaler.loss_scale)
            return
        if self.scaler is not None:
            self.scaler.unscale_(optimizer.optimizer)
        if factor != 1.0:
            optimizer.multiply_grads(factor)

    def check_overflow(self, grad_norm: float) -> None:
        """fp16: raise GradientOverflow to skip this update (MinimumLossScaleReached to stop)."""
        if self.loss_scaler is not None:
            self.loss_scaler.check_overflow(grad_norm)

    def step(self, optimizer) -> None:
        if self.loss_scaler is not None:
            optimizer.step()
            self.loss_scaler.update()
            return
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer.optimizer)  # skips the update when grads overflowed
        self.scaler.update()
        if self.scaler.get_scale() < self.min_loss_scale:
            raise MinimumLossScaleReached(
                f"minimum loss scale reached ({self.min_loss_scale}): the loss is probably exploding; try a "
                f"lower learning rate, gradient clipping (--clip-norm), or bf16 instead of fp16"
            )

    @property
    def loss_scale(self):
        if self.loss_scaler is not None:
            return self.loss_scaler.loss_scale
        return self.scaler.get_scale() if self.scaler is not None else None

    def state_dict(self):
        if self.loss_scaler is not None:
            return self.loss_scaler.state_dict()
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state):
        if not state:
            return
        if self.loss_scaler is not None and "loss_scale" in state:
            self.loss_scaler.load_state_dict(state)
        elif self.scaler is not None and "scale" in state:
            self.scaler.load_state_dict(state)
