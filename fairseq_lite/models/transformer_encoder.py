"""The Transformer encoder of the translation model (`--arch transformer*`).

tokens -> embed * sqrt(dim) -> + positions -> [LayerNorm] -> dropout -> zero the pads
       -> N x TransformerEncoderLayer -> [final LayerNorm when pre-norm]

Batch-first throughout: `forward` returns {"encoder_out": B x S x C, "encoder_padding_mask": B x S}
(True at pads), the layout `TransformerDecoder` and beam search expect.
"""

import math
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fairseq_lite.models.fairseq_model import EncoderOut, FairseqEncoder
from fairseq_lite.modules.positional_embedding import PositionalEmbedding
from fairseq_lite.modules.transformer_layer import TransformerEncoderLayer

DEFAULT_MAX_SOURCE_POSITIONS = 1024


class TransformerEncoder(FairseqEncoder):
    def __init__(self, cfg: Any, dictionary: Any, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        embed_dim = embed_tokens.embedding_dim
        self.embed_dim = embed_dim
        self.padding_idx = embed_tokens.padding_idx
        self.max_source_positions = getattr(cfg, "max_source_positions", None) or DEFAULT_MAX_SOURCE_POSITIONS
        self.dropout = cfg.dropout
        self.checkpoint_activations = bool(getattr(cfg, "checkpoint_activations", False))

        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(embed_dim)
        self.embed_positions = None
        if not cfg.no_token_positional_embeddings:
            self.embed_positions = PositionalEmbedding(
                self.max_source_positions, embed_dim, self.padding_idx, learned=cfg.encoder_learned_pos
            )
        self.layernorm_embedding = nn.LayerNorm(embed_dim) if cfg.layernorm_embedding else None

        self.layers = nn.ModuleList(
            [
                TransformerEncoderLayer(
                    embed_dim,
                    cfg.encoder_ffn_embed_dim,
                    cfg.encoder_attention_heads,
                    dropout=cfg.dropout,
                    attention_dropout=cfg.attention_dropout,
                    activation_dropout=getattr(cfg, "activation_dropout", 0.0) or 0.0,
                    relu_dropout=getattr(cfg, "relu_dropout", 0.0) or 0.0,
                    activation_fn=str(cfg.activation_fn),
                    normalize_before=cfg.encoder_normalize_before,
                )
                for _ in range(cfg.encoder_layers)
            ]
        )
        self.num_layers = len(self.layers)
        # Pre-norm leaves the residual stream unnormalized; the final LayerNorm fixes that.
        self.layer_norm = nn.LayerNorm(embed_dim) if cfg.encoder_normalize_before else None

    def forward_embedding(self, src_tokens: Tensor) -> Tensor:
        x = self.embed_scale * self.embed_tokens(src_tokens)
        if self.embed_positions is not None:
            # make_positions counts real tokens only, so a left-padded sentence gets the same
            # positions as the unpadded one.
            x = x + self.embed_positions(src_tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return F.dropout(x, p=self.dropout, training=self.training)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **kwargs: Any) -> EncoderOut:
        """src_tokens: B x S (left-padded by default). Returns the encoder output dict."""
        padding_mask = src_tokens.eq(self.padding_idx)
        has_pads = bool(padding_mask.any())
        x = self.forward_embedding(src_tokens)
        if has_pads:
            # As fairseq: pad rows enter the first layer as zeros (they are masked as keys anyway).
            x = x * (~padding_mask).unsqueeze(-1).type_as(x)
        layer_mask = padding_mask if has_pads else None
        for layer in self.layers:
            if self.checkpoint_activations and self.training:
                # Recompute activations in the backward pass instead of storing them.
                x = checkpoint(layer, x, layer_mask, use_reentrant=False)
            else:
                x = layer(x, layer_mask)
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        return {"encoder_out": x, "encoder_padding_mask": padding_mask}

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_source_positions
        return min(self.max_source_positions, self.embed_positions.max_positions)
