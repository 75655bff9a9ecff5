"""Numeric precision of a training step: autocast dtype and (for fp16) dynamic loss scaling.

The task's train_step sees this object as its `optimizer` argument, as fairseq's tasks do: it
calls `optimizer.autocast()` around the forward and `optimizer.backward(loss)`.
"""

from contextlib import nullcontext

import torch

from fairseq_lite.errors import ConfigError


class MinimumLossScaleReached(FloatingPointError):
    pass


class Precision:
    def __init__(self, common_cfg, device: torch.device):
        chosen = [name for name in ("fp16", "bf16", "amp") if common_cfg.get(name, False)]
        if len(chosen) > 1:
            raise ConfigError(f"common.{chosen[0]} and common.{chosen[1]} are both set; choose one precision")
        self.mode = chosen[0] if chosen else "fp32"
        if self.mode in ("fp16", "amp") and device.type != "cuda":
            raise ConfigError(f"common.{self.mode}=true needs a CUDA GPU (running on {device.type}); "
                              f"use common.bf16=true on CPU, or drop --{self.mode}")
        self.device = device
        self.dtype = {"fp16": torch.float16, "amp": torch.float16, "bf16": torch.bfloat16}.get(self.mode)
        self.min_loss_scale = common_cfg.get("min_loss_scale", 1e-4)
        self.scaler = None
        if self.mode in ("fp16", "amp"):
            window = common_cfg.get("fp16_scale_window") or 2000
            self.scaler = torch.amp.GradScaler(device.type, init_scale=float(common_cfg.fp16_init_scale),
                                               growth_interval=int(window))

    def autocast(self):
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_grads(self, optimizer) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(optimizer.optimizer)

    def step(self, optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer.optimizer)  # skips the update when grads overflowed
        self.scaler.update()
        if self.scaler.get_scale() < self.min_loss_scale:
            raise MinimumLossScaleReached(
                f"minimum loss scale reached ({self.min_loss_scale}): the loss is probably exploding; try a "
                f"lower learning rate, gradient clipping (--clip-norm), or bf16 instead of fp16")

    @property
    def loss_scale(self):
        return self.scaler.get_scale() if self.scaler is not None else None

    def state_dict(self):
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state):
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
