"""fairseq's LightConv and DynamicConv translation model (`--arch lightconv*`; Wu et al., 2019, "Pay Less
Attention with Lightweight and Dynamic Convolutions") and its named architectures.

One model for both papers' networks: `--encoder-conv-type` / `--decoder-conv-type` pick lightweight or
dynamic (the default) convolutions, so fairseq's "dynamicconv" models are `lightconv*` architectures with
the default conv type; fairseq registers no `dynamicconv*` architecture. The encoder (lightconv_encoder.py)
and decoder (lightconv_decoder.py) are stacks of convolution blocks; the decoder attends to the encoder
output. Field and parameter names are fairseq 0.12.2's, so its commands, configs and checkpoints carry over.

A None below means what fairseq's base architecture fills in: the decoder's sizes follow the encoder's, the
convolutions' widths and the decoder's output width follow the embedding sizes, weight_dropout follows
attention_dropout. A kernel size list of one entry is used by every layer.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

from fairseq_lite import utils
from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.dataclass.legacy import NO_FLAG
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import FairseqEncoderDecoderModel
from fairseq_lite.models.lightconv_decoder import LightConvDecoder, LightConvDecoderLayer  # noqa: F401
from fairseq_lite.models.lightconv_encoder import (  # noqa: F401  (fairseq's names, importable from here)
    CONV_TYPES,
    LightConvEncoder,
    LightConvEncoderLayer,
)
from fairseq_lite.models.transformer_decoder import Embedding, Linear  # noqa: F401
from fairseq_lite.models.transformer_lm import cutoff_list
from fairseq_lite.registry import ArchitectureArgs, register_model, register_model_architecture


def parse_flag(value: Any) -> bool:
    """fairseq's `utils.eval_bool` for --encoder-glu, --decoder-glu and --weight-softmax: True/False or 1/0.
    Anything else is an error (fairseq's would read it as False)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1"):
        return True
    if text in ("false", "0"):
        return False
    raise ValueError(f"{value!r} is not True, False, 1 or 0")


def flag_field(default: bool, help: str) -> Any:
    # A flag that takes a value (`--encoder-glu 0`), as fairseq's `type=utils.eval_bool`.
    return cfg_field(default, help=help, legacy_type=parse_flag, metavar="BOOL")


def set_by_architecture(help: str, default: Any = None) -> Any:
    # fairseq's architecture sets it and no flag does: a config field without a flag.
    return cfg_field(default, help=help, **{NO_FLAG: True})


ConvType = ChoiceEnum(list(CONV_TYPES))
ENCODER_KERNELS = [3, 7, 15, 31, 31, 31, 31]
DECODER_KERNELS = [3, 7, 15, 31, 31, 31]


@dataclass
class LightConvConfig(FairseqDataclass):
    dropout: float = cfg_field(0.1, help="dropout probability")
    attention_dropout: float = cfg_field(0.0, help="dropout probability for attention weights")
    relu_dropout: float = cfg_field(0.0, help="dropout probability after ReLU in FFN")
    input_dropout: float = cfg_field(0.1, help="dropout probability of the inputs")
    encoder_embed_path: str | None = cfg_field(None, help="path to pre-trained encoder embedding")
    encoder_embed_dim: int = cfg_field(512, help="encoder embedding dimension")
    encoder_conv_dim: int | None = cfg_field(None, help="width of the encoder's convolutions")
    encoder_ffn_embed_dim: int = cfg_field(2048, help="encoder embedding dimension for FFN")
    encoder_layers: int = cfg_field(7, help="num encoder layers")
    encoder_attention_heads: int = cfg_field(8, help="num encoder attention heads or LightConv/DynamicConv heads")
    encoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each encoder block")
    encoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the encoder")
    decoder_embed_path: str | None = cfg_field(None, help="path to pre-trained decoder embedding")
    decoder_embed_dim: int | None = cfg_field(None, help="decoder embedding dimension")
    decoder_conv_dim: int | None = cfg_field(None, help="width of the decoder's convolutions")
    decoder_ffn_embed_dim: int | None = cfg_field(None, help="decoder embedding dimension for FFN")
    decoder_layers: int = cfg_field(6, help="num decoder layers")
    decoder_attention_heads: int = cfg_field(8, help="num decoder attention heads or LightConv/DynamicConv heads")
    decoder_learned_pos: bool = cfg_field(False, help="use learned positional embeddings in the decoder")
    decoder_normalize_before: bool = cfg_field(False, help="apply layernorm before each decoder block")
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    share_all_embeddings: bool = cfg_field(
        False, help="share encoder, decoder and output embeddings (requires shared dictionary and embed dim)"
    )
    adaptive_softmax_cutoff: str | None = cfg_field(
        None, help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion"
    )
    adaptive_softmax_dropout: float = cfg_field(0.0, help="sets adaptive softmax dropout for the tail projections")
    encoder_kernel_size_list: list[int] = cfg_field(
        default_factory=lambda: list(ENCODER_KERNELS), help='list of kernel size (default: "[3,7,15,31,31,31,31]")'
    )
    decoder_kernel_size_list: list[int] = cfg_field(
        default_factory=lambda: list(DECODER_KERNELS), help='list of kernel size (default: "[3,7,15,31,31,31]")'
    )
    encoder_glu: Any = flag_field(True, help="glu after in proj")
    decoder_glu: Any = flag_field(True, help="glu after in proj")
    encoder_conv_type: ConvType = cfg_field("dynamic", help="type of convolution")
    decoder_conv_type: ConvType = cfg_field("dynamic", help="type of convolution")
    weight_softmax: Any = flag_field(True, help="normalize the convolution kernels with a softmax over their taps")
    weight_dropout: float | None = cfg_field(None, help="dropout probability for conv weights")
    no_token_positional_embeddings: bool = set_by_architecture(
        "if True, disables positional embeddings (outside self attention)", False
    )
    decoder_output_dim: int | None = set_by_architecture(
        "decoder output dimension (extra linear layer if different from decoder embed dim)"
    )
    # options from other parts of the config (fairseq's fallback when the task has none: 1024)
    max_source_positions: int | None = cfg_field(
        "${oc.select:task.max_source_positions,null}", help="max number of tokens in the source sequence"
    )
    max_target_positions: int | None = cfg_field(
        "${oc.select:task.max_target_positions,null}", help="max number of tokens in the target sequence"
    )


def filled_args(cfg: Any, dataclass_type: type, architecture: Any) -> ArchitectureArgs:
    """What fairseq's build_model sees after its base architecture: the config's values with those left unset
    (None) filled by `architecture`; the flags parsed, and a one-entry kernel list repeated for every layer.
    Read-only for the caller's config, which is saved in checkpoints as given."""
    args = ArchitectureArgs()
    for f in dataclasses.fields(dataclass_type):
        value = getattr(cfg, f.name, None)
        if value is not None and f.name != "_name":
            args[f.name] = list(value) if f.name.endswith("_kernel_size_list") else value
    architecture(args)
    for name in ("encoder_glu", "decoder_glu", "weight_softmax"):
        if name in args:
            try:
                args[name] = parse_flag(args[name])
            except ValueError as e:
                raise ConfigError(f"{setting('model.' + name, repr(args[name]))}: {e}") from None
    for side in ("encoder", "decoder"):
        if f"{side}_kernel_size_list" in args:
            args[f"{side}_kernel_size_list"] = kernel_sizes(args, side)
    return args


def kernel_sizes(args: Any, side: str) -> list[int]:
    name, layers = f"{side}_kernel_size_list", int(args[f"{side}_layers"])
    try:
        sizes = [int(k) for k in args[name]]
    except (TypeError, ValueError):
        raise ConfigError(f"{setting('model.' + name, args[name])} must be a list of kernel sizes") from None
    if len(sizes) == 1:
        sizes = sizes * layers
    if len(sizes) != layers:
        raise ConfigError(
            f"{setting('model.' + name, args[name])} has {len(sizes)} kernel sizes for "
            f"{setting(f'model.{side}_layers', layers)}: give one per layer, or one for all"
        )
    if any(k <= 0 for k in sizes):
        raise ConfigError(f"{setting('model.' + name, args[name])}: kernel sizes must be positive")
    return sizes


def check_common(args: Any, sides: tuple[str, ...]) -> None:
    """The checks the translation model and the language model share."""
    for side in sides:
        for name in ("embed_dim", "conv_dim", "ffn_embed_dim", "layers", "attention_heads"):
            if int(args[f"{side}_{name}"]) <= 0:
                raise ConfigError(f"{key(f'model.{side}_{name}')} must be positive, got {args[f'{side}_{name}']}")
        dim, heads = args[f"{side}_conv_dim"], args[f"{side}_attention_heads"]
        if dim % heads != 0:
            # Each head's kernel convolves conv_dim / heads channels.
            raise ConfigError(
                f"{key(f'model.{side}_conv_dim')} ({dim}) must be divisible by "
                f"{key(f'model.{side}_attention_heads')} ({heads})"
            )
    for name in ("dropout", "attention_dropout", "relu_dropout", "input_dropout", "weight_dropout"):
        if not 0.0 <= float(args[name]) < 1.0:
            raise ConfigError(f"{key('model.' + name)} must be in [0, 1), got {args[name]}")
    if int(args.decoder_output_dim) <= 0:
        raise ConfigError(f"{key('model.decoder_output_dim')} must be positive, got {args.decoder_output_dim}")
    if args.get("adaptive_softmax_cutoff") is not None:
        cutoff_list(args, "adaptive_softmax_cutoff")
        if args.share_decoder_input_output_embed or args.get("share_all_embeddings"):
            raise ConfigError(
                f"{key('model.adaptive_softmax_cutoff')} cannot be combined with sharing the decoder's input and "
                f"output embeddings: the adaptive softmax has no single output matrix to share"
            )
    if not 0.0 <= float(args.adaptive_softmax_dropout) < 1.0:
        raise ConfigError(
            f"{key('model.adaptive_softmax_dropout')} must be in [0, 1), got {args.adaptive_softmax_dropout}"
        )


def check_vocabulary(args: Any, vocab_size: int) -> None:
    for name in ("adaptive_softmax_cutoff", "adaptive_input_cutoff"):
        used = args.get(name) is not None and (name != "adaptive_input_cutoff" or args.get("adaptive_input"))
        if used and cutoff_list(args, name)[-1] > vocab_size:
            raise ConfigError(
                f"{setting('model.' + name, repr(args[name]))}: the last cutoff is larger than the vocabulary "
                f"({vocab_size} symbols)"
            )


def embedding_from_file(embed_path: str, dictionary: Any, embed_dim: int, name: str) -> Any:
    """An Embedding (fairseq's init) whose rows for the words the file has are the file's vectors
    (word2vec/GloVe text: a header line, then `word v1 ... vN`)."""
    try:
        embed_dict = utils.parse_embedding(embed_path)
    except OSError as e:
        raise ConfigError(f"{setting(name, embed_path)}: {e.strerror or e}") from None
    wrong = next((w for w, v in embed_dict.items() if v.numel() != embed_dim), None)
    if wrong is not None:
        raise ConfigError(
            f"{setting(name, embed_path)}: the vector of {wrong!r} has {embed_dict[wrong].numel()} values, "
            f"the embedding {embed_dim}"
        )
    return utils.load_embedding(embed_dict, dictionary, Embedding(len(dictionary), embed_dim, dictionary.pad()))


@register_model("lightconv", dataclass=LightConvConfig)
class LightConvModel(FairseqEncoderDecoderModel):
    def __init__(self, encoder: LightConvEncoder, decoder: LightConvDecoder):
        super().__init__(encoder, decoder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, LightConvConfig, base_architecture)
        check_common(args, ("encoder", "decoder"))
        if args.decoder_embed_dim % args.decoder_attention_heads != 0:
            raise ConfigError(
                f"{key('model.decoder_embed_dim')} ({args.decoder_embed_dim}) must be divisible by "
                f"{key('model.decoder_attention_heads')} ({args.decoder_attention_heads}) for the encoder attention"
            )
        if args.share_all_embeddings:
            if args.encoder_embed_dim != args.decoder_embed_dim:
                raise ConfigError(
                    f"{key('model.share_all_embeddings')} requires {key('model.encoder_embed_dim')} "
                    f"({args.encoder_embed_dim}) to match {key('model.decoder_embed_dim')} ({args.decoder_embed_dim})"
                )
            if args.decoder_embed_path and args.decoder_embed_path != args.encoder_embed_path:
                raise ConfigError(
                    f"{key('model.share_all_embeddings')} is not compatible with {key('model.decoder_embed_path')}"
                )
        shares_output = args.share_decoder_input_output_embed or args.share_all_embeddings
        if shares_output and args.decoder_output_dim != args.decoder_embed_dim:
            raise ConfigError(
                f"sharing the decoder's input and output embeddings requires {key('model.decoder_output_dim')} "
                f"({args.decoder_output_dim}) to match {key('model.decoder_embed_dim')} ({args.decoder_embed_dim})"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "LightConvModel":
        cls.check_config(cfg)
        args = filled_args(cfg, LightConvConfig, base_architecture)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        check_vocabulary(args, len(tgt_dict))

        def build_embedding(dictionary: Any, embed_dim: int, path: str | None, name: str) -> Any:
            if path:
                return embedding_from_file(path, dictionary, embed_dim, name)
            return Embedding(len(dictionary), embed_dim, dictionary.pad())

        encoder_embed = build_embedding(
            src_dict, args.encoder_embed_dim, args.encoder_embed_path, "model.encoder_embed_path"
        )
        if args.share_all_embeddings:
            if src_dict != tgt_dict:
                raise ConfigError(
                    f"{key('model.share_all_embeddings')} requires a joined dictionary: binarize with "
                    f"fairseq-preprocess --joined-dictionary"
                )
            decoder_embed = encoder_embed
            args.share_decoder_input_output_embed = True  # as fairseq
        else:
            decoder_embed = build_embedding(
                tgt_dict, args.decoder_embed_dim, args.decoder_embed_path, "model.decoder_embed_path"
            )
        encoder = LightConvEncoder(args, src_dict, encoder_embed)
        decoder = LightConvDecoder(args, tgt_dict, decoder_embed)
        return cls(encoder, decoder)


# Named architectures: each fills only the values the user left unset, then chains to the base.
# Values are fairseq 0.12.2's (fairseq/models/lightconv.py). fairseq's base also sets decoder_input_dim, which
# the translation model never reads (it is no field here), and repeats a one-entry kernel list and checks the
# lists' lengths, which filled_args does here (so that a user's list is checked against the user's layers).


@register_model_architecture("lightconv", "lightconv")
def base_architecture(args: Any) -> None:
    args.encoder_embed_path = getattr(args, "encoder_embed_path", None)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 2048)
    args.encoder_layers = getattr(args, "encoder_layers", 7)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 8)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.encoder_learned_pos = getattr(args, "encoder_learned_pos", False)
    args.decoder_embed_path = getattr(args, "decoder_embed_path", None)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", args.encoder_embed_dim)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", args.encoder_ffn_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 8)
    args.decoder_normalize_before = getattr(args, "decoder_normalize_before", False)
    args.decoder_learned_pos = getattr(args, "decoder_learned_pos", False)
    args.attention_dropout = getattr(args, "attention_dropout", 0.0)
    args.relu_dropout = getattr(args, "relu_dropout", 0.0)
    args.dropout = getattr(args, "dropout", 0.1)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", None)
    args.adaptive_softmax_dropout = getattr(args, "adaptive_softmax_dropout", 0)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.share_all_embeddings = getattr(args, "share_all_embeddings", False)
    args.no_token_positional_embeddings = getattr(args, "no_token_positional_embeddings", False)
    args.decoder_output_dim = getattr(args, "decoder_output_dim", args.decoder_embed_dim)
    args.encoder_conv_dim = getattr(args, "encoder_conv_dim", args.encoder_embed_dim)
    args.decoder_conv_dim = getattr(args, "decoder_conv_dim", args.decoder_embed_dim)
    args.encoder_kernel_size_list = getattr(args, "encoder_kernel_size_list", list(ENCODER_KERNELS))
    args.decoder_kernel_size_list = getattr(args, "decoder_kernel_size_list", list(DECODER_KERNELS))
    args.encoder_glu = getattr(args, "encoder_glu", True)
    args.decoder_glu = getattr(args, "decoder_glu", True)
    args.input_dropout = getattr(args, "input_dropout", 0.1)
    args.weight_dropout = getattr(args, "weight_dropout", args.attention_dropout)


