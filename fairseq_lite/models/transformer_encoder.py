"""The Transformer encoder of the translation model (`--arch transformer*`).

tokens -> embed * sqrt(dim) -> + positions -> [LayerNorm] -> dropout -> zero the pads
       -> N x TransformerEncoderLayer -> [final LayerNorm when pre-norm]

The layers run batch-first (B x S x C). `forward` returns fairseq's dict of lists (see
models/fairseq_model.py): "encoder_out" [S x B x C] (a transposed view of the batch-first output: no copy),
"encoder_padding_mask" [B x S] (True at pads), "encoder_embedding" [B x S x C], "encoder_states" (S x B x C
per layer with return_all_hiddens), "src_tokens" [], "src_lengths" [B x 1].
"""

import math
from typing import Any

import torch
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

    def forward_embedding(self, src_tokens: Tensor, token_embedding: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(the layers' input, the scaled token embedding), as fairseq's."""
        if token_embedding is None:
            token_embedding = self.embed_tokens(src_tokens)
        x = embed = self.embed_scale * token_embedding
        if self.embed_positions is not None:
            # make_positions counts real tokens only, so a left-padded sentence gets the same
            # positions as the unpadded one.
            x = x + self.embed_positions(src_tokens)
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        return F.dropout(x, p=self.dropout, training=self.training), embed

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        return_all_hiddens: bool = False,
        token_embeddings: Tensor | None = None,
    ) -> EncoderOut:
        """src_tokens: B x S (left-padded by default). Returns the encoder output dict."""
        return self.forward_scriptable(src_tokens, src_lengths, return_all_hiddens, token_embeddings)

    def forward_scriptable(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        return_all_hiddens: bool = False,
        token_embeddings: Tensor | None = None,
    ) -> EncoderOut:
        padding_mask = src_tokens.eq(self.padding_idx)
        has_pads = bool(padding_mask.any())
        x, embed = self.forward_embedding(src_tokens, token_embeddings)
        if has_pads:
            # As fairseq: pad rows enter the first layer as zeros (they are masked as keys anyway).
            x = x * (~padding_mask).unsqueeze(-1).type_as(x)
        layer_mask = padding_mask if has_pads else None
        states = [x.transpose(0, 1)] if return_all_hiddens else []
        for layer in self.layers:
            if self.checkpoint_activations and self.training:
                # Recompute activations in the backward pass instead of storing them.
                x = checkpoint(layer, x, layer_mask, use_reentrant=False)
            else:
                x = layer(x, layer_mask)
            if return_all_hiddens:
                states.append(x.transpose(0, 1))
        if self.layer_norm is not None:
            x = self.layer_norm(x)
        lengths = (~padding_mask).sum(dim=1, dtype=torch.int32).reshape(-1, 1).contiguous()
        return {
            "encoder_out": [x.transpose(0, 1)],  # S x B x C
            "encoder_padding_mask": [padding_mask],
            "encoder_embedding": [embed],
            "encoder_states": states,
            "fc_results": [],
            "src_tokens": [],
            "src_lengths": [lengths],
        }

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_source_positions
        return min(self.max_source_positions, self.embed_positions.max_positions)
