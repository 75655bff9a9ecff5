"""The decoder of fairseq's convolutional models (`fconv`, `fconv_lm`), its attention layer and fairseq's
initialization of their layers (Gehring et al., 2017, "Convolutional Sequence to Sequence Learning").

    target -> embed + learned positions -> dropout -> fc1 -> per layer: dropout -> causal convolution -> GLU
           -> [attention over the encoder: (x + target embedding) . encoder keys, averaging its values]
           -> residual (x + earlier output) * sqrt(0.5)
           -> fc2 -> dropout -> fc3 (vocabulary logits), or an adaptive softmax's features

Module and parameter names are fairseq 0.12.2's (fairseq/models/fconv.py), so its checkpoints load one to one:
every Linear and convolution is weight-normalized (`weight_g`, `weight_v`, as torch's original weight_norm),
embeddings are not. `encoder_out` is the fconv encoder's dict: {"encoder_out": (keys B x S x C, values
B x S x C), "encoder_padding_mask": B x S, True at pads, or None when the batch has no pads}. `extra` is
fairseq-lite's dict, {"attn": [B x T x S or None]}, not the bare attention tensor fairseq's decoder returns.

Incremental decoding keeps each convolution's last `kernel` inputs (LinearizedConvolution's buffer) and the
encoder output transposed once; a step then costs one linear layer per convolution.
"""

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite import utils
from fairseq_lite.models.fairseq_model import DecoderOut, FairseqIncrementalDecoder
from fairseq_lite.modules.adaptive_softmax import AdaptiveSoftmax
from fairseq_lite.modules.conv_tbc import ConvTBC as _ConvTBC
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.linearized_convolution import LinearizedConvolution
from fairseq_lite.modules.multihead_attention import IncrementalState
from fairseq_lite.modules.positional_embedding import LearnedPositionalEmbedding
from fairseq_lite.modules.weight_norm import weight_norm

ConvSpec = tuple[tuple[int, int, int], ...]
# Without positional embeddings (fconv_lm) fairseq's decoder has no length limit (float inf there); an int
# here, as position limits are compared with lengths.
NO_POSITION_LIMIT = int(1e9)


