"""The Transformer language model (`--arch transformer_lm*`) and its named architectures."""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.models.fairseq_model import FairseqLanguageModel
from fairseq_lite.models.transformer_decoder import Embedding, TransformerDecoder
from fairseq_lite.modules.transformer_layer import ACTIVATION_FNS
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class TransformerLanguageModelConfig(FairseqDataclass):
    activation_fn: ChoiceEnum(ACTIVATION_FNS) = cfg_field("relu", help="activation function to use")
    dropout: float = cfg_field(0.1, help="dropout probability")
    attention_dropout: float = cfg_field(0.0, help="dropout probability for attention weights")
    activation_dropout: float = cfg_field(0.0, help="dropout probability after activation in FFN.")
    relu_dropout: float = cfg_field(
        0.0, help="dropout probability after activation in FFN (legacy name, used when activation_dropout is 0)"
    )
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    # fairseq defaults these two to 512; None (= decoder_embed_dim) makes
    # `model.decoder_embed_dim=128` alone give a consistent 128-dim model.
    decoder_output_dim: int | None = cfg_field(None, help="decoder output dimension (default: decoder_embed_dim)")
    decoder_input_dim: int | None = cfg_field(None, help="decoder input dimension (default: decoder_embed_dim)")
    decoder_ffn_embed_dim: int = cfg_field(2048, help="decoder embedding dimension for FFN")
    decoder_layers: int = cfg_field(6, help="num decoder layers")
    decoder_attention_heads: int = cfg_field(8, help="num decoder attention heads")
    decoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each decoder block")
    no_decoder_final_norm: bool = cfg_field(False, help="don't add an extra layernorm after the last decoder block")
    no_token_positional_embeddings: bool = cfg_field(
        False, help="if set, disables positional embeddings (outside self attention)"
    )
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    decoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the decoder")
    layernorm_embedding: bool = cfg_field(False, help="add layernorm to embedding")
    no_scale_embedding: bool = cfg_field(False, help="if True, dont scale embeddings")
    checkpoint_activations: bool = cfg_field(False, help="checkpoint activations at each layer")
    # options from other parts of the config
    add_bos_token: bool = II("task.add_bos_token")
    tokens_per_sample: int = II("task.tokens_per_sample")
    max_target_positions: int | None = II("task.tokens_per_sample")


@register_model("transformer_lm", dataclass=TransformerLanguageModelConfig)
class TransformerLanguageModel(FairseqLanguageModel):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        for name in ("decoder_embed_dim", "decoder_ffn_embed_dim", "decoder_layers", "decoder_attention_heads"):
            if getattr(cfg, name) <= 0:
                raise ConfigError(f"{key('model.' + name)} must be positive, got {getattr(cfg, name)}")
        if cfg.decoder_embed_dim % cfg.decoder_attention_heads != 0:
            raise ConfigError(
                f"{key('model.decoder_embed_dim')} ({cfg.decoder_embed_dim}) must be divisible by "
                f"{key('model.decoder_attention_heads')} ({cfg.decoder_attention_heads})"
            )
        input_dim = cfg.decoder_input_dim or cfg.decoder_embed_dim
        output_dim = cfg.decoder_output_dim or cfg.decoder_embed_dim
        if cfg.share_decoder_input_output_embed and input_dim != output_dim:
            raise ConfigError(
                f"{key('model.share_decoder_input_output_embed')} needs {key('model.decoder_input_dim')} "
                f"({input_dim}) == {key('model.decoder_output_dim')} ({output_dim})"
            )
        for name in ("dropout", "attention_dropout", "activation_dropout", "relu_dropout"):
            if not 0.0 <= getattr(cfg, name) < 1.0:
                raise ConfigError(f"{key('model.' + name)} must be in [0, 1), got {getattr(cfg, name)}")

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "TransformerLanguageModel":
        cls.check_config(cfg)
        dictionary = task.target_dictionary
        input_dim = cfg.decoder_input_dim or cfg.decoder_embed_dim
        embed_tokens = Embedding(len(dictionary), input_dim, dictionary.pad())
        decoder = TransformerDecoder(cfg, dictionary, embed_tokens, no_encoder_attn=True)
        return cls(decoder)


