"""The Transformer decoder, shared by the language model (transformer_lm) and the translation model (transformer).

tokens -> embed * sqrt(dim) -> [project_in] -> + positions -> [LayerNorm] -> dropout
       -> N x TransformerDecoderLayer (each skipped in training with p = decoder_layerdrop)
       -> [final LayerNorm] -> [project_out] -> vocabulary logits (or, with an adaptive softmax, the
       features it scores: get_normalized_probs then gives log-probabilities)

The token embedding may be an nn.Embedding or an AdaptiveInput (anything with `embedding_dim` and
`padding_idx`).

It reads its sizes from a flat config with fairseq's legacy field names (decoder_embed_dim,
decoder_layers, ...), which both the LM config and a translation config provide.
"""

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from fairseq_lite.dataclass.base import eval_str_list
from fairseq_lite.models.fairseq_model import DecoderOut, EncoderOut, FairseqIncrementalDecoder
from fairseq_lite.modules.adaptive_softmax import AdaptiveSoftmax
from fairseq_lite.modules.multihead_attention import IncrementalState
from fairseq_lite.modules.positional_embedding import PositionalEmbedding
from fairseq_lite.modules.transformer_layer import TransformerDecoderLayer

DEFAULT_MAX_TARGET_POSITIONS = 1024


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> nn.Embedding:
    """fairseq's token embedding init: N(0, dim^-0.5) with a zero pad row."""
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, mean=0.0, std=embedding_dim**-0.5)
    with torch.no_grad():
        m.weight[padding_idx].zero_()
    return m


def Linear(in_features: int, out_features: int, bias: bool = True) -> nn.Linear:
    m = nn.Linear(in_features, out_features, bias=bias)
    nn.init.xavier_uniform_(m.weight)
    if bias:
        nn.init.zeros_(m.bias)
    return m


def _get(cfg: Any, name: str, default: Any = None) -> Any:
    value = getattr(cfg, name, default)
    return default if value is None else value


def encoder_tensors(encoder_out: EncoderOut | None) -> tuple[Tensor | None, Tensor | None]:
    """The batch-first encoder output (B x S x C) and its padding mask from fairseq's encoder_out dict."""
    outputs = None if encoder_out is None else encoder_out.get("encoder_out")
    if torch.is_tensor(outputs):
        raise TypeError(
            'encoder_out["encoder_out"] must be a list holding one S x B x C tensor (fairseq\'s layout), not a tensor'
        )
    if not outputs:
        return None, None
    enc = outputs[0].transpose(0, 1)
    masks = encoder_out.get("encoder_padding_mask") or []
    # (a mask without pads is told apart by the attention, which then takes SDPA's fused kernels)
    return enc, masks[0] if len(masks) > 0 else None


