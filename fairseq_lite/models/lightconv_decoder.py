"""The decoder of fairseq's LightConv/DynamicConv models (`--arch lightconv*`, `lightconv_lm*`), and its layer.

tokens -> embed * sqrt(dim) -> [project_in_dim] -> + positions -> dropout -> N x LightConvDecoderLayer
       -> [final LayerNorm] -> [project_out_dim] -> vocabulary logits (`embed_out`, or the shared embedding;
       with an adaptive softmax, the features it scores)

    layer: [LN] -> input dropout -> linear1 (x2 and GLU with decoder_glu) -> causal lightweight or dynamic
           convolution (kernel_size - 1 taps back) -> linear2 -> dropout -> + residual -> [LN]
           -> attention over the encoder output (translation) -> dropout -> + residual -> [LN]
           -> the FFN: fc1 -> relu -> relu dropout -> fc2 -> dropout -> + residual -> [LN]

There is no self-attention: the causal convolutions carry the context, and incremental decoding keeps each
convolution's last kernel_size - 1 inputs. Layers run time-first (T x B x C), as fairseq's; the encoder
attention is fairseq-lite's batch-first MultiheadAttention, which shares one encoder row among a sentence's
hypotheses in beam search (supports_grouped_encoder_out). Module and parameter names are fairseq 0.12.2's.

Differences from fairseq: `extra` is {"attn": [B x T x S or None], "inner_states": [...]} (fairseq's attn is a
bare tensor); the attention (averaged over the heads, as fairseq's) is formed only when asked, with
`need_attn` (what --print-alignment sets) or make_generation_fast_(need_attn=True), as for the transformer.
"""

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.dataclass.base import eval_str_list
from fairseq_lite.models.fairseq_model import DecoderOut, FairseqIncrementalDecoder
from fairseq_lite.models.lightconv_encoder import build_conv
from fairseq_lite.models.transformer_decoder import Linear
from fairseq_lite.modules.adaptive_softmax import AdaptiveSoftmax
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.layer_norm import LayerNorm
from fairseq_lite.modules.multihead_attention import IncrementalState, MultiheadAttention
from fairseq_lite.modules.positional_embedding import PositionalEmbedding

DEFAULT_MAX_TARGET_POSITIONS = 1024


