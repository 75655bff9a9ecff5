"""fairseq's lightweight convolution (Wu et al., 2019, "Pay Less Attention with Lightweight and Dynamic
Convolutions"): a depthwise convolution over time whose C channels are split into `num_heads` groups of
R = C / H channels sharing one learned kernel of K taps, softmax-normalized over the taps (`weight_softmax`):

    out[t, b, c] = sum_k w[c // R, k] * x[t + k - padding_l, b, c]      (zero outside the sequence)

Inputs and outputs are time-first (T x B x C), as fairseq's module. Parameter names and shapes are fairseq
0.12.2's (`weight`: H x 1 x K, `bias`), so its checkpoints load. It is the dynamic convolution with a kernel
that does not depend on the position, and runs on that module's banded computation (dynamic_convolution.py,
which says why it is the one path). The weight dropout is fairseq's DropConnect: each position's copy of the
kernel is dropped on its own.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.modules.dynamic_convolution import ConvInputBuffer, banded_conv, check_padding, conv_step
from fairseq_lite.modules.fairseq_dropout import FairseqDropout

IncrementalState = dict[str, Any]


def LightweightConv(
    input_size: int,
    kernel_size: int = 1,
    padding_l: int | None = None,
    num_heads: int = 1,
    weight_dropout: float = 0.0,
    weight_softmax: bool = False,
    bias: bool = False,
) -> "LightweightConv1dTBC":
    """fairseq's factory. fairseq returns its CUDA kernel's module (LightconvLayer) when that extension is
    built, else this torch module, which has the same parameters; here it is always the torch module."""
    return LightweightConv1dTBC(
        input_size,
        kernel_size=kernel_size,
        padding_l=padding_l,
        num_heads=num_heads,
        weight_dropout=weight_dropout,
        weight_softmax=weight_softmax,
        bias=bias,
    )


class LightweightConv1dTBC(ConvInputBuffer, nn.Module):
    def __init__(
        self,
        input_size: int,
        kernel_size: int = 1,
        padding_l: int | None = None,
        num_heads: int = 1,
        weight_dropout: float = 0.0,
        weight_softmax: bool = False,
        bias: bool = False,
    ):
        super().__init__()
        if input_size % num_heads != 0:
            raise ValueError(f"input_size ({input_size}) must be divisible by num_heads ({num_heads})")
        self.input_size = input_size
        self.kernel_size = kernel_size
        self.padding_l = check_padding(padding_l, kernel_size)
        self.num_heads = num_heads
        self.weight_dropout_module = FairseqDropout(weight_dropout, module_name=type(self).__name__)
        self.weight_softmax = weight_softmax
        self.weight = nn.Parameter(torch.empty(num_heads, 1, kernel_size))
        self.bias = nn.Parameter(torch.empty(input_size)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor, incremental_state: IncrementalState | None = None, unfold: bool = False) -> Tensor:
        """x: T x B x C (one step when incremental). `unfold` chose between fairseq's two torch paths; the one
        here serves every length, so it is accepted and has nothing to choose. Returns T x B x C."""
        length, bsz, channels = x.shape
        heads, kernel = self.num_heads, self.kernel_size
        weight = self.weight.view(heads, kernel)
        if self.weight_softmax:
            weight = F.softmax(weight.float(), dim=-1).type_as(weight)
        if incremental_state is not None:
            window = self._step_window(x, incremental_state)
            taps = window.size(1)
            weight = self.weight_dropout_module(weight[:, -taps:].expand(bsz, heads, taps))
            out = conv_step(window.reshape(bsz, taps, heads, -1), weight).reshape(1, bsz, channels)
        else:
            weight = weight.view(1, heads, 1, kernel)
            if self.weight_dropout_module.p > 0:
                # One kernel per batch row, head and position, each dropped on its own (a no-op view at
                # inference, where FairseqDropout passes it through).
                weight = self.weight_dropout_module(weight.expand(bsz, heads, length, kernel))
            x = x.reshape(length, bsz, heads, -1).permute(1, 2, 0, 3)
            out = banded_conv(x, weight, self.padding_l).permute(2, 0, 1, 3).reshape(length, bsz, channels)
        if self.bias is not None:
            out = out + self.bias
        return out

    def extra_repr(self) -> str:
        s = (
            f"{self.input_size}, kernel_size={self.kernel_size}, padding_l={self.padding_l}, "
            f"num_heads={self.num_heads}, weight_softmax={self.weight_softmax}, bias={self.bias is not None}"
        )
        if self.weight_dropout_module.p > 0.0:
            s += f", weight_dropout={self.weight_dropout_module.p}"
        return s
