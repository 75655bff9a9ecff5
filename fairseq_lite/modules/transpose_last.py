"""Small shape modules fairseq's models use: TransposeLast (swap the last two dims, optionally picking
one element of a tuple input first) and SamePad (drop the extra steps a 'same' padded conv adds)."""

import torch.nn as nn
from torch import Tensor


class TransposeLast(nn.Module):
    def __init__(self, deconstruct_idx: int | None = None):
        super().__init__()
        self.deconstruct_idx = deconstruct_idx

    def forward(self, x: Tensor) -> Tensor:
        if self.deconstruct_idx is not None:
            x = x[self.deconstruct_idx]
        return x.transpose(-2, -1)


class SamePad(nn.Module):
    def __init__(self, kernel_size: int, causal: bool = False):
        super().__init__()
        self.remove = kernel_size - 1 if causal else (1 if kernel_size % 2 == 0 else 0)

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :, : -self.remove] if self.remove > 0 else x
