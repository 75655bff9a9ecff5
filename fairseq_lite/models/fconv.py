"""fairseq's convolutional translation model (`--arch fconv*`; Gehring et al., 2017, "Convolutional Sequence
to Sequence Learning"): a convolutional encoder and a convolutional decoder with attention in every layer
that asks for it (the decoder is in fconv_decoder.py, shared with the language model of fconv_lm.py).

    source -> embed + learned positions -> dropout -> fc1 -> per layer: mask pads -> dropout -> convolution
           (centred: odd kernels pad inside the convolution, even ones one more on the right) -> GLU
           -> residual (x + earlier output) * sqrt(0.5) -> fc2 -> zero pads
           -> keys (the gradient scaled by 1 / (2 x attention layers)), values (keys + input embedding) * sqrt(0.5)

Layers are fairseq's specs, `--encoder-layers "[(512, 3)] * 9 + [(1024, 3)] * 4"`: (out_channels,
kernel_width[, residual]) per layer, read by fconv_spec.py's evaluator (fairseq evals them). Module and
parameter names and initialization are fairseq 0.12.2's, so a fairseq checkpoint's weights load one to one.
The encoder output keeps fairseq's layout, {"encoder_out": (keys B x S x C, values B x S x C),
"encoder_padding_mask": B x S or None}, batch-first: reorder_encoder_out selects along dim 0.

Not carried over: fairseq's `version` marker buffer (the loader drops fairseq's `.version` entries) and the
upgrade of pre-2018 checkpoints, whose weight norm ran over another dimension (fairseq-lite reads no checkpoint
written before fairseq 0.10); BeamableMM, a speed-up of the attention's batched products at beam search.
"""

import math
import os
from dataclasses import dataclass
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite import utils
from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import FairseqEncoder, FairseqEncoderDecoderModel
from fairseq_lite.models.fconv_decoder import (  # noqa: F401  (fairseq's names, importable from here as there)
    AttentionLayer,
    ConvSpec,
    ConvTBC,
    Embedding,
    FConvDecoder,
    Linear,
    LinearizedConv1d,
    PositionalEmbedding,
    extend_conv_spec,
)
from fairseq_lite.models.fconv_spec import bool_spec, conv_spec
from fairseq_lite.models.lstm import check_dropouts, check_positive, filled_args
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.grad_multiply import GradMultiply
from fairseq_lite.registry import register_model, register_model_architecture

# FConvEncoder's and FConvDecoder's own defaults, for a task without position limits.
DEFAULT_MAX_POSITIONS = 1024


@dataclass
class FConvConfig(FairseqDataclass):
    dropout: float = cfg_field(0.1, help="dropout probability")
    encoder_embed_dim: int = cfg_field(512, help="encoder embedding dimension")
    encoder_embed_path: str | None = cfg_field(None, help="path to pre-trained encoder embedding")
    encoder_layers: str = cfg_field("[(512, 3)] * 20", help="encoder layers [(dim, kernel_size), ...]")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    decoder_embed_path: str | None = cfg_field(None, help="path to pre-trained decoder embedding")
    decoder_layers: str = cfg_field("[(512, 3)] * 20", help="decoder layers [(dim, kernel_size), ...]")
    decoder_out_embed_dim: int = cfg_field(256, help="decoder output embedding dimension")
    decoder_attention: str = cfg_field("True", help="decoder attention [True, ...]")
    share_input_output_embed: bool = cfg_field(
        False,
        help="share input and output embeddings (requires --decoder-out-embed-dim and --decoder-embed-dim to be equal)",
    )
    # options from other parts of the config: the translation task's position limits
    max_source_positions: int | None = cfg_field(
        "${oc.select:task.max_source_positions,null}", help="max number of tokens in the source sequence"
    )
    max_target_positions: int | None = cfg_field(
        "${oc.select:task.max_target_positions,null}", help="max number of tokens in the target sequence"
    )