class AttentionLayer(nn.Module):
    """Dot-product attention from a convolution's output over the encoder: keys are the encoder's outputs,
    values its outputs plus its input embedding; the result is scaled by sqrt(source length) (each row's own
    length), projected back and added to the input."""

    def __init__(self, conv_channels: int, embed_dim: int, bmm: Any = None):
        super().__init__()
        self.in_projection = Linear(conv_channels, embed_dim)  # convolution output -> embedding size
        self.out_projection = Linear(embed_dim, conv_channels)
        self.bmm = bmm if bmm is not None else torch.bmm

    def forward(
        self,
        x: Tensor,
        target_embedding: Tensor,
        encoder_out: tuple[Tensor, Tensor],
        encoder_padding_mask: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """x: B x T x C; target_embedding: B x T x E; encoder_out: (keys B x E x S, values B x S x E).
        Returns (B x T x C, the attention B x T x S)."""
        residual = x
        x = (self.in_projection(x) + target_embedding) * math.sqrt(0.5)
        x = self.bmm(x, encoder_out[0])
        if encoder_padding_mask is not None:
            # Masked in fp32 and cast back, as fairseq does for fp16.
            x = x.float().masked_fill(encoder_padding_mask.unsqueeze(1), float("-inf")).type_as(x)
        attn_scores = F.softmax(x, dim=-1)
        x = self.bmm(attn_scores, encoder_out[1])
        s = encoder_out[1].size(1)
        if encoder_padding_mask is None:
            x = x * (s * math.sqrt(1.0 / s))
        else:
            lengths = (s - encoder_padding_mask.type_as(x).sum(dim=1, keepdim=True)).unsqueeze(-1)
            x = x * (lengths * lengths.rsqrt())
        x = (self.out_projection(x) + residual) * math.sqrt(0.5)
        return x, attn_scores


class FConvDecoder(FairseqIncrementalDecoder):
    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        embed_dict: dict[str, Tensor] | None = None,
        out_embed_dim: int = 256,
        max_positions: int = 1024,
        convolutions: ConvSpec = ((512, 3, 1),) * 20,
        attention: bool | list[bool] = True,
        dropout: float = 0.1,
        share_embed: bool = False,
        positional_embeddings: bool = True,
        adaptive_softmax_cutoff: list[int] | None = None,
        adaptive_softmax_dropout: float = 0.0,
    ):
        super().__init__(dictionary)
        self.dropout_module = FairseqDropout(float(dropout), module_name=type(self).__name__)
        # fairseq returns the attention (in eval mode) unless make_generation_fast_ turned it off.
        self.need_attn = True
        convolutions = extend_conv_spec(convolutions)
        in_channels = convolutions[0][0]
        if isinstance(attention, bool):
            attention = [attention] * len(convolutions)
        if not isinstance(attention, list) or len(attention) != len(convolutions):
            raise ValueError("Attention is expected to be a list of booleans of length equal to the number of layers.")

        num_embeddings = len(dictionary)
        padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(num_embeddings, embed_dim, padding_idx)
        if embed_dict:
            self.embed_tokens = utils.load_embedding(embed_dict, self.dictionary, self.embed_tokens)
        self.embed_positions = (
            PositionalEmbedding(max_positions, embed_dim, padding_idx) if positional_embeddings else None
        )

        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.projections = nn.ModuleList()
        self.convolutions = nn.ModuleList()
        self.attention = nn.ModuleList()
        self.residuals: list[int] = []
        layer_in_channels = [in_channels]
        for i, (out_channels, kernel_size, residual) in enumerate(convolutions):
            residual_dim = out_channels if residual == 0 else layer_in_channels[-residual]
            self.projections.append(Linear(residual_dim, out_channels) if residual_dim != out_channels else None)
            # Padded by kernel - 1 and cut back to the input's length: causal.
            self.convolutions.append(
                LinearizedConv1d(in_channels, out_channels * 2, kernel_size, padding=kernel_size - 1, dropout=dropout)
            )
            self.attention.append(AttentionLayer(out_channels, embed_dim) if attention[i] else None)
            self.residuals.append(residual)
            in_channels = out_channels
            layer_in_channels.append(out_channels)

        self.adaptive_softmax = None
        self.fc2 = self.fc3 = None
        if adaptive_softmax_cutoff is not None:
            if share_embed:
                raise ValueError("an adaptive softmax cannot share the input embedding")
            self.adaptive_softmax = AdaptiveSoftmax(
                num_embeddings, in_channels, adaptive_softmax_cutoff, dropout=adaptive_softmax_dropout
            )
        else:
            self.fc2 = Linear(in_channels, out_embed_dim)
            if share_embed:
                if out_embed_dim != embed_dim:
                    raise ValueError(
                        f"Shared embed weights implies same dimensions out_embed_dim={out_embed_dim} vs "
                        f"embed_dim={embed_dim}"
                    )
                # A plain Linear (torch's default bias init, as fairseq's) whose weight is the embedding.
                self.fc3 = nn.Linear(out_embed_dim, num_embeddings)
                self.fc3.weight = self.embed_tokens.weight
            else:
                self.fc3 = Linear(out_embed_dim, num_embeddings, dropout=dropout)

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: dict[str, Any] | None = None,
        incremental_state: IncrementalState | None = None,
        **unused: Any,
    ) -> DecoderOut:
        """prev_output_tokens: B x T. Returns (logits B x T x V, or B x 1 x V when incremental; the
        features when there is an adaptive softmax) and {"attn": [B x T x S, or None]}."""
        x, extra = self.extract_features(prev_output_tokens, encoder_out, incremental_state)
        return self.output_layer(x), extra

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: dict[str, Any] | None = None,
        incremental_state: IncrementalState | None = None,
        **unused: Any,
    ) -> DecoderOut:
        encoder_a = encoder_b = encoder_padding_mask = None
        if encoder_out is not None:
            encoder_padding_mask = encoder_out["encoder_padding_mask"]
            encoder_a, encoder_b = self._split_encoder_out(encoder_out["encoder_out"], incremental_state)
        incremental = incremental_state is not None
        pos_embed = 0
        if self.embed_positions is not None:
            pos_embed = self.embed_positions(prev_output_tokens, incremental=incremental)
        if incremental:
            prev_output_tokens = prev_output_tokens[:, -1:]  # the earlier steps are in the buffers
        x = self.dropout_module(self.embed_tokens(prev_output_tokens) + pos_embed)
        target_embedding = x
        x = self.fc1(x)
        # Full passes run the convolutions time-first (T x B x C); incremental steps batch-first (B x 1 x C),
        # as LinearizedConvolution takes them.
        x = self._transpose_if_training(x, incremental_state)

        avg_attn_scores = None
        # fairseq divides by every layer, with attention or not.
        num_attn_layers = len(self.attention)
        residuals = [x]
        for proj, conv, attention, res_layer in zip(
            self.projections, self.convolutions, self.attention, self.residuals
        ):
            residual = None
            if res_layer > 0:
                residual = residuals[-res_layer]
                residual = residual if proj is None else proj(residual)
            x = self.dropout_module(x)
            x = F.glu(conv(x, incremental_state), dim=2)
            if attention is not None:
                if encoder_a is None:
                    raise ValueError("attention is not supported without encoder outputs")
                x = self._transpose_if_training(x, incremental_state)
                x, attn_scores = attention(x, target_embedding, (encoder_a, encoder_b), encoder_padding_mask)
                if not self.training and self.need_attn:
                    attn_scores = attn_scores / num_attn_layers
                    avg_attn_scores = attn_scores if avg_attn_scores is None else avg_attn_scores + attn_scores
                x = self._transpose_if_training(x, incremental_state)
            if residual is not None:
                x = (x + residual) * math.sqrt(0.5)
            residuals.append(x)
        x = self._transpose_if_training(x, incremental_state)  # B x T x C
        return x, {"attn": [avg_attn_scores]}

    def output_layer(self, features: Tensor) -> Tensor:
        if self.adaptive_softmax is not None:
            return features  # the adaptive softmax scores them (adaptive_loss, get_normalized_probs)
        return self.fc3(self.dropout_module(self.fc2(features)))

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        super().reorder_incremental_state(incremental_state, new_order)  # the convolutions' buffers
        encoder_out = self.get_incremental_state(incremental_state, "encoder_out")
        if encoder_out is not None:
            encoder_out = tuple(eo.index_select(0, new_order) for eo in encoder_out)
            self.set_incremental_state(incremental_state, "encoder_out", encoder_out)

    def max_positions(self) -> int:
        if self.embed_positions is None:
            return NO_POSITION_LIMIT
        return self.embed_positions.max_positions

    def make_generation_fast_(self, need_attn: bool = False, **kwargs: Any) -> None:
        self.need_attn = need_attn

    def _split_encoder_out(
        self, encoder_out: tuple[Tensor, Tensor], incremental_state: IncrementalState | None
    ) -> tuple[Tensor, Tensor]:
        """(keys transposed to B x C x S, values B x S x C), transposed once per sentence when decoding."""
        cached = self.get_incremental_state(incremental_state, "encoder_out")
        if cached is not None:
            return cached
        encoder_a, encoder_b = encoder_out
        result = (encoder_a.transpose(1, 2).contiguous(), encoder_b)
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "encoder_out", result)
        return result

    @staticmethod
    def _transpose_if_training(x: Tensor, incremental_state: IncrementalState | None) -> Tensor:
        return x.transpose(0, 1) if incremental_state is None else x