# Named architectures: each fills only the values the user left unset, then chains to the base.


@register_model_architecture("transformer_lm", "transformer_lm")
def transformer_lm(args: dict[str, Any]) -> None:
    # In fairseq this name is a no-op: the plain model keeps the config defaults, and those are
    # post-norm, unlike every other named architecture below.
    args.setdefault("decoder_normalize_before", False)
    base_lm_architecture(args)


def base_lm_architecture(args: dict[str, Any]) -> None:
    args.setdefault("dropout", 0.1)
    args.setdefault("attention_dropout", 0.0)
    args.setdefault("decoder_embed_dim", 512)
    args.setdefault("decoder_ffn_embed_dim", 2048)
    args.setdefault("decoder_layers", 6)
    args.setdefault("decoder_attention_heads", 8)
    args.setdefault("decoder_learned_pos", False)
    args.setdefault("activation_fn", "relu")
    args.setdefault("no_token_positional_embeddings", False)
    args.setdefault("share_decoder_input_output_embed", False)
    # fairseq: "Model training is not stable without this" (it even overrides an explicit False;
    # here an explicit value is respected).
    args.setdefault("decoder_normalize_before", True)
    args.setdefault("no_decoder_final_norm", False)
    args.setdefault("no_scale_embedding", False)
    args.setdefault("layernorm_embedding", False)
    args.setdefault("checkpoint_activations", False)


@register_model_architecture("transformer_lm", "transformer_lm_big")
def transformer_lm_big(args: dict[str, Any]) -> None:
    args.setdefault("decoder_layers", 12)
    args.setdefault("decoder_embed_dim", 1024)
    args.setdefault("decoder_ffn_embed_dim", 4096)
    args.setdefault("decoder_attention_heads", 16)
    base_lm_architecture(args)


@register_model_architecture("transformer_lm", "transformer_lm_wiki103")
def transformer_lm_wiki103(args: dict[str, Any]) -> None:
    # fairseq's transformer_lm_baevski_wiki103, minus its adaptive input and adaptive softmax
    # (cutoffs 20000,60000; not implemented here), so it has a full-vocabulary softmax.
    args.setdefault("decoder_layers", 16)
    args.setdefault("decoder_attention_heads", 8)
    args.setdefault("dropout", 0.3)
    args.setdefault("attention_dropout", 0.1)
    args.setdefault("activation_dropout", 0.1)
    args.setdefault("no_decoder_final_norm", True)
    transformer_lm_big(args)


def _gpt_architecture(args: dict[str, Any], embed_dim: int, ffn_dim: int, layers: int, heads: int) -> None:
    args.setdefault("decoder_embed_dim", embed_dim)
    args.setdefault("decoder_ffn_embed_dim", ffn_dim)
    args.setdefault("decoder_layers", layers)
    args.setdefault("decoder_attention_heads", heads)
    args.setdefault("dropout", 0.1)
    args.setdefault("attention_dropout", 0.1)
    args.setdefault("activation_fn", "gelu")
    base_lm_architecture(args)


@register_model_architecture("transformer_lm", "transformer_lm_gpt")
def transformer_lm_gpt(args: dict[str, Any]) -> None:
    _gpt_architecture(args, embed_dim=768, ffn_dim=3072, layers=12, heads=12)


@register_model_architecture("transformer_lm", "transformer_lm_gpt2_small")
def transformer_lm_gpt2_small(args: dict[str, Any]) -> None:
    _gpt_architecture(args, embed_dim=1024, ffn_dim=4096, layers=24, heads=16)


@register_model_architecture("transformer_lm", "transformer_lm_gpt2_medium")
def transformer_lm_gpt2_medium(args: dict[str, Any]) -> None:
    _gpt_architecture(args, embed_dim=1280, ffn_dim=5120, layers=36, heads=20)
