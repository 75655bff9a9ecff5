"""fairseq's convolutional model with self-attention (`--arch fconv_self_att*`; Fan et al., 2018, "Hierarchical
Neural Story Generation", examples/stories): fconv's encoder and decoder with multi-head attention over the
source, optional gated and downsampled self-attention (the decoder is in fconv_self_att_decoder.py), and
model fusion with a frozen pretrained model of the same kind (--pretrained True --pretrained-checkpoint PATH).

    source -> embed + learned positions -> dropout -> fc1 -> per layer: mask pads -> dropout -> convolution
           (padded to keep the length) -> GLU -> [self-attention] -> (x + layer input) * sqrt(0.5)
           -> fc2 -> zero pads -> keys (gradient scaled by 1 / (2 x attention layers)), values (+ input embedding)

The encoder is always inside a CompositeEncoder, {"encoder": the model's own, "pretrained": the pretrained
model's (fusion only)}, so its parameters are `encoder.encoder.*`, as in fairseq's checkpoints; a fusion model
also holds the pretrained encoder as `pretrained_encoder` and its decoder as `decoder.pretrained_decoder`. The
switches (--self-attention "[True] * 2 + [False]", --project-input True, ...) are read as fairseq evals them, by
fconv_spec.py's evaluator.
"""

import argparse
import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import CheckpointError, ConfigError, key, setting
from fairseq_lite.models.composite_encoder import CompositeEncoder
from fairseq_lite.models.fairseq_model import FairseqEncoder, FairseqEncoderDecoderModel
from fairseq_lite.models.fconv import DEFAULT_MAX_POSITIONS, check_positions, reorder_conv_encoder_out
from fairseq_lite.models.fconv_decoder import ConvSpec
from fairseq_lite.models.fconv_self_att_decoder import (  # noqa: F401  (fairseq's names, importable from here)
    ConvTBC,
    Embedding,
    FConvDecoder,
    Linear,
    LinearizedConv1d,
    PositionalEmbedding,
    SelfAttention,
    expand_bool_array,
)
from fairseq_lite.models.fconv_spec import bool_spec, conv_spec, eval_bool
from fairseq_lite.models.lstm import check_dropouts, check_positive, filled_args
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.grad_multiply import GradMultiply
from fairseq_lite.registry import ARCH_REGISTRY, register_model, register_model_architecture

logger = logging.getLogger(__name__)


@dataclass
class FConvSelfAttConfig(FairseqDataclass):
    dropout: float = cfg_field(0.1, help="dropout probability")
    encoder_embed_dim: int = cfg_field(512, help="encoder embedding dimension")
    encoder_layers: str = cfg_field("[(512, 3)] * 3", help="encoder layers [(dim, kernel_size), ...]")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    decoder_layers: str = cfg_field("[(512, 3)] * 8", help="decoder layers [(dim, kernel_size), ...]")
    decoder_out_embed_dim: int = cfg_field(256, help="decoder output embedding dimension")
    decoder_attention: str = cfg_field("True", help="decoder attention [True, ...]")
    self_attention: str = cfg_field("False", help="decoder self-attention layers, ex: [True] + [False]*5")
    multihead_attention_nheads: int = cfg_field(1, help="Number of heads to use in attention")
    multihead_self_attention_nheads: int = cfg_field(1, help="Number of heads to use in self-attention")
    encoder_attention: str = cfg_field("False", help="encoder attention [True, ...]")
    encoder_attention_nheads: int = cfg_field(1, help="Number of heads to use in encoder attention")
    project_input: str = cfg_field("False", help="Use projections in self-attention [True, ...]")
    gated_attention: str = cfg_field("False", help="Use GLU layers in self-attention projections [True, ...]")
    downsample: str = cfg_field("False", help="Use downsampling in self-attention [True, ...]")
    pretrained_checkpoint: str = cfg_field("", help="path to load checkpoint from pretrained model")
    pretrained: str = cfg_field("False", help="use pretrained model when training [True, ...]")
    # options from other parts of the config: the task's position limits, and its data directory (where a
    # relative --pretrained-checkpoint is also looked for, as fairseq does)
    max_source_positions: int | None = cfg_field(
        "${oc.select:task.max_source_positions,null}", help="max number of tokens in the source sequence"
    )
    max_target_positions: int | None = cfg_field(
        "${oc.select:task.max_target_positions,null}", help="max number of tokens in the target sequence"
    )
    _data: str | None = cfg_field("${oc.select:task.data,null}", help="the task's data directory")


def _switch(args: Any, name: str) -> bool:
    return eval_bool(args[name], f"model.{name}")