class TransformerDecoder(FairseqIncrementalDecoder):
    supports_grouped_encoder_out = True  # see MultiheadAttention: its encoder attention shares rows

    def __init__(self, cfg: Any, dictionary: Any, embed_tokens: nn.Embedding, no_encoder_attn: bool = False):
        super().__init__(dictionary)
        embed_dim = cfg.decoder_embed_dim
        input_embed_dim = embed_tokens.embedding_dim
        self.embed_dim = embed_dim
        self.output_embed_dim = _get(cfg, "decoder_output_dim", embed_dim)
        self.padding_idx = embed_tokens.padding_idx
        # fairseq's LM falls back to tokens_per_sample, then to 1024.
        self.max_target_positions = (
            _get(cfg, "max_target_positions") or _get(cfg, "tokens_per_sample") or DEFAULT_MAX_TARGET_POSITIONS
        )
        self.dropout = cfg.dropout
        self.layerdrop = float(_get(cfg, "decoder_layerdrop", 0.0))
        self.checkpoint_activations = bool(_get(cfg, "checkpoint_activations", False))
        self.share_input_output_embed = bool(cfg.share_decoder_input_output_embed)

        self.embed_tokens = embed_tokens
        self.embed_scale = 1.0 if cfg.no_scale_embedding else math.sqrt(embed_dim)
        self.project_in_dim = Linear(input_embed_dim, embed_dim, bias=False) if input_embed_dim != embed_dim else None
        self.embed_positions = None
        if not cfg.no_token_positional_embeddings:
            self.embed_positions = PositionalEmbedding(
                self.max_target_positions, embed_dim, self.padding_idx, learned=cfg.decoder_learned_pos
            )
        self.layernorm_embedding = nn.LayerNorm(embed_dim) if cfg.layernorm_embedding else None

        self.layers = nn.ModuleList(
            [
                TransformerDecoderLayer(
                    embed_dim,
                    cfg.decoder_ffn_embed_dim,
                    cfg.decoder_attention_heads,
                    dropout=cfg.dropout,
                    attention_dropout=cfg.attention_dropout,
                    activation_dropout=_get(cfg, "activation_dropout", 0.0),
                    relu_dropout=_get(cfg, "relu_dropout", 0.0),
                    activation_fn=str(cfg.activation_fn),
                    normalize_before=cfg.decoder_normalize_before,
                    no_encoder_attn=no_encoder_attn,
                    encoder_embed_dim=_get(cfg, "encoder_embed_dim", embed_dim),
                )
                for _ in range(cfg.decoder_layers)
            ]
        )
        self.num_layers = len(self.layers)
        # fairseq computes the last layer's encoder attention at every step; here only when asked (this, or
        # alignment_layer), so that attention stays on SDPA's fused kernels otherwise.
        self.need_attn = False
        # Pre-norm leaves the residual stream unnormalized; the final LayerNorm fixes that.
        self.layer_norm = (
            nn.LayerNorm(embed_dim) if cfg.decoder_normalize_before and not cfg.no_decoder_final_norm else None
        )
        self.project_out_dim = (
            Linear(embed_dim, self.output_embed_dim, bias=False) if self.output_embed_dim != embed_dim else None
        )

        self.adaptive_softmax = None
        self.output_projection = None
        if _get(cfg, "adaptive_softmax_cutoff") is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                len(dictionary),
                self.output_embed_dim,
                eval_str_list(cfg.adaptive_softmax_cutoff, type=int),
                dropout=float(_get(cfg, "adaptive_softmax_dropout", 0.0)),
                factor=float(_get(cfg, "adaptive_softmax_factor", 4.0)),
                adaptive_inputs=embed_tokens if _get(cfg, "tie_adaptive_weights", False) else None,
                tie_proj=bool(_get(cfg, "tie_adaptive_proj", False)),
            )
        elif self.share_input_output_embed:
            if input_embed_dim != self.output_embed_dim:
                raise ValueError("sharing input/output embeddings needs decoder_input_dim == decoder_output_dim")
            self.output_projection = nn.Linear(input_embed_dim, len(dictionary), bias=False)
            self.output_projection.weight = self.embed_tokens.weight
        else:
            self.output_projection = nn.Linear(self.output_embed_dim, len(dictionary), bias=False)
            nn.init.normal_(self.output_projection.weight, mean=0.0, std=self.output_embed_dim**-0.5)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        features_only: bool = False,
        full_context_alignment: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: int | None = None,
        src_lengths: Tensor | None = None,
        return_all_hiddens: bool = False,
    ) -> DecoderOut:
        """prev_output_tokens: B x T. Returns (logits B x T x V, or B x 1 x V when incremental, extra), extra
        being fairseq's {"attn": [B x T x S or None], "inner_states": [T x B x C per layer]} (see
        extract_features_scriptable)."""
        x, extra = self.extract_features(
            prev_output_tokens,
            encoder_out,
            incremental_state,
            full_context_alignment=full_context_alignment,
            alignment_layer=alignment_layer,
            alignment_heads=alignment_heads,
        )
        if not features_only:
            x = self.output_layer(x)
        return x, extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        full_context_alignment: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: int | None = None,
    ) -> DecoderOut:
        return self.extract_features_scriptable(
            prev_output_tokens, encoder_out, incremental_state, full_context_alignment, alignment_layer, alignment_heads
        )

    def extract_features_scriptable(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        full_context_alignment: bool = False,
        alignment_layer: int | None = None,
        alignment_heads: int | None = None,
    ) -> DecoderOut:
        """The decoder's features (B x T x C) and fairseq's `extra`:
        "attn": [the encoder attention of layer `alignment_layer` (negative counts from the last),
          averaged over its first `alignment_heads` heads (all by default): B x T x S], computed only when
          alignment_layer is given or `self.need_attn` is set (it costs SDPA's fused kernels); else [None].
        "inner_states": the input of the first layer and each layer's output, T x B x C views.
        full_context_alignment: no causal mask (each position attends to the whole target), as fairseq's
        alignment training uses."""
        incremental = incremental_state is not None
        positions = None
        if self.embed_positions is not None:
            # Positions see the whole prefix so that left padding is counted correctly.
            positions = self.embed_positions(prev_output_tokens, incremental=incremental)
        tokens = prev_output_tokens[:, -1:] if incremental else prev_output_tokens

        x = self.embed_scale * self.embed_tokens(tokens)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if positions is not None:
            x = x + positions
        if self.layernorm_embedding is not None:
            x = self.layernorm_embedding(x)
        x = F.dropout(x, p=self.dropout, training=self.training)

        padding_mask = tokens.eq(self.padding_idx)
        self_attn_padding_mask = padding_mask if padding_mask.any() else None
        enc, enc_padding_mask = encoder_tensors(encoder_out)

        if alignment_layer is None and self.need_attn and enc is not None:
            alignment_layer = self.num_layers - 1
        if alignment_layer is not None and alignment_layer < 0:
            alignment_layer += self.num_layers
        causal = not full_context_alignment
        attn: Tensor | None = None
        inner_states = [x.transpose(0, 1)]
        # LayerDrop (Fan et al., 2019): in training, each layer is skipped with probability p.
        skip = torch.rand(len(self.layers)) < self.layerdrop if self.training and self.layerdrop > 0 else None
        for i, layer in enumerate(self.layers):
            if skip is not None and skip[i]:
                continue
            if i == alignment_layer:
                x, layer_attn = layer(
                    x, enc, enc_padding_mask, incremental_state, self_attn_padding_mask, causal, need_attn=True
                )
                if layer_attn is not None:
                    attn = layer_attn[:, :alignment_heads].float().mean(dim=1).to(x)
            elif self.checkpoint_activations and self.training and not incremental:
                # Recompute activations in the backward pass instead of storing them.
                x = checkpoint(
                    layer, x, enc, enc_padding_mask, None, self_attn_padding_mask, causal, use_reentrant=False
                )
            else:
                x = layer(x, enc, enc_padding_mask, incremental_state, self_attn_padding_mask, causal)
            inner_states.append(x.transpose(0, 1))

        if self.layer_norm is not None:
            x = self.layer_norm(x)
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x, {"attn": [attn], "inner_states": inner_states}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features  # the adaptive softmax scores them (adaptive_loss, get_normalized_probs)
        return self.output_projection(features)

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_target_positions
        return min(self.max_target_positions, self.embed_positions.max_positions)
