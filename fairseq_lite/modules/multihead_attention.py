"""Multi-head attention (self and encoder-decoder) on torch's scaled_dot_product_attention.

Tensors are batch-first (B x T x C), unlike fairseq's time-first layout. Parameter names match
fairseq (q_proj, k_proj, v_proj, out_proj) so its checkpoints map over one to one.

Incremental decoding keeps per-module state in a plain dict `incremental_state`, keyed by a
name unique to each attention module:
  self-attention:            {"prev_key", "prev_value": B x H x S x D, "prev_key_padding_mask": B x S or None,
                              "pending_order": rows to take at the next step, or None}
  encoder-decoder attention: {"prev_key", "prev_value": B_enc x H x S x D, computed once from the encoder
                              output, "group": query rows per encoder row}

Encoder-decoder attention accepts an encoder output with fewer rows than the query: with B = g * B_enc,
query rows i*g ... i*g+g-1 all read encoder row i. Beam search uses this to keep one encoder output (and
one projected key/value cache) per sentence instead of one per hypothesis: g = beam. Those g queries
attend together, as one query of g*T positions (no causal mask across the encoder output).
"""

import itertools
import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

IncrementalState = dict[str, dict[str, Any]]

_instance_ids = itertools.count()


class MultiheadAttention(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        kdim: int | None = None,
        vdim: int | None = None,
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
        key: Tensor | None = None,
        key_padding_mask: Tensor | None = None,
        incremental_state: IncrementalState | None = None,
        causal: bool = False,
        need_weights: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor]:
        """
        query: B x T x C. key: B_enc x S x kdim, the encoder output (B_enc divides B; ignored for
        self-attention, and after the first step of incremental decoding). key_padding_mask: B_enc x S
        (or B x T for the new self-attention steps), True at pads. causal: mask future positions
        (self-attention). Returns B x T x C; with need_weights, (output, attention probabilities per head
        B x H x T x S), computed without SDPA's fused kernels (which never form them), so only when asked.
        """
        bsz, tgt_len, _ = query.shape
        cache = None
        if incremental_state is not None:
            cache = incremental_state.setdefault(self.cache_key, {})

        if self.self_attention:
            q = self._split_heads(self.q_proj(query))
            k, v, key_padding_mask = self._self_attention_kv(query, key_padding_mask, cache)
        else:
            k, v = self._encoder_kv(key, cache)
            group = bsz // k.size(0)
            if group * k.size(0) != bsz:
                raise ValueError(
                    f"encoder-decoder attention: {bsz} query rows cannot share {k.size(0)} encoder "
                    f"rows (the query's rows must be a multiple of the encoder output's)"
                )
            if cache is not None:
                cache["group"] = group
            # Each encoder row's `group` query rows attend as one query of group * tgt_len positions.
            q = self._split_heads(self.q_proj(query.reshape(k.size(0), group * tgt_len, -1)))

        q_len, src_len = q.size(2), k.size(2)
        has_padding = key_padding_mask is not None and bool(key_padding_mask.any())
        attn_mask = None
        is_causal = False
        if has_padding:
            attn_mask = _build_mask(q_len, src_len, key_padding_mask, causal, device=q.device)
        elif causal and q_len == src_len:
            is_causal = True  # no mask tensor: lets SDPA pick its fused kernels
        elif causal and q_len > 1:
            attn_mask = _build_mask(q_len, src_len, None, causal, device=q.device)
        # (A single new step with no padding may attend to every cached key: no mask at all.)
        dropout_p = self.dropout if self.training else 0.0
        if need_weights:
            if is_causal:
                attn_mask = _build_mask(q_len, src_len, None, causal, device=q.device)
            out, weights = _attention_with_weights(q, k, v, attn_mask, dropout_p)
            # Back to one row per query sentence: B_enc x H x (g*T) x S -> B x H x T x S.
            rows = weights.size(0)
            group = bsz // rows
            weights = weights.view(rows, self.num_heads, group, tgt_len, src_len).transpose(1, 2)
            weights = weights.reshape(bsz, self.num_heads, tgt_len, src_len)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, dropout_p=dropout_p)
        out = out.transpose(1, 2).reshape(bsz, tgt_len, self.embed_dim)
        out = self.out_proj(out)
        return (out, weights) if need_weights else out

    def _self_attention_kv(
        self, query: Tensor, key_padding_mask: Tensor | None, cache: dict[str, Any] | None
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Keys/values of the new positions, appended to the cached ones when decoding incrementally."""
        k = self._split_heads(self.k_proj(query))
        v = self._split_heads(self.v_proj(query))
        if cache is None:
            return k, v, key_padding_mask
        tgt_len = query.size(1)
        prev_k = cache.get("prev_key")
        if prev_k is not None:
            order = cache.pop("pending_order", None)
            k = _gather_and_append(prev_k, k, order)
            v = _gather_and_append(cache["prev_value"], v, order)
            prev_mask = cache.get("prev_key_padding_mask")
            if order is not None and prev_mask is not None:
                cache["prev_key_padding_mask"] = prev_mask.index_select(0, order)
        key_padding_mask = _append_padding_mask(
            cache.get("prev_key_padding_mask"), key_padding_mask, prev_len=k.size(2) - tgt_len, new_len=tgt_len
        )
        cache.update(prev_key=k, prev_value=v, prev_key_padding_mask=key_padding_mask)
        return k, v, key_padding_mask

    def _encoder_kv(self, key: Tensor | None, cache: dict[str, Any] | None) -> tuple[Tensor, Tensor]:
        if cache is not None and cache.get("prev_key") is not None:
            # The encoder output does not change while decoding: project it once.
            return cache["prev_key"], cache["prev_value"]
        if key is None:
            raise ValueError("encoder-decoder attention needs the encoder output as key")
        k = self._split_heads(self.k_proj(key))
        v = self._split_heads(self.v_proj(key))
        if cache is not None:
            cache.update(prev_key=k, prev_value=v)
        return k, v

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        """Make row i of the cache what row new_order[i] was, e.g. to follow the surviving beams.

        Self-attention defers the copy to the next step, where it is fused with appending the new
        keys/values (one pass over the cache instead of two). An encoder-attention cache shared by
        groups of g rows moves only when whole groups do: new_order must keep each group's rows
        together, in blocks of g (beam search's order does).
        """
        cache = incremental_state.get(self.cache_key)
        if not cache or cache.get("prev_key") is None:
            return
        if self.self_attention:
            pending = cache.get("pending_order")
            cache["pending_order"] = new_order if pending is None else pending.index_select(0, new_order)
            return
        group = cache.get("group", 1)
        rows = cache["prev_key"].size(0)
        if group == 1:
            order = new_order
        else:
            if new_order.numel() % group:
                raise ValueError(
                    f"encoder-decoder attention: cannot reorder {new_order.numel()} rows that share "
                    f"encoder rows in groups of {group}"
                )
            order = torch.div(new_order[::group], group, rounding_mode="floor")
            if order.numel() == rows and torch.equal(order, torch.arange(rows, device=order.device)):
                return  # the hypotheses moved within their sentences only: nothing to do
        cache["prev_key"] = cache["prev_key"].index_select(0, order)
        cache["prev_value"] = cache["prev_value"].index_select(0, order)


def _attention_with_weights(
    q: Tensor, k: Tensor, v: Tensor, allowed: Tensor | None, dropout_p: float
) -> tuple[Tensor, Tensor]:
    """What SDPA computes, with the probabilities it computes on the way (before dropout, as fairseq
    returns them); softmax in fp32."""
    scores = torch.matmul(q, k.transpose(-2, -1)) * (q.size(-1) ** -0.5)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    weights = torch.softmax(scores.float(), dim=-1)
    out = torch.matmul(F.dropout(weights, p=dropout_p).type_as(v), v)
    return out, weights


def _gather_and_append(prev: Tensor, new: Tensor, order: Tensor | None) -> Tensor:
    """torch.cat([prev.index_select(0, order), new], dim=2), copying the cache once instead of twice."""
    if order is None:
        return torch.cat([prev, new], dim=2)
    if prev.device.type != "cpu" or (torch.is_grad_enabled() and (prev.requires_grad or new.requires_grad)):
        # index_select's out= has no autograd, and is only relied on for CPU tensors here.
        return torch.cat([prev.index_select(0, order), new], dim=2)
    prev_len = prev.size(2)
    out = prev.new_empty(order.numel(), prev.size(1), prev_len + new.size(2), prev.size(3))
    torch.index_select(prev, 0, order, out=out[:, :, :prev_len])
    out[:, :, prev_len:] = new
    return out


def _append_padding_mask(prev: Tensor | None, new: Tensor | None, prev_len: int, new_len: int) -> Tensor | None:
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


def _build_mask(
    tgt_len: int, src_len: int, key_padding_mask: Tensor | None, causal: bool, device: torch.device
) -> Tensor:
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
