"""The adaptive softmax (Grave et al., 2017, "Efficient softmax approximation for GPUs"), as fairseq's.

The vocabulary, sorted by frequency, is cut into a head (the `cutoff[0]` most frequent words, plus one
entry per tail cluster) and tail clusters. p(word) = p_head(word) for a head word, and
p_head(cluster) * p_cluster(word) for a word of a tail cluster. Cluster i projects the hidden state down
to `input_dim / factor**(i+1)` before its own softmax, so rare words are cheap.

With adaptive input embeddings, the tails can share their weights (fairseq's `tie_adaptive_weights`:
each cluster's output layer is its band's embedding table; `tie_adaptive_proj`: the down-projection is the
band's up-projection, transposed), and the head's word rows are band 0's embeddings. Module and parameter
names are fairseq's, so fairseq's checkpoints load.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fairseq_lite.modules.adaptive_input import AdaptiveInput, band_edges


class TiedLinear(nn.Module):
    """A linear layer (no bias) whose weight is another module's parameter, optionally transposed."""

    def __init__(self, weight: nn.Parameter, transpose: bool):
        super().__init__()
        self.weight = weight
        self.transpose = transpose

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.t() if self.transpose else self.weight)


class TiedHeadModule(nn.Module):
    """The head when tied to adaptive input: word scores through band 0's embeddings (projected to
    their width first when the hidden state is wider), cluster scores through a small linear layer."""

    def __init__(self, weights: tuple[Tensor, Tensor], input_dim: int, num_classes: int):
        super().__init__()
        tied_emb, _ = weights
        self.num_words, emb_dim = tied_emb.size()
        word_proj: nn.Module = TiedLinear(tied_emb, transpose=False)
        if input_dim != emb_dim:
            word_proj = nn.Sequential(nn.Linear(input_dim, emb_dim, bias=False), word_proj)
        self.word_proj = word_proj
        self.class_proj = nn.Linear(input_dim, num_classes, bias=False)
        self.out_dim = self.num_words + num_classes

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.word_proj(x), self.class_proj(x)], dim=-1)


class AdaptiveSoftmax(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        input_dim: int,
        cutoff: list[int],
        dropout: float,
        factor: float = 4.0,
        adaptive_inputs: AdaptiveInput | None = None,
        tie_proj: bool = False,
    ):
        super().__init__()
        self.cutoff = band_edges(vocab_size, cutoff, "adaptive softmax")
        self.vocab_size = vocab_size
        self.input_dim = input_dim
        self.factor = factor
        self.dropout = dropout
        num_clusters = len(self.cutoff) - 1
        if adaptive_inputs is not None:
            self.head: nn.Module = TiedHeadModule(adaptive_inputs.weights_for_band(0), input_dim, num_clusters)
        else:
            self.head = nn.Linear(input_dim, self.cutoff[0] + num_clusters, bias=False)
        self.tail = nn.ModuleList(self._tail(i, adaptive_inputs, tie_proj) for i in range(num_clusters))
        for module in self.modules():  # fairseq's init: xavier for every weight that is not tied
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)

    def _tail(self, i: int, adaptive_inputs: AdaptiveInput | None, tie_proj: bool) -> nn.Sequential:
        dim = int(self.input_dim // self.factor ** (i + 1))
        size = self.cutoff[i + 1] - self.cutoff[i]
        if adaptive_inputs is None:
            proj: nn.Module = nn.Linear(self.input_dim, dim, bias=False)
            out_proj: nn.Module = nn.Linear(dim, size, bias=False)
        else:
            tied_emb, tied_proj = adaptive_inputs.weights_for_band(i + 1)
            # The band's projection is [input_dim, band dim]: transposed, it projects down.
            proj = TiedLinear(tied_proj, transpose=True) if tie_proj else nn.Linear(*tied_proj.shape, bias=False)
            out_proj = TiedLinear(tied_emb, transpose=False)
        return nn.Sequential(proj, nn.Dropout(self.dropout), out_proj)

    # --- training: scores only where the targets need them ---------------------------------------------
    def adapt_target(self, target: Tensor) -> tuple[list[Tensor | None], list[Tensor | None]]:
        """Targets per part: the head's (a tail word becomes its cluster's entry) and each cluster's
        (the word's index in the cluster, for the rows whose target is in it); and those rows."""
        target = target.reshape(-1)
        head_target = target.clone()
        targets: list[Tensor | None] = [head_target]
        rows: list[Tensor | None] = []
        for i in range(len(self.cutoff) - 1):
            mask = (target >= self.cutoff[i]) & (target < self.cutoff[i + 1])
            head_target[mask] = self.cutoff[0] + i
            if mask.any():
                rows.append(mask.nonzero(as_tuple=False).squeeze(1))
                targets.append(target[mask] - self.cutoff[i])
            else:
                rows.append(None)
                targets.append(None)
        return targets, rows

    def forward(self, x: Tensor, target: Tensor) -> tuple[list[Tensor | None], list[Tensor | None]]:
        """x: B x T x D features, target: B x T. The head's scores for every row, each cluster's for the
        rows whose target is in it, and the targets to score them against (adapt_target)."""
        x = x.reshape(-1, x.size(-1))
        x = F.dropout(x, p=self.dropout, training=self.training)
        targets, rows = self.adapt_target(target)
        scores: list[Tensor | None] = [self.head(x)]
        for i, idx in enumerate(rows):
            scores.append(self.tail[i](x.index_select(0, idx)) if idx is not None else None)
        return scores, targets

    # --- scoring and generation: the full distribution ----------------------------------------------------
    def get_log_prob(self, x: Tensor, target: Tensor | None = None) -> Tensor:
        """log p(word) for every word of the vocabulary (B x T x V). With `target`, tail clusters are
        computed only for the rows whose target is in them (the other entries of those clusters stay 0,
        as fairseq's do); fine for scoring the targets, not for sampling."""
        bsz, length, dim = x.size()
        x = x.reshape(-1, dim)
        rows = self.adapt_target(target)[1] if target is not None else None
        head = F.log_softmax(self.head(x).float(), dim=-1)
        log_probs = head.new_zeros(x.size(0), self.vocab_size)
        head_size = self.cutoff[0] + len(self.tail)
        log_probs[:, :head_size] = head
        priors = head[:, self.cutoff[0] : head_size]
        for i, tail in enumerate(self.tail):
            start, end = self.cutoff[i], self.cutoff[i + 1]
            if rows is None:
                log_probs[:, start:end] = F.log_softmax(tail(x).float(), dim=-1) + priors[:, i, None]
            elif rows[i] is not None:
                idx = rows[i]
                log_probs[idx, start:end] = F.log_softmax(tail(x[idx]).float(), dim=-1) + priors[idx, i, None]
        return log_probs.view(bsz, length, -1)
