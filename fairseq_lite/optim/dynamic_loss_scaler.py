"""fairseq's dynamic loss scaling for fp16: multiply the loss by a scale so small gradients survive
fp16, skip an update whose gradients overflowed and lower the scale, raise it again after a window of
clean updates, and stop with advice when it would fall below the minimum."""

import logging
from typing import Any

from fairseq_lite.errors import MinimumLossScaleReached, key, setting

__all__ = ["DynamicLossScaler", "GradientOverflow", "MinimumLossScaleReached"]

logger = logging.getLogger(__name__)


class GradientOverflow(OverflowError):
    """This update's gradients overflowed: skip it (the scale was already lowered)."""


class DynamicLossScaler:
    def __init__(
        self,
        init_scale: float = 2.0**7,
        scale_factor: float = 2.0,
        scale_window: int = 2000,
        tolerance: float = 0.0,
        threshold: float | None = None,
        min_loss_scale: float = 1e-4,
    ):
        self.loss_scale = float(init_scale)
        self.scale_factor = scale_factor
        self.scale_window = scale_window
        self.tolerance = tolerance  # fraction of overflowing updates since the last rescale to accept
        self.threshold = threshold  # never scale below this
        self.min_loss_scale = min_loss_scale
        self._iter = 0
        self._last_overflow_iter = -1
        self._last_rescale_iter = -1
        self._overflows_since_rescale = 0

    def scale(self, loss):
        return loss * self.loss_scale

    def update(self) -> None:
        """After a clean update: grow the scale once `scale_window` updates passed without overflow."""
        if (self._iter - self._last_overflow_iter) % self.scale_window == 0:
            self.loss_scale *= self.scale_factor
            self._last_rescale_iter = self._iter
        self._iter += 1

    def check_overflow(self, grad_norm: float) -> None:
        """Raise GradientOverflow (skip the update) when the gradient norm is inf/NaN."""
        if grad_norm == float("inf") or grad_norm != grad_norm:
            previous = self.loss_scale
            self._last_overflow_iter = self._iter
            self._overflows_since_rescale += 1
            since_rescale = max(self._iter - self._last_rescale_iter, 1)
            if self._overflows_since_rescale / since_rescale >= self.tolerance:
                self.loss_scale /= self.scale_factor
                if self.threshold is not None:
                    self.loss_scale = max(self.loss_scale, self.threshold)
                self._last_rescale_iter = self._iter
                self._overflows_since_rescale = 0
            if self.loss_scale <= self.min_loss_scale:
                self.loss_scale = previous  # keep a usable scale in the checkpoint
                scale = setting("common.min_loss_scale", self.min_loss_scale)
                raise MinimumLossScaleReached(
                    f"minimum loss scale reached ({scale}): the loss is probably exploding; try a lower learning "
                    f"rate, gradient clipping ({key('optimization.clip_norm')}), a larger batch, or "
                    f"{setting('common.bf16', True)} instead of fp16"
                )
            self._iter += 1
            raise GradientOverflow(
                f"gradient overflow detected, ignoring gradient, setting loss scale to: {self.loss_scale}"
            )

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss_scale": self.loss_scale,
            "iter": self._iter,
            "last_overflow_iter": self._last_overflow_iter,
            "last_rescale_iter": self._last_rescale_iter,
            "overflows_since_rescale": self._overflows_since_rescale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss_scale = float(state["loss_scale"])
        self._iter = int(state["iter"])
        self._last_overflow_iter = int(state["last_overflow_iter"])
        self._last_rescale_iter = int(state["last_rescale_iter"])
        self._overflows_since_rescale = int(state["overflows_since_rescale"])
