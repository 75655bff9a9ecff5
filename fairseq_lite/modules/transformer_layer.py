"""Transformer encoder and decoder layers (batch-first), with fairseq's names and options.

Post-norm (the paper, fairseq's default): sublayer -> dropout -> add residual -> LayerNorm.
Pre-norm (`normalize_before`, tensor2tensor): LayerNorm -> sublayer -> dropout -> add residual;
the stack then needs a final LayerNorm, which the encoder/decoder owns.
"""

from collections.abc import Callable

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.modules.multihead_attention import IncrementalState, MultiheadAttention
from fairseq_lite.utils import gelu_accurate, get_activation_fn, get_available_activation_fns  # noqa: F401

ACTIVATION_FNS = get_available_activation_fns()


class _LayerBase(nn.Module):
    """What both layer kinds share: self-attention, the FFN and the residual wiring around them.

    A subclass calls __init__ (self-attention), adds what it has in between (encoder attention),
    then _build_ffn, so parameters are created in fairseq's order.
    """

    def __init__(
        self,
        embed_dim: int,
        attention_heads: int,
        dropout: float,
        attention_dropout: float,
        activation_dropout: float,
        relu_dropout: float,
        activation_fn: str,
        normalize_before: bool,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.activation_dropout = _activation_dropout(activation_dropout, relu_dropout)
        self.activation_fn = get_activation_fn(activation_fn)
        self.normalize_before = normalize_before
        self.self_attn = MultiheadAttention(embed_dim, attention_heads, dropout=attention_dropout, self_attention=True)
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)

    def _build_ffn(self, ffn_embed_dim: int) -> None:
        self.fc1 = nn.Linear(self.embed_dim, ffn_embed_dim)
        self.fc2 = nn.Linear(ffn_embed_dim, self.embed_dim)
        self.final_layer_norm = nn.LayerNorm(self.embed_dim)

    def _sublayer(self, x: Tensor, norm: nn.LayerNorm, fn: Callable[[Tensor], Tensor]) -> Tensor:
        residual = x
        if self.normalize_before:
            x = norm(x)
        x = F.dropout(fn(x), p=self.dropout, training=self.training)
        x = residual + x
        if not self.normalize_before:
            x = norm(x)
        return x

    def _mlp(self, x: Tensor) -> Tensor:
        x = self.activation_fn(self.fc1(x))
        x = F.dropout(x, p=self.activation_dropout, training=self.training)
        return self.fc2(x)

    def _ffn(self, x: Tensor) -> Tensor:
        return self._sublayer(x, self.final_layer_norm, self._mlp)


def _activation_dropout(activation_dropout: float, relu_dropout: float) -> float:
    # fairseq's legacy fallback: --relu-dropout is used when --activation-dropout is 0.
    return float(activation_dropout or relu_dropout or 0.0)


class TransformerEncoderLayer(_LayerBase):
    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        attention_heads: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        activation_fn: str = "relu",
        normalize_before: bool = False,
    ):
        super().__init__(
            embed_dim,
            attention_heads,
            dropout,
            attention_dropout,
            activation_dropout,
            relu_dropout,
            activation_fn,
            normalize_before,
        )
        self._build_ffn(ffn_embed_dim)

    def forward(self, x: Tensor, encoder_padding_mask: Tensor | None = None) -> Tensor:
        """x: B x S x C; encoder_padding_mask: B x S, True at pads."""
        x = self._sublayer(
            x, self.self_attn_layer_norm, lambda h: self.self_attn(h, key_padding_mask=encoder_padding_mask)
        )
        return self._ffn(x)


class TransformerDecoderLayer(_LayerBase):
    def __init__(
        self,
        embed_dim: int,
        ffn_embed_dim: int,
        attention_heads: int,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        activation_dropout: float = 0.0,
        relu_dropout: float = 0.0,
        activation_fn: str = "relu",
        normalize_before: bool = False,
        no_encoder_attn: bool = False,
        encoder_embed_dim: int | None = None,
    ):
        super().__init__(
            embed_dim,
            attention_heads,
            dropout,
            attention_dropout,
            activation_dropout,
            relu_dropout,
            activation_fn,
            normalize_before,
        )
        if no_encoder_attn:
            self.encoder_attn = None
            self.encoder_attn_layer_norm = None
        else:
            encoder_embed_dim = encoder_embed_dim or embed_dim
            self.encoder_attn = MultiheadAttention(
                embed_dim,
                attention_heads,
                kdim=encoder_embed_dim,
                vdim=encoder_embed_dim,
                dropout=attention_dropout,
                encoder_decoder_attention=True,
            )
            self.encoder_attn_layer_norm = nn.LayerNorm(embed_dim)
        self._build_ffn(ffn_embed_dim)

    def forward(
        self,
        x: Tensor,
        encoder_out: Tensor | None = None,
        encoder_padding_mask: Tensor | None = None,
        incremental_state: IncrementalState | None = None,
        self_attn_padding_mask: Tensor | None = None,
        causal: bool = True,
        need_attn: bool = False,
    ) -> Tensor | tuple[Tensor, Tensor | None]:
        """
        x: B x T x C (T = 1 new step when decoding incrementally).
        encoder_out: B x S x encoder_embed_dim; encoder_padding_mask: B x S, True at pads.
        self_attn_padding_mask: B x T, True at pads (None when the batch has no padding).
        need_attn: also return the encoder attention's probabilities per head (B x H x T x S; None without
        encoder attention), as (x, attn).
        """
        x = self._sublayer(
            x,
            self.self_attn_layer_norm,
            lambda h: self.self_attn(
                h, key_padding_mask=self_attn_padding_mask, incremental_state=incremental_state, causal=causal
            ),
        )
        attn = None
        if self.encoder_attn is not None:

            def encoder_attention(h: Tensor) -> Tensor:
                nonlocal attn
                out = self.encoder_attn(
                    h,
                    key=encoder_out,
                    key_padding_mask=encoder_padding_mask,
                    incremental_state=incremental_state,
                    need_weights=need_attn,
                )
                if need_attn:
                    out, attn = out
                return out

            x = self._sublayer(x, self.encoder_attn_layer_norm, encoder_attention)
        x = self._ffn(x)
        return (x, attn) if need_attn else x
