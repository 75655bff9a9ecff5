"""fairseq's LightConv/DynamicConv language model (`--arch lightconv_lm*`): the translation model's decoder
(lightconv_decoder.py) without encoder attention and without its final LayerNorm, pre-norm blocks
(fairseq: "the model training is not stable without this"), on token embeddings or adaptive input, with a
full or adaptive softmax (fairseq/models/lightconv_lm.py).

Parameter names are fairseq 0.12.2's (`decoder.embed_tokens`, `decoder.layers.N`, `decoder.embed_out`, ...),
so its checkpoints load one to one.
"""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import FairseqLanguageModel
from fairseq_lite.models.lightconv import (
    DECODER_KERNELS,
    ConvType,
    check_common,
    check_vocabulary,
    filled_args,
    flag_field,
    set_by_architecture,
)
from fairseq_lite.models.lightconv_decoder import DEFAULT_MAX_TARGET_POSITIONS, LightConvDecoder
from fairseq_lite.models.transformer_decoder import Embedding
from fairseq_lite.models.transformer_lm import cutoff_list
from fairseq_lite.modules.adaptive_input import AdaptiveInput
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class LightConvLanguageModelConfig(FairseqDataclass):
    # None for a size below means what fairseq's base architecture fills in: decoder_embed_dim, and for
    # weight_dropout attention_dropout.
    dropout: float = cfg_field(0.1, help="dropout probability")
    attention_dropout: float = cfg_field(0.0, help="dropout probability for attention weights")
    relu_dropout: float = cfg_field(0.0, help="dropout probability after ReLU in FFN")
    input_dropout: float = cfg_field(0.1, help="dropout probability of the inputs")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    decoder_output_dim: int | None = cfg_field(None, help="decoder output dimension")
    decoder_input_dim: int | None = cfg_field(None, help="decoder input dimension")
    decoder_ffn_embed_dim: int = cfg_field(2048, help="decoder embedding dimension for FFN")
    decoder_layers: int = cfg_field(6, help="num decoder layers")
    decoder_attention_heads: int = cfg_field(8, help="num decoder attention heads or LightConv/DynamicConv heads")
    # fairseq's architecture sets it True whatever the flag says; here an explicit false (YAML) is kept.
    decoder_normalize_before: bool | None = cfg_field(None, help="apply layernorm before each decoder block")
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
    decoder_kernel_size_list: list[int] = cfg_field(
        default_factory=lambda: list(DECODER_KERNELS), help='list of kernel size (default: "[3,7,15,31,31,31]")'
    )
    decoder_glu: Any = flag_field(True, help="glu after in proj")
    decoder_conv_type: ConvType = cfg_field("dynamic", help="type of convolution")
    weight_softmax: Any = flag_field(True, help="normalize the convolution kernels with a softmax over their taps")
    weight_dropout: float | None = cfg_field(None, help="dropout probability for conv weights")
    decoder_conv_dim: int | None = set_by_architecture("the width of the decoder's convolutions")
    # options from other parts of the config
    max_target_positions: int | None = II("task.max_target_positions")
    tokens_per_sample: int | None = II("task.tokens_per_sample")


