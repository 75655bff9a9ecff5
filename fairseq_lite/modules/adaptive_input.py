"""Adaptive input embeddings (Baevski & Auli, 2019, "Adaptive Input Representations for Neural Language
Modeling"): the vocabulary, sorted by frequency, is cut into bands; band i gets embeddings of width
`initial_dim / factor**i`, each projected to `output_dim`. Frequent words get wide embeddings, rare ones
narrow, so a 267k-word vocabulary costs a fraction of a full embedding table.

The layout and the parameter names are fairseq's (`embeddings.<band>.0` the embedding, `.1` the
projection), so fairseq's checkpoints load and the adaptive softmax can share these weights
(`weights_for_band`).
"""

import torch
from torch import Tensor, nn


def band_edges(vocab_size: int, cutoff: list[int], what: str) -> list[int]:
    """The upper edge of each band: `cutoff` plus the vocabulary size when it is not already the last."""
    cutoff = [int(c) for c in cutoff]
    if any(b <= a for a, b in zip(cutoff, cutoff[1:])) or (cutoff and cutoff[0] <= 0):
        raise ValueError(f"{what} cutoffs must be increasing positive numbers, got {cutoff}")
    if cutoff and cutoff[-1] > vocab_size:
        raise ValueError(f"{what} cutoff {cutoff[-1]} is larger than the vocabulary ({vocab_size} symbols)")
    return cutoff + [vocab_size] if not cutoff or cutoff[-1] < vocab_size else cutoff


class AdaptiveInput(nn.Module):
    def __init__(
        self, vocab_size: int, padding_idx: int, initial_dim: int, factor: float, output_dim: int, cutoff: list[int]
    ):
        super().__init__()
        self.cutoff = band_edges(vocab_size, cutoff, "adaptive input")
        self.embedding_dim = output_dim
        self.padding_idx = padding_idx
        self.embeddings = nn.ModuleList()
        for band, end in enumerate(self.cutoff):
            start = self.cutoff[band - 1] if band > 0 else 0
            dim = int(initial_dim // (factor**band))
            # Only band 0 holds the padding symbol (ids 0..3 are the specials).
            embedding = nn.Embedding(end - start, dim, padding_idx if band == 0 else None)
            nn.init.normal_(embedding.weight, mean=0, std=dim**-0.5)
            projection = nn.Linear(dim, output_dim, bias=False)
            nn.init.xavier_uniform_(projection.weight)
            with torch.no_grad():
                # fairseq zeroes row `padding_idx` of every band at init (a no-op for training, kept so
                # that both initialize alike).
                if padding_idx < end - start:
                    embedding.weight[padding_idx].zero_()
            self.embeddings.append(nn.Sequential(embedding, projection))

    def weights_for_band(self, band: int) -> tuple[Tensor, Tensor]:
        """(embedding weight [band size, dim], projection weight [output_dim, dim]) of one band."""
        return self.embeddings[band][0].weight, self.embeddings[band][1].weight

    def forward(self, tokens: Tensor) -> Tensor:
        weight = self.embeddings[0][1].weight
        out = torch.empty(*tokens.shape, self.embedding_dim, dtype=weight.dtype, device=weight.device)
        for band, end in enumerate(self.cutoff):
            start = self.cutoff[band - 1] if band > 0 else 0
            mask = (tokens >= start) & (tokens < end)
            if mask.any():
                out[mask] = self.embeddings[band](tokens[mask] - start).to(out.dtype)
        return out
