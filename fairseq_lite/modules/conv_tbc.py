"""fairseq's ConvTBC: a 1-D convolution over time-first input (time x batch x channel).

The weight is laid out as fairseq's, kernel x in_channels x out_channels, so its checkpoints load; the
convolution itself is F.conv1d on the weight viewed as out x in x kernel (fairseq calls torch.conv_tbc, a
gemm per kernel tap: the same sums, in another order).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _single


class ConvTBC(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _single(kernel_size)
        self.padding = _single(padding)
        self.weight = nn.Parameter(torch.empty(self.kernel_size[0], in_channels, out_channels))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_normal_(self.weight)
        nn.init.zeros_(self.bias)

    def conv_tbc(self, input: Tensor) -> Tensor:
        """T x B x C_in -> (T + 2 * padding - kernel + 1) x B x C_out."""
        x = input.permute(1, 2, 0)  # B x C x T, what conv1d takes
        y = F.conv1d(x, self.weight.permute(2, 1, 0), self.bias, padding=self.padding[0])
        return y.permute(2, 0, 1)

    def forward(self, input: Tensor) -> Tensor:
        return self.conv_tbc(input)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, padding={self.padding}"
