"""fairseq's LSTM language model (`--arch lstm_lm`): the LSTM translation model's decoder without an encoder,
so without attention or input feeding (fairseq/models/lstm_lm.py).

    tokens -> embed -> dropout_in -> LSTMCell layers (from zero states; optional residuals) -> dropout_out
           -> [additional_fc] -> vocabulary logits (or an adaptive softmax's features)

Parameter names are fairseq's (`decoder.embed_tokens`, `decoder.layers.N`, `decoder.fc_out`, ...), so its
checkpoints load one to one.
"""

from dataclasses import dataclass
from typing import Any

from omegaconf import II

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.models.fairseq_model import FairseqLanguageModel
from fairseq_lite.models.lstm import (
    CRITERION,
    adaptive_cutoff,
    check_dropouts,
    check_positive,
    filled_args,
    load_pretrained_embedding_from_file,
)
from fairseq_lite.models.lstm_decoder import DEFAULT_MAX_TARGET_POSITIONS, LSTMDecoder
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class LSTMLanguageModelConfig(FairseqDataclass):
    # None for the hidden size or a granular dropout means what fairseq's base architecture fills in: the
    # embedding size, and `dropout`.
    dropout: float = cfg_field(0.1, help="dropout probability")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    decoder_embed_path: str | None = cfg_field(None, help="path to pre-trained decoder embedding")
    decoder_hidden_size: int | None = cfg_field(None, help="decoder hidden size")
    decoder_layers: int = cfg_field(1, help="number of decoder layers")
    decoder_out_embed_dim: int = cfg_field(512, help="decoder output embedding dimension")
    # fairseq's flag, which its language model never reads (a decoder-only model has nothing to attend to).
    decoder_attention: str = cfg_field("0", help="decoder attention")
    adaptive_softmax_cutoff: str | None = cfg_field(
        "10000,50000,200000",
        help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion",
    )
    residuals: bool = cfg_field(False, help="applying residuals between LSTM layers")
    decoder_dropout_in: float | None = cfg_field(None, help="dropout probability for decoder input embedding")
    decoder_dropout_out: float | None = cfg_field(None, help="dropout probability for decoder output")
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    # options from other parts of the config
    _criterion: str | None = cfg_field(
        CRITERION, help="the run's criterion (the adaptive softmax is built for adaptive_loss only)"
    )
    max_target_positions: int | None = II("task.max_target_positions")
    tokens_per_sample: int | None = II("task.tokens_per_sample")


@register_model("lstm_lm", dataclass=LSTMLanguageModelConfig)
class LSTMLanguageModel(FairseqLanguageModel):
    def __init__(self, decoder: LSTMDecoder):
        super().__init__(decoder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, LSTMLanguageModelConfig, base_architecture)
        check_positive(args, ["decoder_embed_dim", "decoder_hidden_size", "decoder_layers", "decoder_out_embed_dim"])
        check_dropouts(args, ["dropout", "decoder_dropout_in", "decoder_dropout_out"])
        adaptive_cutoff(args)
        if args.share_decoder_input_output_embed and args.decoder_embed_dim != args.decoder_out_embed_dim:
            raise ConfigError(
                f"{key('model.share_decoder_input_output_embed')} requires {key('model.decoder_embed_dim')} "
                f"({args.decoder_embed_dim}) to match {key('model.decoder_out_embed_dim')} "
                f"({args.decoder_out_embed_dim})"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "LSTMLanguageModel":
        cls.check_config(cfg)
        args = filled_args(cfg, LSTMLanguageModelConfig, base_architecture)
        # fairseq: the model's max_target_positions when set, else the task's tokens_per_sample.
        max_target_positions = (
            args.get("max_target_positions") or args.get("tokens_per_sample") or DEFAULT_MAX_TARGET_POSITIONS
        )
        dictionary = task.target_dictionary
        if args.share_decoder_input_output_embed and task.source_dictionary != task.target_dictionary:
            raise ConfigError(f"{key('model.share_decoder_input_output_embed')} requires a joint dictionary")
        embed_tokens = None
        if args.decoder_embed_path:
            embed_tokens = load_pretrained_embedding_from_file(
                args.decoder_embed_path, dictionary, args.decoder_embed_dim, "model.decoder_embed_path"
            )
        decoder = LSTMDecoder(
            dictionary=dictionary,
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            out_embed_dim=args.decoder_out_embed_dim,
            num_layers=args.decoder_layers,
            dropout_in=args.decoder_dropout_in,
            dropout_out=args.decoder_dropout_out,
            attention=False,  # nothing to attend to
            encoder_output_units=0,
            pretrained_embed=embed_tokens,
            share_input_output_embed=bool(args.share_decoder_input_output_embed),
            adaptive_softmax_cutoff=adaptive_cutoff(args, len(dictionary)),
            max_target_positions=max_target_positions,
            residuals=bool(args.residuals),
        )
        return cls(decoder)


# Values are fairseq 0.12.2's (fairseq/models/lstm_lm.py).


@register_model_architecture("lstm_lm", "lstm_lm")
def base_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_embed_path = getattr(args, "decoder_embed_path", None)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", args.decoder_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 1)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 512)
    args.decoder_attention = getattr(args, "decoder_attention", "0")
    args.decoder_dropout_in = getattr(args, "decoder_dropout_in", args.dropout)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", args.dropout)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", "10000,50000,200000")
    args.residuals = getattr(args, "residuals", False)