class LightConvDecoder(FairseqIncrementalDecoder):
    supports_grouped_encoder_out = True  # only the encoder attention reads encoder_out, and it shares rows

    def __init__(
        self,
        args: Any,
        dictionary: Any,
        embed_tokens: nn.Module,
        no_encoder_attn: bool = False,
        final_norm: bool = True,
    ):
        super().__init__(dictionary)
        self.dropout_module = FairseqDropout(float(args.dropout), module_name=type(self).__name__)
        self.share_input_output_embed = bool(args.share_decoder_input_output_embed)
        input_embed_dim = embed_tokens.embedding_dim
        embed_dim = args.decoder_embed_dim
        output_embed_dim = args.decoder_output_dim
        padding_idx = embed_tokens.padding_idx
        self.max_target_positions = getattr(args, "max_target_positions", None) or DEFAULT_MAX_TARGET_POSITIONS
        self.embed_tokens = embed_tokens
        self.embed_scale = math.sqrt(embed_dim)  # (fairseq's, even when the input embedding is narrower)
        self.project_in_dim = Linear(input_embed_dim, embed_dim, bias=False) if embed_dim != input_embed_dim else None
        self.embed_positions = None
        if not args.no_token_positional_embeddings:
            self.embed_positions = PositionalEmbedding(
                self.max_target_positions, embed_dim, padding_idx, learned=bool(args.decoder_learned_pos)
            )
        self.layers = nn.ModuleList(
            LightConvDecoderLayer(args, no_encoder_attn, kernel_size=args.decoder_kernel_size_list[i])
            for i in range(args.decoder_layers)
        )
        self.num_layers = len(self.layers)
        self.need_attn = False
        tie_adaptive = bool(getattr(args, "tie_adaptive_weights", False))
        self.project_out_dim = (
            Linear(embed_dim, output_embed_dim, bias=False)
            if embed_dim != output_embed_dim and not tie_adaptive
            else None
        )
        self.adaptive_softmax = None
        if args.adaptive_softmax_cutoff is not None:
            self.adaptive_softmax = AdaptiveSoftmax(
                len(dictionary),
                output_embed_dim,
                eval_str_list(args.adaptive_softmax_cutoff, type=int),
                dropout=float(args.adaptive_softmax_dropout),
                adaptive_inputs=embed_tokens if tie_adaptive else None,
                factor=float(getattr(args, "adaptive_softmax_factor", 4)),
                tie_proj=bool(getattr(args, "tie_adaptive_proj", False)),
            )
        elif not self.share_input_output_embed:
            self.embed_out = nn.Parameter(torch.empty(len(dictionary), output_embed_dim))
            nn.init.normal_(self.embed_out, mean=0, std=output_embed_dim**-0.5)
        self.normalize = bool(args.decoder_normalize_before) and final_norm
        if self.normalize:
            self.layer_norm = LayerNorm(embed_dim)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: dict[str, Any] | None = None,
        incremental_state: IncrementalState | None = None,
        features_only: bool = False,
        **unused: Any,
    ) -> DecoderOut:
        """prev_output_tokens: B x T. encoder_out: LightConvEncoder's dict (None for the language model).
        Returns (logits B x T x V, or B x 1 x V when incremental, extra)."""
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return (x if features_only else self.output_layer(x)), extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: dict[str, Any] | None = None,
        incremental_state: IncrementalState | None = None,
        **unused: Any,
    ) -> DecoderOut:
        incremental = incremental_state is not None
        positions = None
        if self.embed_positions is not None:
            # Positions see the whole prefix, so that its pads are not counted.
            positions = self.embed_positions(prev_output_tokens, incremental=incremental)
        tokens = prev_output_tokens[:, -1:] if incremental else prev_output_tokens
        x = self.embed_scale * self.embed_tokens(tokens)
        if self.project_in_dim is not None:
            x = self.project_in_dim(x)
        if positions is not None:
            x = x + positions
        x = self.dropout_module(x).transpose(0, 1)  # T x B x C

        enc = enc_mask = None
        if encoder_out is not None:
            enc, enc_mask = encoder_out["encoder_out"], encoder_out["encoder_padding_mask"]
            enc = None if enc is None else enc.transpose(0, 1)  # B x S x C, as the attention takes it
        want_attn = self.need_attn and not self.training
        attn = None
        inner_states = [x]
        for i, layer in enumerate(self.layers):
            x, layer_attn = layer(x, enc, enc_mask, incremental_state, need_attn=want_attn and i == self.num_layers - 1)
            if layer_attn is not None:
                attn = layer_attn
            inner_states.append(x)
        if self.normalize:
            x = self.layer_norm(x)
        x = x.transpose(0, 1)  # B x T x C
        if self.project_out_dim is not None:
            x = self.project_out_dim(x)
        return x, {"attn": [attn], "inner_states": inner_states}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features  # the adaptive softmax scores them (adaptive_loss, get_normalized_probs)
        if self.share_input_output_embed:
            return F.linear(features, self.embed_tokens.weight)
        return F.linear(features, self.embed_out)

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return self.max_target_positions
        return min(self.max_target_positions, self.embed_positions.max_positions)

    def make_generation_fast_(self, need_attn: bool = False, **kwargs: Any) -> None:
        self.need_attn = need_attn


