"""fairseq's DownsampledMultiHeadAttention (Fan et al., 2018, "Hierarchical Neural Story Generation"): the
attention of the `fconv_self_att` models, time-first (T x B x C), with optional gated input projections
(GLU stacks) and downsampling (head i sees every (i+1)-th key).

Without downsampling, the heads share one set of projections (one SingleHeadAttention computing all heads,
as fairseq does); with it, each head is its own SingleHeadAttention with its own projections, and their
outputs are joined by `out_proj`. `mask_future_timesteps` lets query t see keys strictly before t (itself
excluded), and `use_scalar_bias` adds an always-visible zero key/value in front, so a step with nothing to
see attends to zero. Module and parameter names are fairseq 0.12.2's; every Linear is weight-normalized.
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.weight_norm import weight_norm


class SingleHeadAttention(nn.Module):
    """One head (downsample=True) or all `num_heads` heads through shared projections (downsample=False)."""

    def __init__(
        self,
        out_channels: int,
        embed_dim: int,
        head_dim: int,
        head_index: int,
        dropout: float = 0.0,
        bias: bool = True,
        project_input: bool = True,
        gated: bool = False,
        downsample: bool = False,
        num_heads: int = 1,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.dropout_module = FairseqDropout(dropout, module_name=type(self).__name__)
        self.head_index = head_index
        self.head_dim = head_dim
        self.project_input = project_input
        self.gated = gated
        self.downsample = downsample
        self.num_heads = num_heads
        self.projection = None
        out_proj_size = head_dim if downsample else head_dim * num_heads
        make = GatedLinear if gated else Linear
        k_layers: list[nn.Module] = [Downsample(head_index)] if downsample else []
        v_layers: list[nn.Module] = [Downsample(head_index)] if downsample else []
        # Built (and saved) even without project_input, which leaves them unused: fairseq's parameter set.
        k_layers.append(make(embed_dim, out_proj_size, bias=bias))
        self.in_proj_q = make(embed_dim, out_proj_size, bias=bias)
        v_layers.append(make(embed_dim, out_proj_size, bias=bias))
        self.in_proj_k = nn.Sequential(*k_layers)
        self.in_proj_v = nn.Sequential(*v_layers)
        self.out_proj = Linear(out_proj_size, head_dim if downsample else out_channels, bias=bias)
        self.scaling = head_dim**-0.5

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask_future_timesteps: bool = False,
        key_padding_mask: Tensor | None = None,
        use_scalar_bias: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """query: T x B x C, key/value: S x B x C; key_padding_mask: B x S, True at pads. Returns the
        output (T x B x C_out) and the weights ((B * heads, or B when downsampled) x T x S', S' counting the
        scalar bias and the downsampling)."""
        src_len, bsz, _ = key.size()
        tgt_len = query.size(0)
        if key.size() != value.size() or query.size(1) != bsz:
            raise ValueError(
                f"attention: query {tuple(query.shape)}, key {tuple(key.shape)} and value "
                f"{tuple(value.shape)} do not fit"
            )
        size = bsz if self.downsample else bsz * self.num_heads
        q, k, v = query, key, value
        if self.project_input:
            q, k, v = self.in_proj_q(q), self.in_proj_k(k), self.in_proj_v(v)
        q = q * self.scaling
        if not self.downsample:  # heads into the batch: row b * heads + h
            q = q.reshape(tgt_len, size, self.head_dim)
            k = k.reshape(k.size(0), size, self.head_dim)
            v = v.reshape(v.size(0), size, self.head_dim)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
        attn_weights = torch.bmm(q, k.transpose(1, 2))
        if mask_future_timesteps:
            if tgt_len != src_len:
                raise ValueError("mask_future_timesteps only applies to self-attention")
            stride = self.head_index + 1 if self.downsample else 1
            steps = torch.arange(tgt_len, device=q.device)
            future = steps.view(-1, 1) <= steps[::stride].view(1, -1)  # key j is visible to query i if j < i
            attn_weights = attn_weights.masked_fill(future.unsqueeze(0), -math.inf)
        if use_scalar_bias:
            attn_weights = F.pad(attn_weights, (1, 0))  # a zero score in front
            v = F.pad(v, (0, 0, 1, 0))  # ... for a zero value
        if key_padding_mask is not None and key_padding_mask.any():
            if self.downsample:
                key_padding_mask = key_padding_mask[:, :: self.head_index + 1]
            if use_scalar_bias:
                key_padding_mask = F.pad(key_padding_mask, (1, 0), value=False)
            heads = 1 if self.downsample else self.num_heads
            attn_weights = attn_weights.view(bsz, heads, tgt_len, -1)
            attn_weights = attn_weights.masked_fill(key_padding_mask.view(bsz, 1, 1, -1), -math.inf)
            attn_weights = attn_weights.view(size, tgt_len, -1)
        attn_weights = self.dropout_module(F.softmax(attn_weights, dim=-1))
        attn = torch.bmm(attn_weights, v).transpose(0, 1)  # T x size x head_dim
        attn = attn.reshape(tgt_len, bsz, self.head_dim if self.downsample else self.embed_dim)
        return self.out_proj(attn), attn_weights


class DownsampledMultiHeadAttention(nn.ModuleList):
    """Multi-head attention with gating and downsampling; with downsampling, the heads are the list's items."""

    def __init__(
        self,
        out_channels: int,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        project_input: bool = True,
        gated: bool = False,
        downsample: bool = False,
    ):
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        head_dim = embed_dim // num_heads
        args = (dropout, bias, project_input, gated, downsample, num_heads)
        if downsample:
            super().__init__(
                SingleHeadAttention(out_channels, embed_dim, head_dim, index, *args) for index in range(num_heads)
            )
            self.out_proj = Linear(embed_dim, out_channels, bias=bias)
        else:
            super().__init__()
            self.attention_module = SingleHeadAttention(out_channels, embed_dim, head_dim, 1, *args)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.downsample = downsample
        self.gated = gated
        self.project_input = project_input

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        mask_future_timesteps: bool = False,
        key_padding_mask: Tensor | None = None,
        use_scalar_bias: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """T x B x embed_dim in, T x B x out_channels out, with the weights B x T x S': the first head's
        when downsampled, else the mean over the heads."""
        if key.size(2) != self.embed_dim:
            raise ValueError(f"attention: keys are {key.size(2)} wide, the attention {self.embed_dim}")
        args = (query, key, value, mask_future_timesteps, key_padding_mask, use_scalar_bias)
        if self.downsample:
            # The heads are items 0 .. num_heads - 1 (out_proj is a child too).
            outputs = [self[index](*args) for index in range(self.num_heads)]
            attn = self.out_proj(torch.cat([out for out, _ in outputs], dim=2))
            return attn, outputs[0][1]
        attn, attn_weights = self.attention_module(*args)
        bsz, tgt_len = query.size(1), query.size(0)
        return attn, attn_weights.view(bsz, self.num_heads, tgt_len, -1).sum(dim=1) / self.num_heads


class Downsample(nn.Module):
    """Every (index + 1)-th time step (of a time-first input)."""

    def __init__(self, index: int):
        super().__init__()
        self.index = index

    def forward(self, x: Tensor) -> Tensor:
        return x[:: self.index + 1]


def Linear(in_features: int, out_features: int, dropout: float = 0.0, bias: bool = True) -> nn.Linear:
    """A weight-normalized Linear initialized as fairseq's: N(0, sqrt((1 - dropout) / in)), zero bias."""
    m = nn.Linear(in_features, out_features, bias=bias)
    nn.init.normal_(m.weight, mean=0, std=math.sqrt((1 - dropout) / in_features))
    if bias:
        nn.init.zeros_(m.bias)
    return weight_norm(m)


def GatedLinear(in_features: int, out_features: int, dropout: float = 0.0, bias: bool = True) -> nn.Sequential:
    """Weight-normalized Linear layers with GLUs between them: in -> 4 out -> GLU -> 2 out -> GLU -> out."""
    return nn.Sequential(
        Linear(in_features, out_features * 4, dropout, bias),
        nn.GLU(),
        Linear(out_features * 2, out_features * 2, dropout, bias),
        nn.GLU(),
        Linear(out_features, out_features, dropout, bias),
    )
