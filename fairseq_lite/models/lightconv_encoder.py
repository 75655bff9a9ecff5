"""The encoder of fairseq's LightConv/DynamicConv translation model (`--arch lightconv*`), and its layer.

tokens -> embed * sqrt(dim) -> + positions -> dropout -> N x LightConvEncoderLayer -> [final LayerNorm]

    layer: [LN] -> input dropout -> linear1 (x2 and GLU with encoder_glu) -> zero the pads
           -> lightweight or dynamic convolution (centred: kernel_size // 2 taps each side) -> linear2
           -> dropout -> + residual -> [LN];  then the FFN: [LN] -> fc1 -> relu -> relu dropout -> fc2
           -> dropout -> + residual -> [LN]          ([LN] before with normalize_before, else after)

It runs time-first (T x B x C), as fairseq's. `forward` returns fairseq 0.12.2's dict for this model, of bare
tensors (not the transformer's lists): {"encoder_out": S x B x C, "encoder_padding_mask": B x S, True at pads,
or None when the batch has none}. Module and parameter names are fairseq's, so its checkpoints load.
"""

import math
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.models.fairseq_model import FairseqEncoder
from fairseq_lite.models.transformer_decoder import Linear
from fairseq_lite.modules.dynamic_convolution import DynamicConv
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.layer_norm import LayerNorm
from fairseq_lite.modules.lightweight_convolution import LightweightConv
from fairseq_lite.modules.positional_embedding import PositionalEmbedding

DEFAULT_MAX_SOURCE_POSITIONS = 1024
CONV_TYPES = ("dynamic", "lightweight")


def build_conv(conv_type: str, dim: int, kernel_size: int, padding_l: int, args: Any, heads: int) -> nn.Module:
    """The layer's convolution: fairseq's LightweightConv or DynamicConv, with the model's kernel options."""
    if str(conv_type) not in CONV_TYPES:
        raise ValueError(f"conv type must be one of {', '.join(CONV_TYPES)}, got {conv_type!r}")
    factory = LightweightConv if str(conv_type) == "lightweight" else DynamicConv
    return factory(
        dim,
        kernel_size,
        padding_l=padding_l,
        weight_softmax=bool(args.weight_softmax),
        num_heads=heads,
        weight_dropout=float(args.weight_dropout),
    )


def encoder_padding_l(kernel_size: int) -> int:
    """The left padding of a centred kernel. fairseq gives an even kernel a (left, right) pair its modules
    cannot take (they fail on it); here it is the left half, (K - 1) // 2, the right half the rest."""
    return kernel_size // 2 if kernel_size % 2 == 1 else (kernel_size - 1) // 2


