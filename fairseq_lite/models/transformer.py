"""The encoder-decoder Transformer (`--arch transformer*`) and its named architectures.

Field names are fairseq's flat legacy names (encoder_embed_dim, decoder_layers, ...), so
`fairseq-train --arch transformer_iwslt_de_en --encoder-layers 3` and
`model=transformer/transformer_iwslt_de_en model.encoder_layers=3` mean the same thing.
"""

import argparse
import dataclasses
from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.dataclass.utils import is_interpolation
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.models.fairseq_model import FairseqEncoderDecoderModel
from fairseq_lite.models.transformer_decoder import Embedding, TransformerDecoder
from fairseq_lite.models.transformer_encoder import TransformerEncoder
from fairseq_lite.modules.transformer_layer import ACTIVATION_FNS
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class TransformerConfig(FairseqDataclass):
    activation_fn: ChoiceEnum(ACTIVATION_FNS) = cfg_field("relu", help="activation function to use")
    dropout: float = cfg_field(0.1, help="dropout probability")
    attention_dropout: float = cfg_field(0.0, help="dropout probability for attention weights")
    activation_dropout: float = cfg_field(0.0, help="dropout probability after activation in FFN.")
    relu_dropout: float = cfg_field(
        0.0, help="dropout probability after activation in FFN (legacy name, used when activation_dropout is 0)"
    )
    encoder_embed_dim: int = cfg_field(512, help="encoder embedding dimension")
    encoder_ffn_embed_dim: int = cfg_field(2048, help="encoder embedding dimension for FFN")
    encoder_layers: int = cfg_field(6, help="num encoder layers")
    encoder_attention_heads: int = cfg_field(8, help="num encoder attention heads")
    encoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each encoder block")
    encoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the encoder")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    # fairseq fills this with decoder_embed_dim in its architectures; None means the same here,
    # so that `model.decoder_embed_dim=128` alone gives a consistent model.
    decoder_output_dim: int | None = cfg_field(
        None, help="decoder output dimension (extra linear layer if different from decoder embed dim)"
    )
    decoder_ffn_embed_dim: int = cfg_field(2048, help="decoder embedding dimension for FFN")
    decoder_layers: int = cfg_field(6, help="num decoder layers")
    decoder_attention_heads: int = cfg_field(8, help="num decoder attention heads")
    decoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each decoder block")
    decoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the decoder")
    no_decoder_final_norm: bool = cfg_field(False, help="don't add an extra layernorm after the last decoder block")
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    share_all_embeddings: bool = cfg_field(
        False, help="share encoder, decoder and output embeddings (requires shared dictionary and embed dim)"
    )
    no_token_positional_embeddings: bool = cfg_field(
        False, help="if True, disables positional embeddings (outside self attention)"
    )
    no_cross_attention: bool = cfg_field(False, help="do not perform cross-attention")
    layernorm_embedding: bool = cfg_field(False, help="add layernorm to embedding")
    no_scale_embedding: bool = cfg_field(False, help="if True, dont scale embeddings")
    checkpoint_activations: bool = cfg_field(
        False,
        help="checkpoint activations at each layer, which saves GPU memory usage at the cost of "
        "some additional compute",
    )
    # options from other parts of the config
    max_source_positions: int | None = II("task.max_source_positions")
    max_target_positions: int | None = II("task.max_target_positions")


class _WithOverrides:
    """Read-only view of a config with a few values replaced, so that building a model never
    writes into the user's config (which is saved in checkpoints as given)."""

    def __init__(self, cfg: Any, **overrides: Any):
        self._cfg = cfg
        self._overrides = overrides

    def __getattr__(self, name: str) -> Any:
        if name in self._overrides:
            return self._overrides[name]
        return getattr(self._cfg, name)


