"""fairseq's LinearizedConvolution: a causal ConvTBC that can also run one decoding step at a time.

A full pass (training, scoring) convolves the whole time-first sequence, padded by `padding` = kernel - 1 on
both sides by the convolution, and drops the last `padding` outputs, which saw the future. One incremental
step takes the newest input frame (batch-first, B x 1 x C, as fairseq's decoder gives it), appends it to a
buffer of the last `kernel` frames (zeros before the sequence starts, what the left padding gives) and
applies the kernel as one linear layer over the flattened buffer.

The cache is this module's "input_buffer" in the decoder's incremental_state (B x kernel x C_in).
"""

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.incremental_decoding_utils import FairseqIncrementalState
from fairseq_lite.modules.conv_tbc import ConvTBC
from fairseq_lite.modules.multihead_attention import IncrementalState


class LinearizedConvolution(FairseqIncrementalState, ConvTBC):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, **kwargs: Any):
        super().__init__(in_channels, out_channels, kernel_size, **kwargs)

    def forward(self, input: Tensor, incremental_state: IncrementalState | None = None) -> Tensor:
        """Full: T x B x C_in -> T x B x C_out. Incremental: B x T x C_in (only the last frame is read) ->
        B x 1 x C_out."""
        if incremental_state is None:
            output = self.conv_tbc(input)
            if self.kernel_size[0] > 1 and self.padding[0] > 0:
                output = output[: -self.padding[0]]  # the steps that saw the future padding
            return output
        bsz = input.size(0)
        frame = input[:, -1:, :]
        kw = self.kernel_size[0]
        if kw > 1:
            buffer = self._get_input_buffer(incremental_state)
            if buffer is None:
                buffer = frame.new_zeros(bsz, kw - 1, input.size(2))
            else:
                buffer = buffer[:, 1:]
            frame = torch.cat([buffer, frame], dim=1)
            self._set_input_buffer(incremental_state, frame)
        output = F.linear(frame.reshape(bsz, -1), self._get_linearized_weight(), self.bias)
        return output.view(bsz, 1, -1)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        buffer = self._get_input_buffer(incremental_state)
        if buffer is not None:
            self._set_input_buffer(incremental_state, buffer.index_select(0, new_order))

    def _get_input_buffer(self, incremental_state: IncrementalState | None) -> Tensor | None:
        return self.get_incremental_state(incremental_state, "input_buffer")

    def _set_input_buffer(self, incremental_state: IncrementalState | None, buffer: Tensor) -> None:
        self.set_incremental_state(incremental_state, "input_buffer", buffer)

    def _get_linearized_weight(self) -> Tensor:
        """The kernel as a linear layer's weight: out x (kernel * in), taps oldest first, as the buffer."""
        return self.weight.permute(2, 0, 1).reshape(self.out_channels, -1)
