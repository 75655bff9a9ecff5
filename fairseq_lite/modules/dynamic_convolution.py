"""fairseq's dynamic convolution (Wu et al., 2019, "Pay Less Attention with Lightweight and Dynamic
Convolutions"), and the banded computation it shares with the lightweight convolution.

A depthwise convolution over time whose kernel is predicted at every position from the input itself: the
C channels are split into `num_heads` groups of R = C / H channels that share one kernel of K taps,
softmax-normalized over the taps (`weight_softmax`):

    out[t, b, c] = sum_k w[t, b, c // R, k] * x[t + k - padding_l, b, c]      (zero outside the sequence)

Inputs and outputs are time-first (T x B x C), as fairseq's `*TBC` modules. Parameter names and shapes are
fairseq 0.12.2's (`weight_linear`, `conv_bias`), so its checkpoints load.

fairseq has two torch paths: band matrices ("expanded", T x T per batch row and head) for short inputs and
an unfolded copy of the input (K x its size) for long ones. Here one path does both: the band matrices cut
into blocks of CHUNK output rows, so that the cost and memory grow linearly with T. On CPU it is as fast as
fairseq's band matrices for short inputs and several times faster than either beyond a few hundred steps
(measured with the model's sizes, forward and backward). Incremental decoding keeps the last K - 1 inputs
(the "input buffer") and computes the new step from that window.
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.incremental_decoding_utils import FairseqIncrementalState
from fairseq_lite.modules.fairseq_dropout import FairseqDropout

IncrementalState = dict[str, Any]

# Output rows per band block: blocks this size cost about what one T x T band does up to T ~ 100 on CPU,
# and stay linear beyond.
CHUNK = 64


def banded_conv(x: Tensor, weight: Tensor, padding_l: int) -> Tensor:
    """out[b, h, t] = sum_k weight[b, h, t, k] * x[b, h, t + k - padding_l], zero outside the sequence.

    x: B x H x T x R. weight: (B or 1) x H x (T or 1) x K (a batch or time dimension of 1 is shared).
    Returns B x H x T x R."""
    heads, length = x.size(1), x.size(2)
    kernel = weight.size(-1)
    block = min(length, CHUNK)
    blocks = -(-length // block)
    padded = blocks * block
    width = block + kernel - 1  # the inputs one block of outputs reads
    x = F.pad(x, (0, 0, padding_l, kernel - 1 - padding_l + padded - length))
    windows = x.unfold(2, width, block).transpose(-1, -2)  # B x H x blocks x width x R (a view)
    weight = weight.expand(weight.size(0), heads, length, kernel)
    weight = F.pad(weight, (0, 0, 0, padded - length)).view(weight.size(0), heads, blocks, block, kernel)
    # band[..., l, l + k] = weight[..., l, k]: each row padded with `block` zeros, the rows read back
    # `width` wide, so that row l starts l places further right.
    band = F.pad(weight, (0, block)).flatten(-2)[..., : block * width].view(*weight.shape[:-1], width)
    out = torch.matmul(band, windows)  # B x H x blocks x block x R
    return out.flatten(2, 3)[:, :, :length]


def conv_step(window: Tensor, weight: Tensor) -> Tensor:
    """The newest position from the last m inputs. window: B x m x H x R; weight: B x H x m (the kernel's last
    m taps, the newest input's last). Returns B x H x R."""
    return torch.einsum("bhm,bmhr->bhr", weight, window)


def check_padding(padding_l: Any, kernel_size: int) -> int:
    if padding_l is None and kernel_size == 1:
        return 0
    if not isinstance(padding_l, int) or not 0 <= padding_l < kernel_size:
        raise ValueError(
            f"padding_l must be an int in [0, kernel_size - 1] (kernel_size - 1 is causal), got {padding_l!r} for "
            f"kernel_size {kernel_size}"
        )
    return padding_l


class ConvInputBuffer(FairseqIncrementalState):
    """The incremental-decoding cache of a time-first convolution: its last kernel_size - 1 inputs, B x n x C
    (n grows from 0 as decoding starts, as fairseq's buffer does)."""

    kernel_size: int
    padding_l: int

    def _get_input_buffer(self, incremental_state: IncrementalState | None) -> Tensor | None:
        return self.get_incremental_state(incremental_state, "input_buffer")

    def _set_input_buffer(self, incremental_state: IncrementalState | None, new_buffer: Tensor) -> Any:
        return self.set_incremental_state(incremental_state, "input_buffer", new_buffer)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        buffer = self._get_input_buffer(incremental_state)
        if buffer is not None:
            self._set_input_buffer(incremental_state, buffer.index_select(0, new_order))

    def _step_window(self, x: Tensor, incremental_state: IncrementalState) -> Tensor:
        """x: the new step, 1 x B x C. Returns the window B x m x C it is computed from (m <= kernel_size),
        and keeps its last kernel_size - 1 inputs for the next step."""
        if x.size(0) != 1:
            raise ValueError(f"incremental decoding takes one new step at a time, got {x.size(0)}")
        if self.padding_l != self.kernel_size - 1:
            raise ValueError(
                f"incremental decoding needs a causal convolution (padding_l = kernel_size - 1 = "
                f"{self.kernel_size - 1}), this one has padding_l {self.padding_l}"
            )
        buffer = self._get_input_buffer(incremental_state)
        window = x.transpose(0, 1) if buffer is None else torch.cat([buffer, x.transpose(0, 1)], dim=1)
        if self.kernel_size > 1:
            self._set_input_buffer(incremental_state, window[:, -(self.kernel_size - 1) :])
        return window


def DynamicConv(
    input_size: int,
    kernel_size: int = 1,
    padding_l: int | None = None,
    num_heads: int = 1,
    weight_dropout: float = 0.0,
    weight_softmax: bool = False,
    renorm_padding: bool = False,
    bias: bool = False,
    conv_bias: bool = False,
    query_size: int | None = None,
    in_proj: bool = False,
) -> "DynamicConv1dTBC":
    """fairseq's factory. fairseq returns its CUDA kernel's module (DynamicconvLayer) when that extension is
    built, else this torch module, which has the same parameters; here it is always the torch module."""
    return DynamicConv1dTBC(
        input_size,
        kernel_size=kernel_size,
        padding_l=padding_l,
        num_heads=num_heads,
        weight_dropout=weight_dropout,
        weight_softmax=weight_softmax,
        renorm_padding=renorm_padding,
        bias=bias,
        conv_bias=conv_bias,
        query_size=query_size,
        in_proj=in_proj,
    )


class DynamicConv1dTBC(ConvInputBuffer, nn.Module):
    """Dynamic convolution on T x B x C inputs.

    weight_dropout: DropConnect on the normalized kernel of every position. renorm_padding: the softmax runs
    over the taps inside the sequence only (those on the zero padding get no weight). bias: the kernel
    predictor's bias; conv_bias: one added to the output. query_size: the kernels are predicted from another
    input (`query` in forward) of this width. in_proj: one linear layer gives both the convolved input
    (its first C outputs) and the kernels."""

    def __init__(
        self,
        input_size: int,
        kernel_size: int = 1,
        padding_l: int | None = None,
        num_heads: int = 1,
        weight_dropout: float = 0.0,
        weight_softmax: bool = False,
        renorm_padding: bool = False,
        bias: bool = False,
        conv_bias: bool = False,
        query_size: int | None = None,
        in_proj: bool = False,
    ):
        super().__init__()
        if input_size % num_heads != 0:
            raise ValueError(f"input_size ({input_size}) must be divisible by num_heads ({num_heads})")
        self.input_size = input_size
        self.query_size = input_size if query_size is None else query_size
        self.kernel_size = kernel_size
        self.padding_l = check_padding(padding_l, kernel_size)
        self.num_heads = num_heads
        self.weight_dropout_module = FairseqDropout(weight_dropout, module_name=type(self).__name__)
        self.weight_softmax = weight_softmax
        self.renorm_padding = renorm_padding
        # torch's default init: fairseq initializes it with xavier, then calls its reset_parameters().
        if in_proj:
            self.weight_linear = nn.Linear(input_size, input_size + num_heads * kernel_size)
        else:
            self.weight_linear = nn.Linear(self.query_size, num_heads * kernel_size, bias=bias)
        self.conv_bias = nn.Parameter(torch.zeros(input_size)) if conv_bias else None

    @property
    def in_proj(self) -> bool:
        return self.weight_linear.out_features == self.input_size + self.num_heads * self.kernel_size

    def reset_parameters(self) -> None:
        self.weight_linear.reset_parameters()
        if self.conv_bias is not None:
            nn.init.zeros_(self.conv_bias)

    def forward(
        self,
        x: Tensor,
        incremental_state: IncrementalState | None = None,
        query: Tensor | None = None,
        unfold: bool | None = None,
    ) -> Tensor:
        """x: T x B x C (one step when incremental); query: T x B x query_size, the kernels' source (x when
        None). `unfold` chose between fairseq's two torch paths; the one here serves every length, so it is
        accepted and has nothing to choose. Returns T x B x C."""
        if query is not None and self.in_proj:
            raise ValueError("DynamicConv1dTBC with in_proj predicts its kernels from its input: no query")
        length, bsz, channels = x.shape
        heads, kernel = self.num_heads, self.kernel_size
        if self.in_proj:
            proj = self.weight_linear(x)
            x, logits = proj[..., :channels], proj[..., channels:]
        else:
            logits = self.weight_linear(x if query is None else query)
        logits = logits.reshape(length, bsz, heads, kernel)
        if incremental_state is not None:
            window = self._step_window(x, incremental_state)
            taps = window.size(1)
            logits = logits[0]  # B x H x K
            if self.renorm_padding:  # normalized over the taps that have an input so far
                weight = self._normalize(logits[..., -taps:])
            else:
                weight = self._normalize(logits)[..., -taps:]
            out = conv_step(window.reshape(bsz, taps, heads, -1), weight).reshape(1, bsz, channels)
        else:
            inside = None
            if self.renorm_padding:
                # tap k of position t reads t + k - padding_l, which must be in [0, T)
                reads = torch.arange(length, device=x.device).unsqueeze(1) + torch.arange(kernel, device=x.device)
                reads = reads - self.padding_l
                inside = (reads >= 0) & (reads < length)
            weight = self._normalize(logits.permute(1, 2, 0, 3), inside)  # B x H x T x K
            x = x.reshape(length, bsz, heads, -1).permute(1, 2, 0, 3)
            out = banded_conv(x, weight, self.padding_l).permute(2, 0, 1, 3).reshape(length, bsz, channels)
        if self.conv_bias is not None:
            out = out + self.conv_bias
        return out

    def _normalize(self, logits: Tensor, inside: Tensor | None = None) -> Tensor:
        """The kernels: softmax over the taps (in fp32; over those `inside` only, with renorm_padding), then
        DropConnect. fairseq skips the DropConnect for renorm_padding without weight_softmax; here it always
        applies."""
        weight = logits
        if self.weight_softmax:
            if inside is not None:
                logits = logits.masked_fill(~inside, float("-inf"))
            weight = F.softmax(logits.float(), dim=-1).type_as(logits)
        return self.weight_dropout_module(weight)

    def extra_repr(self) -> str:
        s = (
            f"{self.input_size}, kernel_size={self.kernel_size}, padding_l={self.padding_l}, "
            f"num_heads={self.num_heads}, weight_softmax={self.weight_softmax}, "
            f"conv_bias={self.conv_bias is not None}, renorm_padding={self.renorm_padding}, in_proj={self.in_proj}"
        )
        if self.query_size != self.input_size:
            s += f", query_size={self.query_size}"
        if self.weight_dropout_module.p > 0.0:
            s += f", weight_dropout={self.weight_dropout_module.p}"
        return s
