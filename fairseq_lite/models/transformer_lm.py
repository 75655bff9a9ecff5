"""The Transformer language model (`--arch transformer_lm*`) and its named architectures."""

import logging
from dataclasses import dataclass
from typing import Any

from omegaconf import II
from torch import nn

from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field, eval_str_list
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import FairseqLanguageModel
from fairseq_lite.models.transformer_decoder import Embedding, TransformerDecoder
from fairseq_lite.modules.adaptive_input import AdaptiveInput
from fairseq_lite.modules.transformer_layer import ACTIVATION_FNS
from fairseq_lite.registry import register_model, register_model_architecture

logger = logging.getLogger(__name__)


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
    # fairseq's defaults: the token embeddings and the output layer stay 512 wide whatever
    # decoder_embed_dim is (then projected), unless a named architecture derives them from it.
    decoder_output_dim: int = cfg_field(512, help="decoder output dimension")
    decoder_input_dim: int = cfg_field(512, help="decoder input dimension")
    decoder_ffn_embed_dim: int = cfg_field(2048, help="decoder embedding dimension for FFN")
    decoder_layers: int = cfg_field(6, help="num decoder layers")
    decoder_attention_heads: int = cfg_field(8, help="num decoder attention heads")
    decoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each decoder block")
    no_decoder_final_norm: bool = cfg_field(False, help="don't add an extra layernorm after the last decoder block")
    adaptive_softmax_cutoff: str | None = cfg_field(
        None, help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion"
    )
    adaptive_softmax_dropout: float = cfg_field(0.0, help="sets adaptive softmax dropout for the tail projections")
    adaptive_softmax_factor: float = cfg_field(4.0, help="adaptive input factor")
    no_token_positional_embeddings: bool = cfg_field(
        False, help="if set, disables positional embeddings (outside self attention)"
    )
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    character_embeddings: bool = cfg_field(
        False, help="if set, uses character embedding convolutions to produce token embeddings (not implemented)"
    )
    character_filters: str = cfg_field(
        "[(1, 64), (2, 128), (3, 192), (4, 256), (5, 256), (6, 256), (7, 256)]", help="size of character embeddings"
    )
    character_embedding_dim: int = cfg_field(4, help="size of character embeddings")
    char_embedder_highway_layers: int = cfg_field(2, help="number of highway layers for character token embeddder")
    adaptive_input: bool = cfg_field(False, help="if set, uses adaptive input")
    adaptive_input_factor: float = cfg_field(4.0, help="adaptive input factor")
    adaptive_input_cutoff: str | None = cfg_field(None, help="comma separated list of adaptive input cutoff points.")
    tie_adaptive_weights: bool = cfg_field(
        False, help="if set, ties the weights of adaptive softmax and adaptive input"
    )
    tie_adaptive_proj: bool = cfg_field(
        False, help="if set, ties the projection weights of adaptive softmax and adaptive input"
    )
    decoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the decoder")
    decoder_layerdrop: float = cfg_field(0.0, help="LayerDrop probability for decoder")
    decoder_layers_to_keep: str | None = cfg_field(
        None, help="which layers to *keep* when pruning as a comma-separated list (not implemented)"
    )
    layernorm_embedding: bool = cfg_field(False, help="add layernorm to embedding")
    no_scale_embedding: bool = cfg_field(False, help="if True, dont scale embeddings")
    checkpoint_activations: bool = cfg_field(False, help="checkpoint activations at each layer")
    quant_noise_pq: float = cfg_field(0.0, help="iterative PQ quantization noise at training time (not implemented)")
    quant_noise_pq_block_size: int = cfg_field(8, help="block size of quantization noise at training time")
    quant_noise_scalar: float = cfg_field(
        0.0, help="scalar quantization noise and scalar quantization at training time (not implemented)"
    )
    # options from other parts of the config
    add_bos_token: bool = II("task.add_bos_token")
    tokens_per_sample: int = II("task.tokens_per_sample")
    max_target_positions: int | None = II("task.tokens_per_sample")