class LightConvDecoderLayer(nn.Module):
    def __init__(self, args: Any, no_encoder_attn: bool = False, kernel_size: int = 0):
        super().__init__()
        self.embed_dim = args.decoder_embed_dim
        self.conv_dim = args.decoder_conv_dim
        glu = bool(args.decoder_glu)
        self.linear1 = Linear(self.embed_dim, 2 * self.conv_dim if glu else self.conv_dim)
        self.act = nn.GLU() if glu else None
        self.conv = build_conv(
            args.decoder_conv_type, self.conv_dim, kernel_size, kernel_size - 1, args, args.decoder_attention_heads
        )
        self.linear2 = Linear(self.conv_dim, self.embed_dim)
        self.dropout_module = FairseqDropout(float(args.dropout), module_name=type(self).__name__)
        self.relu_dropout_module = FairseqDropout(float(args.relu_dropout), module_name=type(self).__name__)
        self.input_dropout_module = FairseqDropout(float(args.input_dropout), module_name=type(self).__name__)
        self.normalize_before = bool(args.decoder_normalize_before)
        self.conv_layer_norm = LayerNorm(self.embed_dim)
        self.encoder_attn = self.encoder_attn_layer_norm = None
        if not no_encoder_attn:
            self.encoder_attn = MultiheadAttention(
                self.embed_dim,
                args.decoder_attention_heads,
                dropout=float(args.attention_dropout),
                encoder_decoder_attention=True,
            )
            self.encoder_attn_layer_norm = LayerNorm(self.embed_dim)
        self.fc1 = Linear(self.embed_dim, args.decoder_ffn_embed_dim)
        self.fc2 = Linear(args.decoder_ffn_embed_dim, self.embed_dim)
        self.final_layer_norm = LayerNorm(self.embed_dim)

    def forward(
        self,
        x: Tensor,
        encoder_out: Tensor | None,
        encoder_padding_mask: Tensor | None,
        incremental_state: IncrementalState | None,
        need_attn: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """x: T x B x C. encoder_out: B_enc x S x C, batch-first (B_enc divides B: see MultiheadAttention);
        encoder_padding_mask: B_enc x S or None. Returns (T x B x C, the encoder attention B x T x S averaged
        over the heads when need_attn, else None)."""
        residual = x
        x = self.maybe_layer_norm(self.conv_layer_norm, x, before=True)
        x = self.input_dropout_module(x)
        x = self.linear1(x)
        if self.act is not None:
            x = self.act(x)
        x = self.conv(x, incremental_state=incremental_state)
        x = self.dropout_module(self.linear2(x))
        x = self.maybe_layer_norm(self.conv_layer_norm, residual + x, after=True)

        attn = None
        if self.encoder_attn is not None:
            if encoder_out is None:
                raise ValueError("this decoder attends to the encoder output: pass encoder_out")
            residual = x
            x = self.maybe_layer_norm(self.encoder_attn_layer_norm, x, before=True)
            result = self.encoder_attn(
                x.transpose(0, 1),
                encoder_out,
                key_padding_mask=encoder_padding_mask,
                incremental_state=incremental_state,
                need_weights=need_attn,
            )
            if need_attn:
                result, weights = result
                attn = weights.float().mean(dim=1).to(result)  # fairseq's: the heads' average
            x = self.dropout_module(result.transpose(0, 1))
            x = self.maybe_layer_norm(self.encoder_attn_layer_norm, residual + x, after=True)

        residual = x
        x = self.maybe_layer_norm(self.final_layer_norm, x, before=True)
        x = self.relu_dropout_module(F.relu(self.fc1(x)))
        x = self.dropout_module(self.fc2(x))
        return self.maybe_layer_norm(self.final_layer_norm, residual + x, after=True), attn

    def maybe_layer_norm(self, layer_norm: nn.Module, x: Tensor, before: bool = False, after: bool = False) -> Tensor:
        """`layer_norm` where this layer puts it: before its block (normalize_before) or after."""
        if before == after:
            raise ValueError("maybe_layer_norm: say exactly one of before and after")
        return layer_norm(x) if after ^ self.normalize_before else x

    def extra_repr(self) -> str:
        return (
            f"dropout={self.dropout_module.p}, relu_dropout={self.relu_dropout_module.p}, "
            f"input_dropout={self.input_dropout_module.p}, normalize_before={self.normalize_before}"
        )