@register_model_architecture("lightconv", "lightconv_iwslt_de_en")
def lightconv_iwslt_de_en(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 1024)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.encoder_layers = getattr(args, "encoder_layers", 7)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 1024)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 6)
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.weight_dropout = getattr(args, "weight_dropout", 0.1)
    args.encoder_glu = getattr(args, "encoder_glu", False)
    args.decoder_glu = getattr(args, "decoder_glu", False)
    args.input_dropout = getattr(args, "input_dropout", 0.0)
    base_architecture(args)


@register_model_architecture("lightconv", "lightconv_wmt_en_de")
def lightconv_wmt_en_de(args: Any) -> None:
    base_architecture(args)


@register_model_architecture("lightconv", "lightconv_wmt_en_de_big")
def lightconv_wmt_en_de_big(args: Any) -> None:
    args.attention_dropout = getattr(args, "attention_dropout", 0.1)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 1024)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 4096)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 16)
    args.encoder_normalize_before = getattr(args, "encoder_normalize_before", False)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 1024)
    args.decoder_ffn_embed_dim = getattr(args, "decoder_ffn_embed_dim", 4096)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 16)
    args.dropout = getattr(args, "dropout", 0.3)
    base_architecture(args)


@register_model_architecture("lightconv", "lightconv_wmt_en_fr_big")
def lightconv_wmt_en_fr_big(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    lightconv_wmt_en_de_big(args)


@register_model_architecture("lightconv", "lightconv_wmt_zh_en_big")
def lightconv_wmt_zh_en_big(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.2)
    args.attention_dropout = getattr(args, "attention_dropout", 0.2)
    args.weight_dropout = getattr(args, "weight_dropout", 0.2)
    lightconv_wmt_en_de_big(args)