@register_model("lightconv_lm", dataclass=LightConvLanguageModelConfig)
class LightConvLanguageModel(FairseqLanguageModel):
    def __init__(self, decoder: LightConvDecoder):
        super().__init__(decoder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, LightConvLanguageModelConfig, base_lm_architecture)
        check_common(args, ("decoder",))
        if int(args.decoder_input_dim) <= 0:
            raise ConfigError(f"{key('model.decoder_input_dim')} must be positive, got {args.decoder_input_dim}")
        if args.character_embeddings:
            raise ConfigError(
                f"{setting('model.character_embeddings', True)}: fairseq-lite does not implement character "
                f"embeddings (leave it off)"
            )
        if args.share_decoder_input_output_embed and args.decoder_input_dim != args.decoder_output_dim:
            raise ConfigError(
                f"{key('model.share_decoder_input_output_embed')} needs {key('model.decoder_input_dim')} "
                f"({args.decoder_input_dim}) == {key('model.decoder_output_dim')} ({args.decoder_output_dim})"
            )
        if args.adaptive_input:
            cutoff_list(args, "adaptive_input_cutoff")
            if args.share_decoder_input_output_embed:
                raise ConfigError(
                    f"{key('model.share_decoder_input_output_embed')} and {setting('model.adaptive_input', True)} "
                    f"cannot be combined (tie adaptive input to an adaptive softmax with "
                    f"{setting('model.tie_adaptive_weights', True)} instead)"
                )
        if args.tie_adaptive_weights:
            needs = []
            if not args.adaptive_input or args.adaptive_softmax_cutoff is None:
                needs.append(f"{setting('model.adaptive_input', True)} and a {key('model.adaptive_softmax_cutoff')}")
            elif cutoff_list(args, "adaptive_input_cutoff") != cutoff_list(args, "adaptive_softmax_cutoff"):
                needs.append(
                    f"the same {key('model.adaptive_input_cutoff')} and {key('model.adaptive_softmax_cutoff')}"
                )
            if args.adaptive_input_factor != args.adaptive_softmax_factor:
                needs.append(
                    f"the same {key('model.adaptive_input_factor')} and {key('model.adaptive_softmax_factor')}"
                )
            if args.decoder_input_dim != args.decoder_output_dim:
                needs.append(f"{key('model.decoder_input_dim')} == {key('model.decoder_output_dim')}")
            if args.decoder_output_dim != args.decoder_embed_dim:  # fairseq then builds no output projection
                needs.append(f"{key('model.decoder_output_dim')} == {key('model.decoder_embed_dim')}")
            if needs:
                raise ConfigError(f"{key('model.tie_adaptive_weights')} needs {'; '.join(needs)}")
        elif args.tie_adaptive_proj:
            raise ConfigError(f"{key('model.tie_adaptive_proj')} needs {setting('model.tie_adaptive_weights', True)}")

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "LightConvLanguageModel":
        cls.check_config(cfg)
        args = filled_args(cfg, LightConvLanguageModelConfig, base_lm_architecture)
        # fairseq: the model's max_target_positions when set, else the task's tokens_per_sample.
        args.max_target_positions = (
            args.get("max_target_positions") or args.get("tokens_per_sample") or DEFAULT_MAX_TARGET_POSITIONS
        )
        dictionary = task.source_dictionary
        check_vocabulary(args, len(dictionary))
        if args.adaptive_input:
            # The bands are decoder_input_dim wide at most and come out decoder_embed_dim wide.
            embed_tokens: Any = AdaptiveInput(
                len(dictionary),
                dictionary.pad(),
                args.decoder_input_dim,
                args.adaptive_input_factor,
                args.decoder_embed_dim,
                cutoff_list(args, "adaptive_input_cutoff"),
            )
        else:
            embed_tokens = Embedding(len(dictionary), args.decoder_input_dim, dictionary.pad())
        decoder = LightConvDecoder(args, task.target_dictionary, embed_tokens, no_encoder_attn=True, final_norm=False)
        return cls(decoder)


# Values are fairseq 0.12.2's (fairseq/models/lightconv_lm.py); the kernel list is repeated and checked in
# filled_args (see lightconv.py).


@register_model_architecture("lightconv_lm", "lightconv_lm")
def base_lm_architecture(args: Any) -> None:
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 2048)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", None)
    args.adaptive_softmax_dropout = getattr(args, "adaptive_softmax_dropout", 0)
    args.adaptive_softmax_factor = getattr(args, "adaptive_softmax_factor", 4)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", False)
    args.character_embeddings = getattr(args, "character_embeddings", False)
    args.decoder_output_dim = getattr(args, "decoder_output_dim", args.decoder_embed_dim)
    args.decoder_input_dim = getattr(args, "decoder_input_dim", args.decoder_embed_dim)
    args.decoder_conv_dim = getattr(args, "decoder_conv_dim", args.decoder_embed_dim)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", True)
    args.adaptive_input = getattr(args, "adaptive_input", False)
    args.adaptive_input_factor = getattr(args, "adaptive_input_factor", 4)
    args.adaptive_input_cutoff = getattr(args, "adaptive_input_cutoff", None)
    args.tie_adaptive_weights = getattr(args, "tie_adaptive_weights", False)
    args.tie_adaptive_proj = getattr(args, "tie_adaptive_proj", False)
    args.decoder_kernel_size_list = getattr(args, "decoder_kernel_size_list", list(DECODER_KERNELS))
    args.decoder_glu = getattr(args, "decoder_glu", True)
    args.input_dropout = getattr(args, "input_dropout", 0.1)
    # (attention_dropout is the flag's default, 0, in fairseq's args when nothing set it)
    args.weight_dropout = getattr(args, "weight_dropout", getattr(args, "attention_dropout", 0.0))


@register_model_architecture("lightconv_lm", "lightconv_lm_gbw")
def lightconv_lm_gbw(args: Any) -> None:
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.dropout = getattr(args, "dropout", 0.1)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 4096)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 16)
    base_lm_architecture(args)
