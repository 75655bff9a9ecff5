"""The decoder of fairseq's `fconv_self_att` model (Fan et al., 2018, "Hierarchical Neural Story Generation"),
its self-attention block and that model's initialization (fairseq/models/fconv_self_att.py).

    target -> embed + learned positions -> dropout -> fc1 -> per layer: dropout -> causal convolution -> GLU
           -> [multi-head attention over the encoder, from attproj(x) + target embedding, plus x]
           -> [self-attention over the earlier steps] -> residual (x + layer input) * sqrt(0.5)
           -> fc2 -> dropout -> fc3 (vocabulary logits)

With a pretrained model (fusion, --pretrained True), the frozen pretrained decoder's fc2 output joins this
one's through learned sigmoid gates and a GLU/LayerNorm stack before fc3.

Unlike fconv's, this model's Linear layers, convolutions and embeddings are plain (not weight-normalized; the
pad rows are not zeroed), and the decoder runs the whole prefix at every step (fairseq's is not incremental
either: self-attention reads every earlier step). The attention over the source does not mask source pads,
as in fairseq. Module and parameter names are fairseq 0.12.2's, so its checkpoints load one to one.
`extra` is {"attn": [B x T x S, the attention summed over the layers, or None]}.
"""

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.models.fairseq_model import DecoderOut, FairseqDecoder
from fairseq_lite.models.fconv_decoder import ConvSpec
from fairseq_lite.modules.conv_tbc import ConvTBC as _ConvTBC
from fairseq_lite.modules.downsampled_multihead_attention import DownsampledMultiHeadAttention
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.layer_norm import LayerNorm
from fairseq_lite.modules.linearized_convolution import LinearizedConvolution
from fairseq_lite.modules.positional_embedding import LearnedPositionalEmbedding


class SelfAttention(nn.Module):
    """Attention of each step over the steps before it (and a zero "nothing" slot), projected from and
    back to the convolution's width, with a residual and LayerNorm."""

    def __init__(
        self,
        out_channels: int,
        embed_dim: int,
        num_heads: int,
        project_input: bool = False,
        gated: bool = False,
        downsample: bool = False,
    ):
        super().__init__()
        self.attention = DownsampledMultiHeadAttention(
            out_channels,
            embed_dim,
            num_heads,
            dropout=0,
            bias=True,
            project_input=project_input,
            gated=gated,
            downsample=downsample,
        )
        self.in_proj_q = Linear(out_channels, embed_dim)
        self.in_proj_k = Linear(out_channels, embed_dim)
        self.in_proj_v = Linear(out_channels, embed_dim)
        self.ln = LayerNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        """T x B x C -> T x B x C."""
        residual = x
        query, key, value = self.in_proj_q(x), self.in_proj_k(x), self.in_proj_v(x)
        x, _ = self.attention(query, key, value, mask_future_timesteps=True, use_scalar_bias=True)
        return self.ln(x + residual)