def _check_heads(args: Any, embed_name: str, heads_name: str) -> None:
    heads, embed_dim = int(args[heads_name]), int(args[embed_name])
    if heads <= 0 or embed_dim % heads != 0:
        raise ConfigError(
            f"{key('model.' + embed_name)} ({embed_dim}) must be divisible by {key('model.' + heads_name)} ({heads})"
        )


@register_model("fconv_self_att", dataclass=FConvSelfAttConfig)
class FConvModelSelfAtt(FairseqEncoderDecoderModel):
    def __init__(
        self, encoder: "FConvEncoder", decoder: FConvDecoder, pretrained_encoder: CompositeEncoder | None = None
    ):
        super().__init__(encoder, decoder)
        self.encoder.num_attention_layers = sum(layer is not None for layer in decoder.attention)
        self.pretrained_encoder = pretrained_encoder
        encoders = {"encoder": encoder}
        if pretrained_encoder is not None:
            encoders["pretrained"] = pretrained_encoder
        # The decoder reads both encoders' outputs, combined by name.
        self.encoder = CompositeEncoder(encoders)

    @property
    def pretrained(self) -> bool:
        return self.pretrained_encoder is not None

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, FConvSelfAttConfig, base_architecture)
        check_positive(args, ["encoder_embed_dim", "decoder_embed_dim", "decoder_out_embed_dim"])
        check_dropouts(args, ["dropout"])
        if args.encoder_embed_dim != args.decoder_embed_dim:
            # The decoder's attention compares its target embedding with the encoder's outputs.
            raise ConfigError(
                f"{key('model.encoder_embed_dim')} ({args.encoder_embed_dim}) must match "
                f"{key('model.decoder_embed_dim')} ({args.decoder_embed_dim}): the attention compares them"
            )
        encoder_layers = conv_spec(args.encoder_layers, "model.encoder_layers", residuals=False)
        decoder_layers = conv_spec(args.decoder_layers, "model.decoder_layers", residuals=False)
        attention = bool_spec(args.decoder_attention, "model.decoder_attention", len(decoder_layers))
        if not any(attention):
            raise ConfigError(
                f"{setting('model.decoder_attention', repr(args.decoder_attention))}: the model needs attention "
                f"in at least one decoder layer"
            )
        if any(bool_spec(args.self_attention, "model.self_attention", len(decoder_layers))):
            _check_heads(args, "decoder_embed_dim", "multihead_self_attention_nheads")
        if any(bool_spec(args.encoder_attention, "model.encoder_attention", len(encoder_layers))):
            _check_heads(args, "encoder_embed_dim", "encoder_attention_nheads")
        _check_heads(args, "decoder_embed_dim", "multihead_attention_nheads")
        for name in ("project_input", "gated_attention", "downsample", "pretrained"):
            _switch(args, name)
        if _switch(args, "downsample") and not _switch(args, "project_input"):
            # Each downsampled head projects its own keys: without projections there is nothing to attend with.
            raise ConfigError(f"{key('model.downsample')} requires {setting('model.project_input', 'True')}")
        if _switch(args, "pretrained") and not args.pretrained_checkpoint:
            raise ConfigError(f"{setting('model.pretrained', 'True')} requires {key('model.pretrained_checkpoint')}")

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "FConvModelSelfAtt":
        cls.check_config(cfg)
        args = filled_args(cfg, FConvSelfAttConfig, base_architecture)
        pretrained = _switch(args, "pretrained")
        trained_encoder = trained_decoder = None
        if pretrained:
            trained_model = load_pretrained_model(args, task)
            trained_encoder, trained_decoder = trained_model.encoder, trained_model.decoder
            if trained_decoder.fc2.out_features != args.decoder_out_embed_dim:
                # The fusion gates read both models' fc2 outputs side by side.
                pretrained_out = trained_decoder.fc2.out_features
                raise ConfigError(
                    f"{key('model.decoder_out_embed_dim')} ({args.decoder_out_embed_dim}) must match that of the "
                    f"model of {key('model.pretrained_checkpoint')} ({pretrained_out})"
                )
            for param in list(trained_decoder.parameters()) + list(trained_encoder.parameters()):
                param.requires_grad = False  # the pretrained model stays as it was

        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        encoder_layers = conv_spec(args.encoder_layers, "model.encoder_layers", residuals=False)
        decoder_layers = conv_spec(args.decoder_layers, "model.decoder_layers", residuals=False)
        encoder = FConvEncoder(
            src_dict,
            embed_dim=args.encoder_embed_dim,
            convolutions=encoder_layers,
            dropout=args.dropout,
            max_positions=check_positions(
                args.get("max_source_positions") or DEFAULT_MAX_POSITIONS, src_dict.pad(), "task.max_source_positions"
            ),
            attention=bool_spec(args.encoder_attention, "model.encoder_attention", len(encoder_layers)),
            attention_nheads=args.encoder_attention_nheads,
        )
        decoder = FConvDecoder(
            tgt_dict,
            embed_dim=args.decoder_embed_dim,
            convolutions=decoder_layers,
            out_embed_dim=args.decoder_out_embed_dim,
            attention=bool_spec(args.decoder_attention, "model.decoder_attention", len(decoder_layers)),
            dropout=args.dropout,
            max_positions=check_positions(
                args.get("max_target_positions") or DEFAULT_MAX_POSITIONS, tgt_dict.pad(), "task.max_target_positions"
            ),
            selfattention=bool_spec(args.self_attention, "model.self_attention", len(decoder_layers)),
            attention_nheads=args.multihead_attention_nheads,
            selfattention_nheads=args.multihead_self_attention_nheads,
            project_input=_switch(args, "project_input"),
            gated_attention=_switch(args, "gated_attention"),
            downsample=_switch(args, "downsample"),
            pretrained=pretrained,
            trained_decoder=trained_decoder,
        )
        return cls(encoder, decoder, trained_encoder)