# fairseq options that change the trained network and are not implemented here, with their "off" value:
# fairseq's own YAML lists them, so they parse, and anything but "off" is a one-line error.
NOT_IMPLEMENTED = {
    "character_embeddings": False,
    "decoder_layers_to_keep": None,
    "quant_noise_pq": 0.0,
    "quant_noise_scalar": 0.0,
}


def cutoff_list(cfg: Any, name: str) -> list[int]:
    value = getattr(cfg, name)
    try:
        cutoff = eval_str_list(value, type=int) if not isinstance(value, str) or value.strip() else None
    except ValueError:
        cutoff = None
    if not cutoff:
        raise ConfigError(
            f"{setting('model.' + name, repr(value))} must be a comma separated list of numbers, e.g. '20000,60000'"
        )
    if any(b <= a for a, b in zip(cutoff, cutoff[1:])) or cutoff[0] <= 0:
        raise ConfigError(f"{setting('model.' + name, repr(value))} must be increasing positive numbers")
    return cutoff


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
        for name in ("decoder_input_dim", "decoder_output_dim"):
            if getattr(cfg, name) is not None and getattr(cfg, name) <= 0:
                raise ConfigError(f"{key('model.' + name)} must be positive, got {getattr(cfg, name)}")
        input_dim, output_dim = input_output_dims(cfg)
        if cfg.share_decoder_input_output_embed and input_dim != output_dim:
            raise ConfigError(
                f"{key('model.share_decoder_input_output_embed')} needs {key('model.decoder_input_dim')} "
                f"({input_dim}) == {key('model.decoder_output_dim')} ({output_dim})"
            )
        for name in ("dropout", "attention_dropout", "activation_dropout", "relu_dropout", "decoder_layerdrop"):
            if not 0.0 <= getattr(cfg, name) < 1.0:
                raise ConfigError(f"{key('model.' + name)} must be in [0, 1), got {getattr(cfg, name)}")
        for name, off in NOT_IMPLEMENTED.items():
            if getattr(cfg, name) not in (off, None):
                raise ConfigError(
                    f"{setting('model.' + name, getattr(cfg, name))}: fairseq-lite does not implement this option "
                    f"(leave it at {off})"
                )
        cls._check_adaptive(cfg, input_dim, output_dim)

    @staticmethod
    def _check_adaptive(cfg: Any, input_dim: int, output_dim: int) -> None:
        if cfg.adaptive_input:
            cutoff_list(cfg, "adaptive_input_cutoff")
            if cfg.share_decoder_input_output_embed:
                raise ConfigError(
                    f"{key('model.share_decoder_input_output_embed')} and {setting('model.adaptive_input', True)} "
                    f"cannot be combined (tie adaptive input to an adaptive softmax with "
                    f"{setting('model.tie_adaptive_weights', True)} instead)"
                )
        if cfg.adaptive_softmax_cutoff is not None:
            cutoff_list(cfg, "adaptive_softmax_cutoff")
            if cfg.share_decoder_input_output_embed:
                raise ConfigError(
                    f"{key('model.share_decoder_input_output_embed')} and {key('model.adaptive_softmax_cutoff')} "
                    f"cannot be combined: the adaptive softmax has no single output matrix to share (tie it to "
                    f"adaptive input with {setting('model.tie_adaptive_weights', True)} instead)"
                )
        if cfg.tie_adaptive_weights:
            needs = []
            if not cfg.adaptive_input or cfg.adaptive_softmax_cutoff is None:
                needs.append(f"{setting('model.adaptive_input', True)} and a {key('model.adaptive_softmax_cutoff')}")
            elif cutoff_list(cfg, "adaptive_input_cutoff") != cutoff_list(cfg, "adaptive_softmax_cutoff"):
                needs.append(
                    f"the same {key('model.adaptive_input_cutoff')} and {key('model.adaptive_softmax_cutoff')}"
                )
            if cfg.adaptive_input_factor != cfg.adaptive_softmax_factor:
                needs.append(
                    f"the same {key('model.adaptive_input_factor')} and {key('model.adaptive_softmax_factor')}"
                )
            if input_dim != output_dim:
                needs.append(f"{key('model.decoder_input_dim')} == {key('model.decoder_output_dim')}")
            if output_dim != cfg.decoder_embed_dim:  # fairseq then builds no output projection
                needs.append(f"{key('model.decoder_output_dim')} == {key('model.decoder_embed_dim')}")
            if needs:
                raise ConfigError(f"{key('model.tie_adaptive_weights')} needs {'; '.join(needs)}")
        elif cfg.tie_adaptive_proj:
            raise ConfigError(f"{key('model.tie_adaptive_proj')} needs {setting('model.tie_adaptive_weights', True)}")

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "TransformerLanguageModel":
        cls.check_config(cfg)
        input_dim, output_dim = input_output_dims(cfg)
        if input_dim != cfg.decoder_embed_dim or output_dim != cfg.decoder_embed_dim:
            logger.info(
                f"model.decoder_input_dim={input_dim} and model.decoder_output_dim={output_dim} with "
                f"model.decoder_embed_dim={cfg.decoder_embed_dim}: the embeddings and the output layer are "
                f"{input_dim}/{output_dim} wide and projected to and from {cfg.decoder_embed_dim}, as fairseq builds "
                f"it (set both to {cfg.decoder_embed_dim} for a model that is {cfg.decoder_embed_dim} wide throughout)"
            )
        dictionary = task.source_dictionary
        for name in ("adaptive_input_cutoff", "adaptive_softmax_cutoff"):
            used = cfg.adaptive_input if name == "adaptive_input_cutoff" else cfg.adaptive_softmax_cutoff is not None
            if used and cutoff_list(cfg, name)[-1] > len(dictionary):
                raise ConfigError(
                    f"{setting('model.' + name, repr(getattr(cfg, name)))}: the last cutoff is larger than the "
                    f"vocabulary ({len(dictionary)} symbols)"
                )
        if cfg.adaptive_input:
            # The bands are decoder_input_dim wide at most and come out decoder_embed_dim wide.
            embed_tokens: nn.Module = AdaptiveInput(
                len(dictionary),
                dictionary.pad(),
                input_dim,
                cfg.adaptive_input_factor,
                cfg.decoder_embed_dim,
                cutoff_list(cfg, "adaptive_input_cutoff"),
            )
        else:
            embed_tokens = Embedding(len(dictionary), input_dim, dictionary.pad())
        decoder = TransformerDecoder(cfg, task.target_dictionary, embed_tokens, no_encoder_attn=True)
        return cls(decoder)


