"""fairseq's convolutional language model (`--arch fconv_lm*`; Dauphin et al., 2017, "Language Modeling with
Gated Convolutional Networks"): the fconv decoder without an encoder, attention or positional embeddings
(fairseq/models/fconv_lm.py).

    tokens -> embed -> dropout -> fc1 -> per layer: dropout -> causal convolution -> GLU -> residual
           -> fc2 -> dropout -> fc3 (vocabulary logits), or an adaptive softmax's features

The adaptive softmax is built under the adaptive_loss criterion only (fairseq's rule), with the cutoffs of
--adaptive-softmax-cutoff (the wikitext-103 and GBW architectures set them). Parameter names are fairseq's
(`decoder.convolutions.N.weight_g`, `decoder.adaptive_softmax.head.weight`, ...), so its checkpoints load.
"""

from dataclasses import dataclass
from typing import Any

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import FairseqLanguageModel
from fairseq_lite.models.fconv_decoder import FConvDecoder
from fairseq_lite.models.fconv_spec import bool_spec, conv_spec
from fairseq_lite.models.lstm import CRITERION, adaptive_cutoff, check_dropouts, check_positive, filled_args
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class FConvLanguageModelConfig(FairseqDataclass):
    dropout: float = cfg_field(0.1, help="dropout probability")
    decoder_embed_dim: int = cfg_field(128, help="decoder embedding dimension")
    decoder_layers: str = cfg_field("[(1268, 4)] * 13", help="decoder layers [(dim, kernel_size), ...]")
    # fairseq's flag, which its language model never reads (fc2 is as wide as the embedding): taken when it
    # says that, refused otherwise.
    decoder_out_embed_dim: int | None = cfg_field(None, help="decoder output embedding dimension")
    adaptive_softmax_cutoff: str | None = cfg_field(
        None,
        help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion",
    )
    adaptive_softmax_dropout: float = cfg_field(0.0, help="sets adaptive softmax dropout for the tail projections")
    decoder_attention: str = cfg_field("False", help="decoder attention [True, ...]")
    # options from other parts of the config
    _criterion: str | None = cfg_field(
        CRITERION, help="the run's criterion (the adaptive softmax is built for adaptive_loss only)"
    )


@register_model("fconv_lm", dataclass=FConvLanguageModelConfig)
class FConvLanguageModel(FairseqLanguageModel):
    def __init__(self, decoder: FConvDecoder):
        super().__init__(decoder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, FConvLanguageModelConfig, base_lm_architecture)
        check_positive(args, ["decoder_embed_dim"])
        check_dropouts(args, ["dropout", "adaptive_softmax_dropout"])
        layers = conv_spec(args.decoder_layers, "model.decoder_layers")
        if any(bool_spec(args.decoder_attention, "model.decoder_attention", len(layers))):
            raise ConfigError(
                f"{setting('model.decoder_attention', repr(args.decoder_attention))}: a language model has no "
                f"encoder to attend to; use False"
            )
        adaptive_cutoff(args)
        out_dim = args.get("decoder_out_embed_dim")
        if out_dim is not None and out_dim != args.decoder_embed_dim:
            raise ConfigError(
                f"{setting('model.decoder_out_embed_dim', out_dim)}: fconv_lm's output projection is as wide as "
                f"{key('model.decoder_embed_dim')} ({args.decoder_embed_dim}); fairseq ignores this setting"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "FConvLanguageModel":
        cls.check_config(cfg)
        args = filled_args(cfg, FConvLanguageModelConfig, base_lm_architecture)
        dictionary = task.target_dictionary
        layers = conv_spec(args.decoder_layers, "model.decoder_layers")
        decoder = FConvDecoder(
            dictionary=dictionary,
            embed_dim=args.decoder_embed_dim,
            convolutions=layers,
            out_embed_dim=args.decoder_embed_dim,
            attention=False,
            dropout=args.dropout,
            share_embed=False,
            positional_embeddings=False,
            adaptive_softmax_cutoff=adaptive_cutoff(args, len(dictionary)),
            adaptive_softmax_dropout=float(args.adaptive_softmax_dropout),
        )
        return cls(decoder)


# Values are fairseq 0.12.2's (fairseq/models/fconv_lm.py).


@register_model_architecture("fconv_lm", "fconv_lm")
def base_lm_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 128)
    args.decoder_layers = getattr(args, "decoder_layers", "[(1268, 4)] * 13")
    args.decoder_attention = getattr(args, "decoder_attention", "False")
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", None)
    args.adaptive_softmax_dropout = getattr(args, "adaptive_softmax_dropout", 0)


@register_model_architecture("fconv_lm", "fconv_lm_dauphin_wikitext103")
def fconv_lm_dauphin_wikitext103(args: Any) -> None:
    layers = "[(850, 6)] * 3"
    layers += " + [(850, 1)] * 1"
    layers += " + [(850, 5)] * 4"
    layers += " + [(850, 1)] * 1"
    layers += " + [(850, 4)] * 3"
    layers += " + [(1024, 4)] * 1"
    layers += " + [(2048, 4)] * 1"
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 280)
    args.decoder_layers = getattr(args, "decoder_layers", layers)
    args.decoder_attention = getattr(args, "decoder_attention", "False")
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", "10000,20000,200000")
    base_lm_architecture(args)


@register_model_architecture("fconv_lm", "fconv_lm_dauphin_gbw")
def fconv_lm_dauphin_gbw(args: Any) -> None:
    layers = "[(512, 5)]"
    layers += " + [(128, 1, 0), (128, 5, 0), (512, 1, 3)] * 3"
    layers += " + [(512, 1, 0), (512, 5, 0), (1024, 1, 3)] * 3"
    layers += " + [(1024, 1, 0), (1024, 5, 0), (2048, 1, 3)] * 6"
    layers += " + [(1024, 1, 0), (1024, 5, 0), (4096, 1, 3)]"
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 128)
    args.decoder_layers = getattr(args, "decoder_layers", layers)
    args.decoder_attention = getattr(args, "decoder_attention", "False")
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", "10000,50000,200000")
    base_lm_architecture(args)