def load_pretrained_model(args: Any, task: Any) -> "FConvModelSelfAtt":
    """The model of --pretrained-checkpoint (looked for in the data directory too), built for `task` from the
    checkpoint's own config and loaded with its weights. The file may be fairseq-lite's or fairseq 0.12.2's:
    both keep the model's config under cfg["model"] (fairseq's an argparse Namespace) and its weights under
    "model", the same names (fairseq's `.version` markers aside). Read here, not through fairseq_lite.checkpoint,
    which sits above the models."""
    path = args.pretrained_checkpoint
    if not os.path.exists(path) and args.get("_data"):
        in_data = os.path.join(str(args._data).split(os.pathsep)[0], path)
        if os.path.exists(in_data):
            path = in_data
    if not os.path.isfile(path):
        raise ConfigError(f"{setting('model.pretrained_checkpoint', path)}: no such file (nor in the data directory)")
    logger.info(f"loading pretrained model from {path}")
    where = setting("model.pretrained_checkpoint", path)
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):  # fairseq's config: plain data
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"{where}: cannot read it ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from e
    stored = (state.get("cfg") or {}).get("model") if isinstance(state, dict) else None
    stored = vars(stored) if isinstance(stored, argparse.Namespace) else stored
    name = stored.get("_name") if isinstance(stored, Mapping) else None
    if name != "fconv_self_att" and not (name in ARCH_REGISTRY and ARCH_REGISTRY[name].model == "fconv_self_att"):
        raise CheckpointError(f"{where} holds no fconv_self_att model (its model: {name!r}); fusion needs one")
    if state.get("model") is None:
        raise CheckpointError(f"{where} keeps its weights in shards; consolidate it into one file first")
    fields = {f.name for f in dataclasses.fields(FConvSelfAttConfig)} - {"_name", "_data"}
    values = {k: v for k, v in stored.items() if k in fields}
    cfg = OmegaConf.merge(OmegaConf.structured(FConvSelfAttConfig), values)
    model = FConvModelSelfAtt.build_model(cfg, task)
    weights = {k: v for k, v in state["model"].items() if not k.endswith(".version")}
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: its weights do not fit its config ({str(e).splitlines()[0]})") from e
    return model