def input_output_dims(cfg: Any) -> tuple[int, int]:
    """decoder_input_dim and decoder_output_dim (a config without them, from older checkpoints: the width)."""
    return cfg.decoder_input_dim or cfg.decoder_embed_dim, cfg.decoder_output_dim or cfg.decoder_embed_dim


# Named architectures: each fills only the values the user left unset, then chains to the base.


@register_model_architecture("transformer_lm", "transformer_lm")
def transformer_lm(args: Any) -> None:
    # In fairseq this name is a no-op: the plain model keeps the config's defaults (post-norm, and
    # 512-wide embeddings and output layer whatever decoder_embed_dim is).
    pass


def base_lm_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 2048)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", None)
    args.adaptive_softmax_dropout = getattr(args, "adaptive_softmax_dropout", 0.0)
    args.adaptive_softmax_factor = getattr(args, "adaptive_softmax_factor", 4.0)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", False)
    args.activation_fn = getattr(args, "activation_fn", "relu")
    args.decoder_layerdrop = getattr(args, "decoder_layerdrop", 0.0)
    args.no_token_positional_embeddings = getattr(args, "no_token_positional_embeddings", False)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    # A named architecture's embeddings and output layer are as wide as the model (fairseq's rule).
    args.decoder_output_dim = getattr(args, "decoder_output_dim", args.decoder_embed_dim)
    args.decoder_input_dim = getattr(args, "decoder_input_dim", args.decoder_embed_dim)
    # fairseq: "Model training is not stable without this" (it even overrides an explicit False;
    # here an explicit value is respected).
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", True)
    args.no_decoder_final_norm = getattr(args, "no_decoder_final_norm", False)
    args.adaptive_input = getattr(args, "adaptive_input", False)
    args.adaptive_input_factor = getattr(args, "adaptive_input_factor", 4.0)
    args.adaptive_input_cutoff = getattr(args, "adaptive_input_cutoff", None)
    args.tie_adaptive_weights = getattr(args, "tie_adaptive_weights", False)
    args.tie_adaptive_proj = getattr(args, "tie_adaptive_proj", False)
    args.no_scale_embedding = getattr(args, "no_scale_embedding", False)
    args.layernorm_embedding = getattr(args, "layernorm_embedding", False)
    args.checkpoint_activations = getattr(args, "checkpoint_activations", False)