class FConvDecoder(FairseqDecoder):
    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        out_embed_dim: int = 256,
        max_positions: int = 1024,
        convolutions: ConvSpec = ((512, 3, 1),) * 8,
        attention: bool | list[bool] = True,
        dropout: float = 0.1,
        selfattention: bool | list[bool] = False,
        attention_nheads: int = 1,
        selfattention_nheads: int = 1,
        project_input: bool = False,
        gated_attention: bool = False,
        downsample: bool = False,
        pretrained: bool = False,
        trained_decoder: "FConvDecoder | None" = None,
    ):
        super().__init__(dictionary)
        self.pretrained = pretrained
        self.pretrained_decoder = trained_decoder
        self.dropout_module = FairseqDropout(float(dropout), module_name=type(self).__name__)
        self.need_attn = True
        in_channels = convolutions[0][0]
        attention = expand_bool_array(attention, len(convolutions))
        selfattention = expand_bool_array(selfattention, len(convolutions))
        if not isinstance(attention, list) or len(attention) != len(convolutions):
            raise ValueError("Attention is expected to be a list of booleans of length equal to the number of layers.")
        if pretrained and trained_decoder is None:
            raise ValueError("a fusion decoder (pretrained=True) needs the pretrained decoder")

        num_embeddings = len(dictionary)
        padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(num_embeddings, embed_dim, padding_idx)
        self.embed_positions = PositionalEmbedding(max_positions, embed_dim, padding_idx)

        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.projections = nn.ModuleList()
        self.convolutions = nn.ModuleList()
        self.attention = nn.ModuleList()
        self.selfattention = nn.ModuleList()
        self.attproj = nn.ModuleList()
        for i, (out_channels, kernel_size, *_) in enumerate(convolutions):
            self.projections.append(Linear(in_channels, out_channels) if in_channels != out_channels else None)
            self.convolutions.append(
                LinearizedConv1d(in_channels, out_channels * 2, kernel_size, padding=kernel_size - 1, dropout=dropout)
            )
            self.attention.append(
                DownsampledMultiHeadAttention(
                    out_channels,
                    embed_dim,
                    attention_nheads,
                    project_input=project_input,
                    gated=False,
                    downsample=False,
                )
                if attention[i]
                else None
            )
            self.attproj.append(Linear(out_channels, embed_dim, dropout=dropout) if attention[i] else None)
            self.selfattention.append(
                SelfAttention(
                    out_channels,
                    embed_dim,
                    selfattention_nheads,
                    project_input=project_input,
                    gated=gated_attention,
                    downsample=downsample,
                )
                if selfattention[i]
                else None
            )
            in_channels = out_channels
        self.fc2 = Linear(in_channels, out_embed_dim)
        self.fc3 = Linear(out_embed_dim, num_embeddings, dropout=dropout)

        if self.pretrained:
            # Fusion: a gate for each model's features, learned from both, then a joining stack.
            self.gate1 = nn.Sequential(Linear(out_embed_dim * 2, out_embed_dim), nn.Sigmoid())
            self.gate2 = nn.Sequential(Linear(out_embed_dim * 2, out_embed_dim), nn.Sigmoid())
            self.joining = nn.Sequential(
                Linear(out_embed_dim * 2, out_embed_dim * 2),
                LayerNorm(out_embed_dim * 2),
                nn.GLU(),
                Linear(out_embed_dim, out_embed_dim * 2),
                LayerNorm(out_embed_dim * 2),
                nn.GLU(),
                Linear(out_embed_dim, out_embed_dim),
                LayerNorm(out_embed_dim),
            )

    def forward(self, prev_output_tokens: Tensor, encoder_out: dict[str, Any], **unused: Any) -> DecoderOut:
        """prev_output_tokens: B x T; encoder_out: the composite encoder's {"encoder": ..., ["pretrained":
        ...]}. Returns (logits B x T x V, {"attn": [B x T x S or None]})."""
        features, avg_attn_scores = self.fc2_features(prev_output_tokens, encoder_out)
        x = self.dropout_module(features)
        if self.pretrained:
            # The pretrained decoder's own fc2 output, before its dropout and output layer (what fairseq's
            # forward hook on its fc2 keeps).
            pretrained_out, _ = self.pretrained_decoder.fc2_features(prev_output_tokens, encoder_out["pretrained"])
            y = torch.cat([x, pretrained_out], dim=-1)
            fusion = torch.cat([self.gate1(y) * x, self.gate2(y) * pretrained_out], dim=-1)
            x = self.joining(fusion)
        return self.fc3(x), {"attn": [avg_attn_scores]}

    def fc2_features(self, prev_output_tokens: Tensor, encoder_out: dict[str, Any]) -> tuple[Tensor, Tensor | None]:
        """fc2's output (B x T x out_embed_dim) and the attention summed over the layers (eval mode)."""
        encoder_a, encoder_b = self._split_encoder_out(encoder_out["encoder"]["encoder_out"])
        x = self.embed_tokens(prev_output_tokens) + self.embed_positions(prev_output_tokens)
        x = self.dropout_module(x)
        target_embedding = x.transpose(0, 1)
        x = self.fc1(x).transpose(0, 1)  # T x B x C

        avg_attn_scores = None
        layers = zip(self.projections, self.convolutions, self.attention, self.selfattention, self.attproj)
        for proj, conv, attention, selfattention, attproj in layers:
            residual = x if proj is None else proj(x)
            x = self.dropout_module(x)
            x = F.glu(conv(x), dim=2)
            if attention is not None:
                r = x
                # No source padding mask: fairseq's attends over the pads too.
                x, attn_scores = attention(attproj(x) + target_embedding, encoder_a, encoder_b)
                x = x + r
                if not self.training and self.need_attn:
                    avg_attn_scores = attn_scores if avg_attn_scores is None else avg_attn_scores + attn_scores
            if selfattention is not None:
                x = selfattention(x)
            x = (x + residual) * math.sqrt(0.5)
        return self.fc2(x.transpose(0, 1)), avg_attn_scores

    def max_positions(self) -> int:
        return self.embed_positions.max_positions

    def make_generation_fast_(self, need_attn: bool = False, **kwargs: Any) -> None:
        self.need_attn = need_attn

    @staticmethod
    def _split_encoder_out(encoder_out: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """The encoder's (keys, values), B x S x C each, time-first, as the attention takes them."""
        encoder_a, encoder_b = encoder_out
        return encoder_a.transpose(0, 1).contiguous(), encoder_b.transpose(0, 1).contiguous()


def expand_bool_array(value: Any, num_layers: int) -> Any:
    """True/False for every layer, or the list as given."""
    return [value] * num_layers if isinstance(value, bool) else value


# fairseq's initialization of fconv_self_att's layers: plain (not weight-normalized) modules.


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> nn.Embedding:
    """N(0, 0.1) for every row, the pad row too (fairseq's here: its gradient stays zero)."""
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, 0, 0.1)
    return m


def PositionalEmbedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> LearnedPositionalEmbedding:
    """`num_embeddings` rows in all, padding_idx + 1 of them reserved; N(0, 0.1), the pad row too."""
    m = LearnedPositionalEmbedding(num_embeddings - padding_idx - 1, embedding_dim, padding_idx)
    nn.init.normal_(m.weight, 0, 0.1)
    return m


def Linear(in_features: int, out_features: int, dropout: float = 0.0) -> nn.Linear:
    m = nn.Linear(in_features, out_features)
    nn.init.normal_(m.weight, mean=0, std=math.sqrt((1 - dropout) / in_features))
    nn.init.zeros_(m.bias)
    return m


def LinearizedConv1d(
    in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0, **kwargs: Any
) -> LinearizedConvolution:
    m = LinearizedConvolution(in_channels, out_channels, kernel_size, **kwargs)
    _conv_init(m, in_channels, dropout)
    return m


def ConvTBC(in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0, **kwargs: Any) -> _ConvTBC:
    m = _ConvTBC(in_channels, out_channels, kernel_size, **kwargs)
    _conv_init(m, in_channels, dropout)
    return m


def _conv_init(m: nn.Module, in_channels: int, dropout: float) -> None:
    std = math.sqrt((4 * (1.0 - dropout)) / (m.kernel_size[0] * in_channels))
    nn.init.normal_(m.weight, mean=0, std=std)
    nn.init.zeros_(m.bias)