@register_model("transformer", dataclass=TransformerConfig)
class TransformerModel(FairseqEncoderDecoderModel):
    """Transformer from "Attention Is All You Need" (Vaswani et al., 2017)."""

    def __init__(self, cfg: Any, encoder: TransformerEncoder, decoder: TransformerDecoder):
        super().__init__(encoder, decoder)
        self.cfg = cfg
        self.args = cfg  # fairseq's legacy TransformerModel keeps its `args`

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        # A subclass in the add_args style leaves unset what its architecture does not fill: those get
        # the config's defaults when it is built (complete_legacy_args), so they are checked as such here.
        unset = {f.name: TransformerConfig.field_default(f.name) for f in dataclasses.fields(TransformerConfig)}
        cfg = _WithOverrides(
            cfg,
            **{
                name: default
                for name, default in unset.items()
                if getattr(cfg, name, None) is None and not is_interpolation(default)
            },
        )
        for side in ("encoder", "decoder"):
            for name in ("embed_dim", "ffn_embed_dim", "layers", "attention_heads"):
                value = getattr(cfg, f"{side}_{name}")
                if value <= 0:
                    raise ConfigError(f"{key(f'model.{side}_{name}')} must be positive, got {value}")
            dim, heads = getattr(cfg, f"{side}_embed_dim"), getattr(cfg, f"{side}_attention_heads")
            if dim % heads != 0:
                raise ConfigError(
                    f"{key(f'model.{side}_embed_dim')} ({dim}) must be divisible by "
                    f"{key(f'model.{side}_attention_heads')} ({heads})"
                )
        for name in ("dropout", "attention_dropout", "activation_dropout", "relu_dropout"):
            if not 0.0 <= getattr(cfg, name) < 1.0:
                raise ConfigError(f"{key('model.' + name)} must be in [0, 1), got {getattr(cfg, name)}")
        output_dim = cfg.decoder_output_dim or cfg.decoder_embed_dim
        shares_output = cfg.share_decoder_input_output_embed or cfg.share_all_embeddings
        if shares_output and output_dim != cfg.decoder_embed_dim:
            raise ConfigError(
                f"sharing the decoder's input and output embeddings needs {key('model.decoder_output_dim')} "
                f"({output_dim}) == {key('model.decoder_embed_dim')} ({cfg.decoder_embed_dim})"
            )
        if cfg.share_all_embeddings and cfg.encoder_embed_dim != cfg.decoder_embed_dim:
            raise ConfigError(
                f"{key('model.share_all_embeddings')} requires {key('model.encoder_embed_dim')} "
                f"({cfg.encoder_embed_dim}) to match {key('model.decoder_embed_dim')} ({cfg.decoder_embed_dim})"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "TransformerModel":
        if isinstance(cfg, argparse.Namespace):
            cfg = complete_legacy_args(cfg)
        cls.check_config(cfg)
        if cfg.share_all_embeddings and task.source_dictionary != task.target_dictionary:
            raise ConfigError(
                f"{key('model.share_all_embeddings')} requires a joined dictionary: binarize with "
                f"fairseq-preprocess --joined-dictionary"
            )
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        build_cfg = cfg
        encoder_embed_tokens = cls.build_embedding(cfg, src_dict, cfg.encoder_embed_dim)
        if cfg.share_all_embeddings:
            decoder_embed_tokens = encoder_embed_tokens
            # Sharing everything implies tying the decoder's output projection too (as fairseq).
            build_cfg = _WithOverrides(cfg, share_decoder_input_output_embed=True)
        else:
            decoder_embed_tokens = cls.build_embedding(cfg, tgt_dict, cfg.decoder_embed_dim)
        encoder = cls.build_encoder(build_cfg, src_dict, encoder_embed_tokens)
        decoder = cls.build_decoder(build_cfg, tgt_dict, decoder_embed_tokens)
        return cls(cfg, encoder, decoder)

    @classmethod
    def build_embedding(cls, cfg: Any, dictionary: Any, embed_dim: int) -> Any:
        return Embedding(len(dictionary), embed_dim, dictionary.pad())

    @classmethod
    def build_encoder(cls, cfg: Any, src_dict: Any, embed_tokens: Any) -> TransformerEncoder:
        return TransformerEncoder(cfg, src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, cfg: Any, tgt_dict: Any, embed_tokens: Any) -> TransformerDecoder:
        return TransformerDecoder(cfg, tgt_dict, embed_tokens, no_encoder_attn=bool(cfg.no_cross_attention))


def complete_legacy_args(args: argparse.Namespace) -> argparse.Namespace:
    """What fairseq's legacy TransformerModel.build_model does with the `args` of a subclass written in the
    add_args style: base_architecture fills what is unset, then the config's defaults whatever is still
    missing (in place, as fairseq: the subclass sees the values its model was built with)."""
    base_architecture(args)
    for f in dataclasses.fields(TransformerConfig):
        if not hasattr(args, f.name):
            default = TransformerConfig.field_default(f.name)
            setattr(args, f.name, None if is_interpolation(default) else default)
    return args


# Named architectures: each fills only the values the user left unset, then chains to the base.
# Values are fairseq 0.12.2's (fairseq/models/transformer/transformer_legacy.py).


@register_model_architecture("transformer", "transformer")
def base_architecture(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 2048)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 8)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.encoder_learned_pos = getattr(args, "encoder_learned_pos", False)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", False)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", False)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.activation_dropout = getattr(args, "activation_dropout", 0.0)
    args.activation_fn = getattr(args, "activation_fn", "relu")
    args.dropout = getattr(args, "dropout", 0.1)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.share_all_embeddings = getattr(args, "share_all_embeddings", False)
    args.no_token_positional_embeddings = getattr(args, "no_token_positional_embeddings", False)
    args.no_cross_attention = getattr(args, "no_cross_attention", False)
    args.no_scale_embedding = getattr(args, "no_scale_embedding", False)
    args.layernorm_embedding = getattr(args, "layernorm_embedding", False)
    args.checkpoint_activations = getattr(args, "checkpoint_activations", False)


@register_model_architecture("transformer", "transformer_tiny")
def transformer_tiny(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 64)
    args.encoder_layers = getattr(args, "encoder_layers", 2)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 2)
    args.decoder_layers = getattr(args, "decoder_layers", 2)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 2)
    base_architecture(args)


tiny_architecture = transformer_tiny  # fairseq's name for the function


@register_model_architecture("transformer", "transformer_iwslt_de_en")
def transformer_iwslt_de_en(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 1024)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.encoder_layers = getattr(args, "encoder_layers", 6)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 1024)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    base_architecture(args)


@register_model_architecture("transformer", "transformer_wmt_en_de")
def transformer_wmt_en_de(args: Any) -> None:
    base_architecture(args)


@register_model_architecture("transformer", "transformer_vaswani_wmt_en_de_big")
def transformer_vaswani_wmt_en_de_big(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 1024)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 4096)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 16)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 1024)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 4096)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 16)
    args.dropout = getattr(args, "dropout", 0.3)
    base_architecture(args)


@register_model_architecture("transformer", "transformer_vaswani_wmt_en_fr_big")
def transformer_vaswani_wmt_en_fr_big(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    transformer_vaswani_wmt_en_de_big(args)


@register_model_architecture("transformer", "transformer_wmt_en_de_big")
def transformer_wmt_en_de_big(args: Any) -> None:
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    transformer_vaswani_wmt_en_de_big(args)


@register_model_architecture("transformer", "transformer_wmt_en_de_big_t2t")
def transformer_wmt_en_de_big_t2t(args: Any) -> None:
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", True)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", True)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.activation_dropout = getattr(args, "activation_dropout", 0.1)
    transformer_vaswani_wmt_en_de_big(args)
