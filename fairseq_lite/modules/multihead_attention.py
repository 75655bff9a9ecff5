"""Multi-head attention (self and encoder-decoder) on torch's scaled_dot_product_attention.

Tensors are batch-first (B x T x C), unlike fairseq's time-first layout. Parameter names match
fairseq (q_proj, k_proj, v_proj, out_proj) so its checkpoints map over one to one.

Incremental decoding keeps per-module state in a plain dict `incremental_state`, keyed by a
name unique to each attention module:
  self-attention:            {"prev_key", "prev_value": B x H x S x D, "prev_key_padding_mask": B x S or None}
  encoder-decoder attention: {"prev_key", "prev_value"} computed once from the encoder output.
"""

import itertools
import math
from typing import Dict, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

IncrementalState = Dict[str, Dict[str, Optional[Tensor]]]

_instance_ids = itertools.count()


class MultiheadAttention(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        kdim: Optional[int] = None,
        vdim: Optional[int] = None,
        dropout: float = 0.0,
        bias: bool = True,
        self_attention: bool = False,
        encoder_decoder_attention: bool = False,
    ):
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        if self_attention == encoder_decoder_attention:
            raise ValueError("choose exactly one of self_attention and encoder_decoder_attention")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self.dropout = dropout
        self.self_attention = self_attention
        self.encoder_decoder_attention = encoder_decoder_attention
        self.cache_key = f"{type(self).__name__}.{next(_instance_ids)}"

        self.k_proj = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # fairseq: with equal q/k/v sizes the 1/sqrt(2) gain "empirically converges much better".
        # q/k/v biases keep nn.Linear's default init; only the output bias is zeroed (as fairseq).
        gain = 1 / math.sqrt(2) if self.kdim == self.embed_dim == self.vdim else 1.0
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=gain)
        nn.init.xavier_uniform_(self.out_proj.weight)
        if self.out_proj.bias is not None:
            nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        bsz, length, _ = x.shape
        return x.view(bsz, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        incremental_state: Optional[IncrementalState] = None,
        causal: bool = False,
    ) -> Tensor:
        """
        query: B x T x C. key: B x S x kdim, the encoder output (ignored for self-attention, and
        after the first step of incremental decoding). key_padding_mask: B x S (or B x T for the
        new self-attention steps), True at pads. causal: mask future positions (self-attention).
        Returns B x T x C.
        """
        bsz, tgt_len, _ = query.shape
        q = self._split_heads(self.q_proj(query))
        cache = None
        if incremental_state is not None:
            cache = incremental_state.setdefault(self.cache_key, {})

        if self.self_attention:
            k = self._split_heads(self.k_proj(query))
            v = self._split_heads(self.v_proj(query))
            if cache is not None:
                if cache.get("prev_key") is not None:
                    k = torch.cat([cache["prev_key"], k], dim=2)
                    v = torch.cat([cache["prev_value"], v], dim=2)
                key_padding_mask = _append_padding_mask(cache.get("prev_key_padding_mask"), key_padding_mask,
                                                        prev_len=k.size(2) - tgt_len, new_len=tgt_len)
                cache.update(prev_key=k, prev_value=v, prev_key_padding_mask=key_padding_mask)
        elif cache is not None and cache.get("prev_key") is not None:
            # The encoder output does not change while decoding: project it once.
            k, v = cache["prev_key"], cache["prev_value"]
        else:
            assert key is not None, "encoder-decoder attention needs the encoder output as key"
            k = self._split_heads(self.k_proj(key))
            v = self._split_heads(self.v_proj(key))
            if cache is not None:
                cache.update(prev_key=k, prev_value=v)

        src_len = k.size(2)
        has_padding = key_padding_mask is not None and bool(key_padding_mask.any())
        attn_mask = None
        is_causal = False
        if has_padding:
            attn_mask = _build_mask(tgt_len, src_len, key_padding_mask, causal, device=q.device)
        elif causal and tgt_len == src_len:
            is_causal = True  # no mask tensor: lets SDPA pick its fused kernels
        elif causal and tgt_len > 1:
            attn_mask = _build_mask(tgt_len, src_len, None, causal, device=q.device)
        # (A single new step with no padding may attend to every cached key: no mask at all.)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=is_causal,
            dropout_p=self.dropout if self.training else 0.0,
        )
        out = out.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)
        return self.out_proj(out)

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Select/duplicate batch rows of the cache, e.g. to follow the surviving beams."""
        cache = incremental_state.get(self.cache_key)
        if not cache:
            return
        for name, value in cache.items():
            if value is not None:
                cache[name] = value.index_select(0, new_order)


def _append_padding_mask(prev: Optional[Tensor], new: Optional[Tensor], prev_len: int,
                         new_len: int) -> Optional[Tensor]:
    """Concatenate cached and new key padding masks, treating a missing one as 'no pads'."""
    if prev_len == 0:
        return new
    if prev is None and new is None:
        return None
    ref = prev if prev is not None else new
    bsz = ref.size(0)
    if prev is None:
        prev = torch.zeros(bsz, prev_len, dtype=torch.bool, device=ref.device)
    if new is None:
        new = torch.zeros(bsz, new_len, dtype=torch.bool, device=ref.device)
    return torch.cat([prev.bool(), new.bool()], dim=1)


def _build_mask(tgt_len: int, src_len: int, key_padding_mask: Optional[Tensor], causal: bool,
                device: torch.device) -> Tensor:
    """Boolean mask (True = may attend), broadcastable to B x H x T x S.

    Queries are the last `tgt_len` of the `src_len` positions (they differ while decoding
    incrementally). A query at a pad position would have every key masked (its whole causal
    prefix is padding when left-padded), and SDPA turns an all-masked row into NaNs that leak
    into later layers, so every query may always attend to its own position. Outputs at pad
    positions are meaningless either way; real positions are unaffected because their own key
    is not a pad.
    """
    q_pos = torch.arange(src_len - tgt_len, src_len, device=device).unsqueeze(1)
    k_pos = torch.arange(src_len, device=device).unsqueeze(0)
    allowed = k_pos <= q_pos if causal else torch.ones(tgt_len, src_len, dtype=torch.bool, device=device)
    allowed = allowed.unsqueeze(0).unsqueeze(0)  # 1 x 1 x T x S
    if key_padding_mask is not None:
        allowed = allowed & ~key_padding_mask.bool().unsqueeze(1).unsqueeze(2)
        if causal:
            allowed = allowed | (k_pos == q_pos)
    return allowed