@register_model_architecture("transformer_lm", "transformer_lm_big")
def transformer_lm_big(args: Any) -> None:
    args.decoder_layers = getattr(args, "decoder_layers", 12)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 1024)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 4096)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 16)
    base_lm_architecture(args)


@register_model_architecture("transformer_lm", "transformer_lm_wiki103")
@register_model_architecture("transformer_lm", "transformer_lm_baevski_wiki103")
def transformer_lm_baevski_wiki103(args: Any) -> None:
    """Baevski & Auli (2019)'s WikiText-103 model: 16 layers, adaptive input and a tied adaptive softmax."""
    args.decoder_layers = getattr(args, "decoder_layers", 16)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.dropout = getattr(args, "dropout", 0.3)
    args.adaptive_input = getattr(args, "adaptive_input", True)
    args.tie_adaptive_weights = getattr(args, "tie_adaptive_weights", True)
    args.adaptive_input_cutoff = getattr(args, "adaptive_input_cutoff", "20000,60000")
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", "20000,60000")
    args.adaptive_softmax_dropout = getattr(args, "adaptive_softmax_dropout", 0.2)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.activation_dropout = getattr(args, "activation_dropout", 0.1)
    args.no_decoder_final_norm = getattr(args, "no_decoder_final_norm", True)
    args.tie_adaptive_proj = getattr(args, "tie_adaptive_proj", True)
    transformer_lm_big(args)


@register_model_architecture("transformer_lm", "transformer_lm_gbw")
@register_model_architecture("transformer_lm", "transformer_lm_baevski_gbw")
def transformer_lm_baevski_gbw(args: Any) -> None:
    """Baevski & Auli (2019)'s One Billion Word model (use it with adaptive input/softmax cutoffs)."""
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.no_decoder_final_norm = getattr(args, "no_decoder_final_norm", True)
    transformer_lm_big(args)


def _gpt_architecture(args: Any, embed_dim: int, ffn_dim: int, layers: int, heads: int) -> None:
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", ffn_dim)
    args.decoder_layers = getattr(args, "decoder_layers", layers)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", heads)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.activation_fn = getattr(args, "activation_fn", "gelu")
    base_lm_architecture(args)


@register_model_architecture("transformer_lm", "transformer_lm_gpt")
def transformer_lm_gpt(args: Any) -> None:
    _gpt_architecture(args, embed_dim=768, ffn_dim=3072, layers=12, heads=12)


@register_model_architecture("transformer_lm", "transformer_lm_gpt2_small")
def transformer_lm_gpt2_small(args: Any) -> None:
    _gpt_architecture(args, embed_dim=1024, ffn_dim=4096, layers=24, heads=16)


@register_model_architecture("transformer_lm", "transformer_lm_gpt2_medium")
def transformer_lm_gpt2_medium(args: Any) -> None:
    _gpt_architecture(args, embed_dim=1280, ffn_dim=5120, layers=36, heads=20)
