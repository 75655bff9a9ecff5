"""Positional embeddings with fairseq's position numbering.

fairseq numbers positions from `padding_idx + 1` and gives pad tokens the position `padding_idx`
(whose embedding row is zero). Because numbering counts only real tokens, a left-padded sentence
gets the same positions as the unpadded one, which is what batched generation relies on.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.utils import make_positions


def _positions(tokens: Tensor, padding_idx: int, incremental: bool) -> Tensor:
    positions = make_positions(tokens, padding_idx)
    # During incremental decoding the caller passes the whole prefix but only the newest step is
    # embedded. fairseq uses `padding_idx + len(prefix)` there, which is the same thing for
    # unpadded prefixes; counting real tokens keeps left-padded prefixes right as well.
    return positions[:, -1:] if incremental else positions


class LearnedPositionalEmbedding(nn.Embedding):
    """A learned table with `max_positions` usable rows after the reserved ones (0..padding_idx)."""

    def __init__(self, max_positions: int, embedding_dim: int, padding_idx: int):
        super().__init__(max_positions + padding_idx + 1, embedding_dim, padding_idx)
        self.max_positions = max_positions
        nn.init.normal_(self.weight, mean=0.0, std=embedding_dim**-0.5)
        with torch.no_grad():
            self.weight[padding_idx].zero_()

    def forward(self, tokens: Tensor, incremental: bool = False) -> Tensor:  # type: ignore[override]
        positions = _positions(tokens, self.padding_idx, incremental)
        return F.embedding(positions, self.weight, self.padding_idx)


class SinusoidalPositionalEmbedding(nn.Module):
    """Fixed sin/cos table (tensor2tensor layout: all sines, then all cosines), grown on demand."""

    def __init__(self, embedding_dim: int, padding_idx: int, init_size: int = 1024):
        super().__init__()
        self.embedding_dim = embedding_dim
        self.padding_idx = padding_idx
        # Not a parameter and not saved: it is a pure function of the sizes.
        self.register_buffer("weights", self.get_embedding(init_size, embedding_dim, padding_idx), persistent=False)
        self.max_positions = int(1e5)

    @staticmethod
    def get_embedding(num_embeddings: int, embedding_dim: int, padding_idx: int | None = None) -> Tensor:
        half_dim = embedding_dim // 2
        scale = math.log(10000) / (half_dim - 1)
        freqs = torch.exp(torch.arange(half_dim, dtype=torch.float) * -scale)
        angles = torch.arange(num_embeddings, dtype=torch.float).unsqueeze(1) * freqs.unsqueeze(0)
        table = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
        if embedding_dim % 2 == 1:
            table = torch.cat([table, torch.zeros(num_embeddings, 1)], dim=1)
        if padding_idx is not None:
            table[padding_idx, :] = 0
        return table

    def forward(self, tokens: Tensor, incremental: bool = False) -> Tensor:
        needed = self.padding_idx + 1 + tokens.size(1)
        if needed > self.weights.size(0):
            self.weights = self.get_embedding(needed, self.embedding_dim, self.padding_idx).to(self.weights)
        positions = _positions(tokens, self.padding_idx, incremental)
        return self.weights[positions].detach()


def PositionalEmbedding(max_positions: int, embedding_dim: int, padding_idx: int, learned: bool = False) -> nn.Module:
    """fairseq's factory: both kinds cover `max_positions` real positions after the reserved rows."""
    if learned:
        return LearnedPositionalEmbedding(max_positions, embedding_dim, padding_idx)
    return SinusoidalPositionalEmbedding(embedding_dim, padding_idx, init_size=max_positions + padding_idx + 1)