def check_positions(value: int, padding_idx: int, name: str) -> int:
    """fairseq's fconv position tables have `value` rows, the first padding_idx + 1 reserved: at least one
    position must be left."""
    if value <= padding_idx + 1:
        raise ConfigError(
            f"{setting(name, value)}: the convolutional models' position table has that many rows, "
            f"{padding_idx + 1} of them reserved; it must be larger than {padding_idx + 1}"
        )
    return value


def load_embed_dict(path: str | None, dictionary: Any, embed_dim: int, name: str) -> dict[str, Tensor] | None:
    """The vectors of a word2vec/GloVe text file for the words `dictionary` has (the others keep their
    random init), checked against the embedding's width; None without a file."""
    if not path:
        return None
    if not os.path.isfile(path):
        raise ConfigError(f"{setting(name, path)}: no such file")
    embed_dict = utils.parse_embedding(path)
    wrong = next((w for w, v in embed_dict.items() if v.numel() != embed_dim), None)
    if wrong is not None:
        raise ConfigError(
            f"{setting(name, path)}: the vector of {wrong!r} has {embed_dict[wrong].numel()} values, the "
            f"embedding {embed_dim}"
        )
    utils.print_embed_overlap(embed_dict, dictionary)
    return embed_dict


@register_model("fconv", dataclass=FConvConfig)
class FConvModel(FairseqEncoderDecoderModel):
    """A fully convolutional model (https://arxiv.org/abs/1705.03122)."""

    def __init__(self, encoder: "FConvEncoder", decoder: FConvDecoder):
        super().__init__(encoder, decoder)
        self.encoder.num_attention_layers = sum(layer is not None for layer in decoder.attention)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, FConvConfig, base_architecture)
        check_positive(args, ["encoder_embed_dim", "decoder_embed_dim", "decoder_out_embed_dim"])
        check_dropouts(args, ["dropout"])
        if args.encoder_embed_dim != args.decoder_embed_dim:
            # The decoder's attention compares its target embedding with the encoder's outputs.
            raise ConfigError(
                f"{key('model.encoder_embed_dim')} ({args.encoder_embed_dim}) must match "
                f"{key('model.decoder_embed_dim')} ({args.decoder_embed_dim}): the attention compares them"
            )
        conv_spec(args.encoder_layers, "model.encoder_layers")
        decoder_layers = conv_spec(args.decoder_layers, "model.decoder_layers")
        attention = bool_spec(args.decoder_attention, "model.decoder_attention", len(decoder_layers))
        if not any(attention):
            # The encoder's gradient is scaled by 1 / (2 x attention layers), and without attention the
            # decoder would never read the source.
            raise ConfigError(
                f"{setting('model.decoder_attention', repr(args.decoder_attention))}: the translation model needs "
                f"attention in at least one decoder layer"
            )
        if args.share_input_output_embed and args.decoder_out_embed_dim != args.decoder_embed_dim:
            raise ConfigError(
                f"{key('model.share_input_output_embed')} requires {key('model.decoder_out_embed_dim')} "
                f"({args.decoder_out_embed_dim}) to match {key('model.decoder_embed_dim')} ({args.decoder_embed_dim})"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "FConvModel":
        cls.check_config(cfg)
        args = filled_args(cfg, FConvConfig, base_architecture)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        decoder_layers = conv_spec(args.decoder_layers, "model.decoder_layers")
        encoder = FConvEncoder(
            dictionary=src_dict,
            embed_dim=args.encoder_embed_dim,
            embed_dict=load_embed_dict(
                args.encoder_embed_path, src_dict, args.encoder_embed_dim, "model.encoder_embed_path"
            ),
            convolutions=conv_spec(args.encoder_layers, "model.encoder_layers"),
            dropout=args.dropout,
            max_positions=check_positions(
                args.get("max_source_positions") or DEFAULT_MAX_POSITIONS, src_dict.pad(), "task.max_source_positions"
            ),
        )
        decoder = FConvDecoder(
            dictionary=tgt_dict,
            embed_dim=args.decoder_embed_dim,
            embed_dict=load_embed_dict(
                args.decoder_embed_path, tgt_dict, args.decoder_embed_dim, "model.decoder_embed_path"
            ),
            convolutions=decoder_layers,
            out_embed_dim=args.decoder_out_embed_dim,
            attention=bool_spec(args.decoder_attention, "model.decoder_attention", len(decoder_layers)),
            dropout=args.dropout,
            max_positions=check_positions(
                args.get("max_target_positions") or DEFAULT_MAX_POSITIONS, tgt_dict.pad(), "task.max_target_positions"
            ),
            share_embed=bool(args.share_input_output_embed),
        )
        return cls(encoder, decoder)


class FConvEncoder(FairseqEncoder):
    """Convolutional encoder of `len(convolutions)` layers, each (out_channels, kernel_width, residual)."""

    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        embed_dict: dict[str, Tensor] | None = None,
        max_positions: int = DEFAULT_MAX_POSITIONS,
        convolutions: ConvSpec = ((512, 3, 1),) * 20,
        dropout: float = 0.1,
    ):
        super().__init__(dictionary)
        self.dropout_module = FairseqDropout(float(dropout), module_name=type(self).__name__)
        # Set by the model: how many decoder layers attend to this encoder's output.
        self.num_attention_layers: int | None = None
        num_embeddings = len(dictionary)
        self.padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(num_embeddings, embed_dim, self.padding_idx)
        if embed_dict:
            self.embed_tokens = utils.load_embedding(embed_dict, self.dictionary, self.embed_tokens)
        self.embed_positions = PositionalEmbedding(max_positions, embed_dim, self.padding_idx)

        convolutions = extend_conv_spec(convolutions)
        in_channels = convolutions[0][0]
        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.projections = nn.ModuleList()
        self.convolutions = nn.ModuleList()
        self.residuals: list[int] = []
        layer_in_channels = [in_channels]
        for out_channels, kernel_size, residual in convolutions:
            residual_dim = out_channels if residual == 0 else layer_in_channels[-residual]
            self.projections.append(Linear(residual_dim, out_channels) if residual_dim != out_channels else None)
            # An odd kernel is centred by the convolution's own padding; an even one is padded in forward.
            padding = kernel_size // 2 if kernel_size % 2 == 1 else 0
            self.convolutions.append(
                ConvTBC(in_channels, out_channels * 2, kernel_size, dropout=dropout, padding=padding)
            )
            self.residuals.append(residual)
            in_channels = out_channels
            layer_in_channels.append(out_channels)
        self.fc2 = Linear(in_channels, embed_dim)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **unused: Any) -> dict[str, Any]:
        """src_tokens: B x S (either padding side: pads are masked, positions count real tokens)."""
        if not self.num_attention_layers:
            raise ValueError("FConvEncoder.num_attention_layers is unset: the model sets it from its decoder")
        x = self.dropout_module(self.embed_tokens(src_tokens) + self.embed_positions(src_tokens))
        input_embedding = x
        x = self.fc1(x)
        encoder_padding_mask = src_tokens.eq(self.padding_idx).t()  # S x B
        if not encoder_padding_mask.any():
            encoder_padding_mask = None
        x = x.transpose(0, 1)  # S x B x C

        residuals = [x]
        for proj, conv, res_layer in zip(self.projections, self.convolutions, self.residuals):
            residual = None
            if res_layer > 0:
                residual = residuals[-res_layer]
                residual = residual if proj is None else proj(residual)
            if encoder_padding_mask is not None:
                x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
            x = self.dropout_module(x)
            kernel = conv.kernel_size[0]
            if kernel % 2 == 0:
                x = F.pad(x, (0, 0, 0, 0, (kernel - 1) // 2, kernel // 2))
            x = F.glu(conv(x), dim=2)
            if residual is not None:
                x = (x + residual) * math.sqrt(0.5)
            residuals.append(x)

        x = self.fc2(x.transpose(1, 0))  # B x S x E
        if encoder_padding_mask is not None:
            encoder_padding_mask = encoder_padding_mask.t()  # B x S
            x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
        # Every attention layer adds its gradient to the encoder's: scaled (backward only) so they sum to 1/2.
        x = GradMultiply.apply(x, 1.0 / (2.0 * self.num_attention_layers))
        y = (x + input_embedding) * math.sqrt(0.5)  # the attention's values
        return {"encoder_out": (x, y), "encoder_padding_mask": encoder_padding_mask}

    def reorder_encoder_out(self, encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
        return reorder_conv_encoder_out(encoder_out, new_order)

    def max_positions(self) -> int:
        return self.embed_positions.max_positions


def reorder_conv_encoder_out(encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
    """Rows `new_order` of a convolutional encoder's output ({"encoder_out": (x, y), "encoder_padding_mask"}),
    batch-first throughout (not the transformer's time-first layout); fconv_self_att's encoder shares it."""
    mask = encoder_out["encoder_padding_mask"]
    return {
        **encoder_out,
        "encoder_out": tuple(eo.index_select(0, new_order) for eo in encoder_out["encoder_out"]),
        "encoder_padding_mask": None if mask is None else mask.index_select(0, new_order),
    }


# Named architectures: each fills only the values the user left unset, then chains to the base.
# Values are fairseq 0.12.2's (fairseq/models/fconv.py).


@register_model_architecture("fconv", "fconv")
def base_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_embed_path = getattr(args, "encoder_embed_path", None)
    args.encoder_layers = getattr(args, "encoder_layers", "[(512, 3)] * 20")
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_embed_path = getattr(args, "decoder_embed_path", None)
    args.decoder_layers = getattr(args, "decoder_layers", "[(512, 3)] * 20")
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    args.decoder_attention = getattr(args, "decoder_attention", "True")
    args.share_input_output_embed = getattr(args, "share_input_output_embed", False)


@register_model_architecture("fconv", "fconv_iwslt_de_en")
def fconv_iwslt_de_en(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.encoder_layers = getattr(args, "encoder_layers", "[(256, 3)] * 4")
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 256)
    args.decoder_layers = getattr(args, "decoder_layers", "[(256, 3)] * 3")
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    base_architecture(args)


@register_model_architecture("fconv", "fconv_wmt_en_ro")
def fconv_wmt_en_ro(args: Any) -> None:
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 512)
    base_architecture(args)


@register_model_architecture("fconv", "fconv_wmt_en_de")
def fconv_wmt_en_de(args: Any) -> None:
    convs = "[(512, 3)] * 9"  # first 9 layers have 512 units
    convs += " + [(1024, 3)] * 4"  # next 4 layers have 1024 units
    convs += " + [(2048, 1)] * 2"  # final 2 layers use 1x1 convolutions
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 768)
    args.encoder_layers = getattr(args, "encoder_layers", convs)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 768)
    args.decoder_layers = getattr(args, "decoder_layers", convs)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 512)
    base_architecture(args)


@register_model_architecture("fconv", "fconv_wmt_en_fr")
def fconv_wmt_en_fr(args: Any) -> None:
    convs = "[(512, 3)] * 6"  # first 6 layers have 512 units
    convs += " + [(768, 3)] * 4"  # next 4 layers have 768 units
    convs += " + [(1024, 3)] * 3"  # next 3 layers have 1024 units
    convs += " + [(2048, 1)] * 1"  # next 1 layer uses 1x1 convolutions
    convs += " + [(4096, 1)] * 1"  # final 1 layer uses 1x1 convolutions
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 768)
    args.encoder_layers = getattr(args, "encoder_layers", convs)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 768)
    args.decoder_layers = getattr(args, "decoder_layers", convs)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 512)
    base_architecture(args)