class FConvEncoder(FairseqEncoder):
    """Convolutional encoder, each layer (out_channels, kernel_width), optionally with self-attention."""

    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        max_positions: int = DEFAULT_MAX_POSITIONS,
        convolutions: ConvSpec = ((512, 3, 1),) * 20,
        dropout: float = 0.1,
        attention: bool | list[bool] = False,
        attention_nheads: int = 1,
    ):
        super().__init__(dictionary)
        self.dropout_module = FairseqDropout(float(dropout), module_name=type(self).__name__)
        self.num_attention_layers: int | None = None  # set by the model
        num_embeddings = len(dictionary)
        self.padding_idx = dictionary.pad()
        self.embed_tokens = Embedding(num_embeddings, embed_dim, self.padding_idx)
        self.embed_positions = PositionalEmbedding(max_positions, embed_dim, self.padding_idx)
        attention = expand_bool_array(attention, len(convolutions))

        in_channels = convolutions[0][0]
        self.fc1 = Linear(embed_dim, in_channels, dropout=dropout)
        self.projections = nn.ModuleList()
        self.convolutions = nn.ModuleList()
        self.attention = nn.ModuleList()
        self.attproj = nn.ModuleList()  # fairseq's, always empty
        for i, (out_channels, kernel_size, *_) in enumerate(convolutions):
            self.projections.append(Linear(in_channels, out_channels) if in_channels != out_channels else None)
            self.convolutions.append(ConvTBC(in_channels, out_channels * 2, kernel_size, dropout=dropout))
            self.attention.append(SelfAttention(out_channels, embed_dim, attention_nheads) if attention[i] else None)
            in_channels = out_channels
        self.fc2 = Linear(in_channels, embed_dim)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **unused: Any) -> dict[str, Any]:
        if not self.num_attention_layers:
            raise ValueError("FConvEncoder.num_attention_layers is unset: the model sets it from its decoder")
        x = self.dropout_module(self.embed_tokens(src_tokens) + self.embed_positions(src_tokens))
        input_embedding = x
        x = self.fc1(x)
        encoder_padding_mask = src_tokens.eq(self.padding_idx).t()  # S x B
        if not encoder_padding_mask.any():
            encoder_padding_mask = None
        x = x.transpose(0, 1)  # S x B x C

        for proj, conv, attention in zip(self.projections, self.convolutions, self.attention):
            residual = x if proj is None else proj(x)
            if encoder_padding_mask is not None:
                x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
            x = self.dropout_module(x)
            kernel = conv.kernel_size[0]
            x = F.pad(x, (0, 0, 0, 0, (kernel - 1) // 2, kernel // 2))  # keep the length
            x = F.glu(conv(x), dim=2)
            if attention is not None:
                x = attention(x)
            x = (x + residual) * math.sqrt(0.5)

        x = self.fc2(x.transpose(1, 0))  # B x S x E
        if encoder_padding_mask is not None:
            encoder_padding_mask = encoder_padding_mask.t()  # B x S
            x = x.masked_fill(encoder_padding_mask.unsqueeze(-1), 0)
        x = GradMultiply.apply(x, 1.0 / (2.0 * self.num_attention_layers))
        y = (x + input_embedding) * math.sqrt(0.5)
        return {"encoder_out": (x, y), "encoder_padding_mask": encoder_padding_mask}

    def reorder_encoder_out(self, encoder_out: dict[str, Any], new_order: Tensor) -> dict[str, Any]:
        return reorder_conv_encoder_out(encoder_out, new_order)

    def max_positions(self) -> int:
        return self.embed_positions.max_positions


# Values are fairseq 0.12.2's (fairseq/models/fconv_self_att.py).


@register_model_architecture("fconv_self_att", "fconv_self_att")
def base_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_layers = getattr(args, "encoder_layers", "[(512, 3)] * 3")
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_layers = getattr(args, "decoder_layers", "[(512, 3)] * 8")
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    args.decoder_attention = getattr(args, "decoder_attention", "True")
    args.self_attention = getattr(args, "self_attention", "False")
    args.encoder_attention = getattr(args, "encoder_attention", "False")
    args.multihead_attention_nheads = getattr(args, "multihead_attention_nheads", 1)
    args.multihead_self_attention_nheads = getattr(args, "multihead_self_attention_nheads", 1)
    args.encoder_attention_nheads = getattr(args, "encoder_attention_nheads", 1)
    args.project_input = getattr(args, "project_input", "False")
    args.gated_attention = getattr(args, "gated_attention", "False")
    args.downsample = getattr(args, "downsample", "False")
    args.pretrained_checkpoint = getattr(args, "pretrained_checkpoint", "")
    args.pretrained = getattr(args, "pretrained", "False")


@register_model_architecture("fconv_self_att", "fconv_self_att_wp")
def fconv_self_att_wp(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.encoder_layers = getattr(args, "encoder_layers", "[(128, 3)] * 2 + [(512,3)] * 1")
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 256)
    args.decoder_layers = getattr(args, "decoder_layers", "[(512, 4)] * 4 + [(768, 4)] * 2 + [(1024, 4)] * 1")
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    args.self_attention = getattr(args, "self_attention", "True")
    args.multihead_self_attention_nheads = getattr(args, "multihead_self_attention_nheads", 4)
    args.project_input = getattr(args, "project_input", "True")
    args.gated_attention = getattr(args, "gated_attention", "True")
    args.downsample = getattr(args, "downsample", "True")
    base_architecture(args)