def extend_conv_spec(convolutions: Any) -> ConvSpec:
    """Layers as (out_channels, kernel_width, residual): a 2-value layer gets residual 1 (fairseq's)."""
    extended = []
    for spec in convolutions:
        spec = tuple(spec)
        if len(spec) == 3:
            extended.append(spec)
        elif len(spec) == 2:
            extended.append(spec + (1,))
        else:
            raise ValueError(f"invalid number of parameters in convolution spec {spec}. expected 2 or 3")
    return tuple(extended)


# fairseq's initialization of the convolutional models' layers.


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> nn.Embedding:
    """N(0, 0.1), the pad row zero."""
    m = nn.Embedding(num_embeddings, embedding_dim, padding_idx=padding_idx)
    nn.init.normal_(m.weight, 0, 0.1)
    nn.init.constant_(m.weight[padding_idx], 0)
    return m


def PositionalEmbedding(num_embeddings: int, embedding_dim: int, padding_idx: int) -> LearnedPositionalEmbedding:
    """fairseq's fconv table: `num_embeddings` rows in all (the reserved rows 0..padding_idx among them, so
    `num_embeddings - padding_idx - 1` positions), N(0, 0.1), the pad row zero."""
    m = LearnedPositionalEmbedding(num_embeddings - padding_idx - 1, embedding_dim, padding_idx)
    nn.init.normal_(m.weight, 0, 0.1)
    nn.init.constant_(m.weight[padding_idx], 0)
    return m


def Linear(in_features: int, out_features: int, dropout: float = 0.0) -> nn.Linear:
    """Weight-normalized Linear (input N x T x C): N(0, sqrt((1 - dropout) / in)), zero bias."""
    m = nn.Linear(in_features, out_features)
    nn.init.normal_(m.weight, mean=0, std=math.sqrt((1 - dropout) / in_features))
    nn.init.constant_(m.bias, 0)
    return weight_norm(m)


def LinearizedConv1d(
    in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0, **kwargs: Any
) -> LinearizedConvolution:
    """Weight-normalized causal convolution for decoding (per output channel: dim 2 of kernel x in x out)."""
    m = LinearizedConvolution(in_channels, out_channels, kernel_size, **kwargs)
    _conv_init(m, in_channels, dropout)
    return weight_norm(m, dim=2)


def ConvTBC(in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0, **kwargs: Any) -> _ConvTBC:
    """Weight-normalized ConvTBC (per output channel)."""
    m = _ConvTBC(in_channels, out_channels, kernel_size, **kwargs)
    _conv_init(m, in_channels, dropout)
    return weight_norm(m, dim=2)


def _conv_init(m: nn.Module, in_channels: int, dropout: float) -> None:
    # N(0, sqrt(4 (1 - dropout) / (kernel * in))): the GLU halves the variance (Gehring et al., section 3.5).
    std = math.sqrt((4 * (1.0 - dropout)) / (m.kernel_size[0] * in_channels))
    nn.init.normal_(m.weight, mean=0, std=std)
    nn.init.constant_(m.bias, 0)