class LightConvEncoder(FairseqEncoder):
    def __init__(self, args: Any, dictionary: Any, embed_tokens: nn.Embedding):
        super().__init__(dictionary)
        self.dropout_module = FairseqDropout(float(args.dropout), module_name=type(self).__name__)
        embed_dim = embed_tokens.embedding_dim
        self.padding_idx = embed_tokens.padding_idx
        self.max_source_positions = getattr(args, "max_source_positions", None) or DEFAULT_MAX_SOURCE_POSITIONS
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(embed_dim)
        self.embed_positions = None
        if not args.no_token_positional_embeddings:
            self.embed_positions = PositionalEmbedding(
                self.max_source_positions, embed_dim, self.padding_idx, learned=bool(args.encoder_learned_pos)
            )
        self.layers = nn.ModuleList(
            LightConvEncoderLayer(args, kernel_size=args.encoder_kernel_size_list[i])
            for i in range(args.encoder_layers)
        )
        self.normalize = bool(args.encoder_normalize_before)
        if self.normalize:
            self.layer_norm = LayerNorm(embed_dim)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **unused: Any) -> dict[str, Any]:
        """src_tokens: B x S (left-padded, as fairseq's datasets give them)."""
        x = self.embed_scale * self.embed_tokens(src_tokens)
        if self.embed_positions is not None:
            x = x + self.embed_positions(src_tokens)
        x = self.dropout_module(x).transpose(0, 1)  # S x B x C
        encoder_padding_mask = src_tokens.eq(self.padding_idx)
        if not encoder_padding_mask.any():
            encoder_padding_mask = None
        for layer in self.layers:
            x = layer(x, encoder_padding_mask)
        if self.normalize:
            x = self.layer_norm(x)
        return {"encoder_out": x, "encoder_padding_mask": encoder_padding_mask}

    def reorder_encoder_out(self, encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
        """Rows `new_order` (a new dict: fairseq's reorders in place)."""
        out = encoder_out["encoder_out"]
        mask = encoder_out["encoder_padding_mask"]
        return {
            **encoder_out,
            "encoder_out": None if out is None else out.index_select(1, new_order),
            "encoder_padding_mask": None if mask is None else mask.index_select(0, new_order),
        }

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_source_positions
        return min(self.max_source_positions, self.embed_positions.max_positions)


class LightConvEncoderLayer(nn.Module):
    def __init__(self, args: Any, kernel_size: int = 0):
        super().__init__()
        self.embed_dim = args.encoder_embed_dim
        self.conv_dim = args.encoder_conv_dim
        glu = bool(args.encoder_glu)
        self.linear1 = Linear(self.embed_dim, 2 * self.conv_dim if glu else self.conv_dim)
        self.act = nn.GLU() if glu else None
        self.conv = build_conv(
            args.encoder_conv_type,
            self.conv_dim,
            kernel_size,
            encoder_padding_l(kernel_size),
            args,
            args.encoder_attention_heads,
        )
        self.linear2 = Linear(self.conv_dim, self.embed_dim)
        self.dropout_module = FairseqDropout(float(args.dropout), module_name=type(self).__name__)
        self.relu_dropout_module = FairseqDropout(float(args.relu_dropout), module_name=type(self).__name__)
        self.input_dropout_module = FairseqDropout(float(args.input_dropout), module_name=type(self).__name__)
        self.normalize_before = bool(args.encoder_normalize_before)
        self.fc1 = Linear(self.embed_dim, args.encoder_ffn_embed_dim)
        self.fc2 = Linear(args.encoder_ffn_embed_dim, self.embed_dim)
        self.layer_norms = nn.ModuleList([LayerNorm(self.embed_dim) for _ in range(2)])

    def forward(self, x: Tensor, encoder_padding_mask: Tensor | None) -> Tensor:
        """x: S x B x C; encoder_padding_mask: B x S, True at pads (or None)."""
        residual = x
        x = self.maybe_layer_norm(0, x, before=True)
        x = self.input_dropout_module(x)
        x = self.linear1(x)
        if self.act is not None:
            x = self.act(x)
        if encoder_padding_mask is not None:
            # Pads read as the zero padding at the sequence's ends: a padded sentence convolves as it does alone.
            x = x.masked_fill(encoder_padding_mask.transpose(0, 1).unsqueeze(2), 0)
        x = self.conv(x)
        x = self.linear2(x)
        x = self.dropout_module(x)
        x = self.maybe_layer_norm(0, residual + x, after=True)

        residual = x
        x = self.maybe_layer_norm(1, x, before=True)
        x = self.relu_dropout_module(F.relu(self.fc1(x)))
        x = self.dropout_module(self.fc2(x))
        return self.maybe_layer_norm(1, residual + x, after=True)

    def maybe_layer_norm(self, i: int, x: Tensor, before: bool = False, after: bool = False) -> Tensor:
        """LayerNorm i where this layer puts it: before its block (normalize_before) or after."""
        if before == after:
            raise ValueError("maybe_layer_norm: say exactly one of before and after")
        return self.layer_norms[i](x) if after ^ self.normalize_before else x

    def extra_repr(self) -> str:
        return (
            f"dropout={self.dropout_module.p}, relu_dropout={self.relu_dropout_module.p}, "
            f"input_dropout={self.input_dropout_module.p}, normalize_before={self.normalize_before}"
        )
