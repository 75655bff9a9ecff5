"""fairseq's LSTM translation model (`--arch lstm*`): an LSTM encoder, optionally bidirectional, and an
LSTM decoder with input feeding and dot-product attention (Luong et al., 2015; the decoder is in
lstm_decoder.py, shared with the language model of lstm_lm.py).

    source -> embed -> dropout_in -> nn.LSTM (packed) -> dropout_out -> outputs, final (h, c) per layer
    target -> LSTMDecoder, started from the encoder's final states, attending over its outputs

Modules, parameter names and initialization are fairseq 0.12.2's, so a fairseq checkpoint's weights load one
to one. The encoder output keeps fairseq's layout, a tuple (not the transformer's dict):
  (outputs S x B x C, final_hiddens L x B x C, final_cells L x B x C, encoder_padding_mask S x B),
with the source moved to right padding (what pack_padded_sequence needs), and C = 2 x hidden size when
bidirectional (the two directions' final states concatenated per layer).

Differences from fairseq: the decoder's `extra` is fairseq-lite's dict, {"attn": [B x T x S or None]}, not a
bare tensor; the model's forward gives that attention over the source as passed (left-padded), so that
--print-alignment indexes the source's tokens.
"""

import ast
import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from fairseq_lite import utils
from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.models.fairseq_model import DecoderOut, FairseqEncoder, FairseqEncoderDecoderModel
from fairseq_lite.models.lstm_decoder import (  # noqa: F401  (fairseq's names, importable from here as there)
    DEFAULT_MAX_TARGET_POSITIONS,
    LSTM,
    AttentionLayer,
    Embedding,
    Linear,
    LSTMCell,
    LSTMDecoder,
    LSTMEncoderOut,
)
from fairseq_lite.models.transformer_lm import cutoff_list
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.multihead_attention import IncrementalState
from fairseq_lite.registry import ArchitectureArgs, register_model, register_model_architecture

# fairseq's fallback (1e5) when the task has no such limit; an int here, as position limits are compared
# with lengths.
DEFAULT_MAX_SOURCE_POSITIONS = 100000

# The run's criterion, which fairseq reads from its flat `args` (args.criterion): the adaptive softmax is
# built only for adaptive_loss. A field named with "_" has no flag (fairseq has none), like `_name`;
# `oc.select` because a config composed without a criterion has none.
CRITERION = "${oc.select:criterion._name,null}"


def decoder_attention_enabled(value: Any, name: str = "model.decoder_attention") -> bool:
    """fairseq's `utils.eval_bool(args.decoder_attention)`: "True"/"1" on, "False"/"0" off. Anything else is
    a ConfigError here (fairseq's eval would raise a NameError, or silently fall back)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        parsed = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, (bool, int)):
        raise ConfigError(f"{setting(name, repr(value))} must be True or False (fairseq also takes 1 or 0)")
    return bool(parsed)


@dataclass
class LSTMConfig(FairseqDataclass):
    # None for a size or dropout below means what fairseq's base architecture fills in: the hidden sizes
    # follow the embedding sizes, the granular dropouts follow `dropout`.
    dropout: float = cfg_field(0.1, help="dropout probability")
    encoder_embed_dim: int = cfg_field(512, help="encoder embedding dimension")
    encoder_embed_path: str | None = cfg_field(None, help="path to pre-trained encoder embedding")
    encoder_freeze_embed: bool = cfg_field(False, help="freeze encoder embeddings")
    encoder_hidden_size: int | None = cfg_field(None, help="encoder hidden size")
    encoder_layers: int = cfg_field(1, help="number of encoder layers")
    encoder_bidirectional: bool = cfg_field(False, help="make all layers of encoder bidirectional")
    decoder_embed_dim: int = cfg_field(512, help="decoder embedding dimension")
    decoder_embed_path: str | None = cfg_field(None, help="path to pre-trained decoder embedding")
    decoder_freeze_embed: bool = cfg_field(False, help="freeze decoder embeddings")
    decoder_hidden_size: int | None = cfg_field(None, help="decoder hidden size")
    decoder_layers: int = cfg_field(1, help="number of decoder layers")
    decoder_out_embed_dim: int = cfg_field(512, help="decoder output embedding dimension")
    # A string, as fairseq's flag (--decoder-attention True|False, or 1|0).
    decoder_attention: str = cfg_field("1", help="decoder attention")
    adaptive_softmax_cutoff: str | None = cfg_field(
        "10000,50000,200000",
        help="comma separated list of adaptive softmax cutoff points. Must be used with adaptive_loss criterion",
    )
    share_decoder_input_output_embed: bool = cfg_field(False, help="share decoder input and output embeddings")
    share_all_embeddings: bool = cfg_field(
        False, help="share encoder, decoder and output embeddings (requires shared dictionary and embed dim)"
    )
    encoder_dropout_in: float | None = cfg_field(None, help="dropout probability for encoder input embedding")
    encoder_dropout_out: float | None = cfg_field(None, help="dropout probability for encoder output")
    decoder_dropout_in: float | None = cfg_field(None, help="dropout probability for decoder input embedding")
    decoder_dropout_out: float | None = cfg_field(None, help="dropout probability for decoder output")
    # options from other parts of the config
    _criterion: str | None = cfg_field(
        CRITERION, help="the run's criterion (the adaptive softmax is built for adaptive_loss only)"
    )
    # fairseq's getattr(args, "max_source_positions", 1e5): the translation task's limits, and fairseq's
    # fallback under a task that has none.
    max_source_positions: int | None = cfg_field(
        "${oc.select:task.max_source_positions,null}", help="max number of tokens in the source sequence"
    )
    max_target_positions: int | None = cfg_field(
        "${oc.select:task.max_target_positions,null}", help="max number of tokens in the target sequence"
    )


def filled_args(cfg: Any, dataclass_type: type, architecture: Any) -> ArchitectureArgs:
    """What fairseq's build_model sees after calling its base architecture on `args`: the config's values,
    with those left unset (None) filled by `architecture` (so a hidden size that is None follows its
    embedding size). Read-only for the caller's config, which is saved in checkpoints as given."""
    values = ArchitectureArgs()
    for f in dataclasses.fields(dataclass_type):
        value = getattr(cfg, f.name, None)
        if value is not None and f.name != "_name":
            values[f.name] = value
    architecture(values)
    return values


def check_dropouts(args: Any, names: list[str]) -> None:
    for name in names:
        if not 0.0 <= float(args[name]) < 1.0:
            raise ConfigError(f"{key('model.' + name)} must be in [0, 1), got {args[name]}")


def check_positive(args: Any, names: list[str]) -> None:
    for name in names:
        if int(args[name]) <= 0:
            raise ConfigError(f"{key('model.' + name)} must be positive, got {args[name]}")


def adaptive_cutoff(args: Any, vocab_size: int | None = None) -> list[int] | None:
    """The adaptive softmax's cutoffs, or None: fairseq builds one only under the adaptive_loss criterion,
    whatever adaptive_softmax_cutoff says (the architectures always set one)."""
    if args.get("_criterion") != "adaptive_loss" or args.get("adaptive_softmax_cutoff") is None:
        return None
    cutoff = cutoff_list(args, "adaptive_softmax_cutoff")
    if vocab_size is not None and cutoff[-1] > vocab_size:
        raise ConfigError(
            f"{setting('model.adaptive_softmax_cutoff', repr(args.adaptive_softmax_cutoff))}: the last cutoff is "
            f"larger than the vocabulary ({vocab_size} symbols)"
        )
    return cutoff


def load_pretrained_embedding_from_file(embed_path: str, dictionary: Any, embed_dim: int, name: str) -> nn.Embedding:
    """An Embedding whose rows for the words the file has are the file's vectors (word2vec/GloVe text:
    a header line, then `word v1 ... vN`); the other rows keep their random init, as in fairseq."""
    if not os.path.isfile(embed_path):
        raise ConfigError(f"{setting(name, embed_path)}: no such file")
    embed_tokens = Embedding(len(dictionary), embed_dim, dictionary.pad())
    embed_dict = utils.parse_embedding(embed_path)
    wrong = next((w for w, v in embed_dict.items() if v.numel() != embed_dim), None)
    if wrong is not None:
        raise ConfigError(
            f"{setting(name, embed_path)}: the vector of {wrong!r} has {embed_dict[wrong].numel()} values, "
            f"the embedding {embed_dim}"
        )
    utils.print_embed_overlap(embed_dict, dictionary)
    return utils.load_embedding(embed_dict, dictionary, embed_tokens)


@register_model("lstm", dataclass=LSTMConfig)
class LSTMModel(FairseqEncoderDecoderModel):
    def __init__(self, encoder: "LSTMEncoder", decoder: "LSTMDecoder"):
        super().__init__(encoder, decoder)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        args = filled_args(cfg, LSTMConfig, base_architecture)
        check_positive(
            args,
            [f"{side}_{name}" for side in ("encoder", "decoder") for name in ("embed_dim", "hidden_size", "layers")]
            + ["decoder_out_embed_dim"],
        )
        check_dropouts(
            args,
            ["dropout"] + [f"{side}_dropout_{io}" for side in ("encoder", "decoder") for io in ("in", "out")],
        )
        if args.encoder_layers != args.decoder_layers:
            # The decoder starts from the encoder's final state of each layer.
            raise ConfigError(
                f"{key('model.encoder_layers')} ({args.encoder_layers}) must match {key('model.decoder_layers')} "
                f"({args.decoder_layers})"
            )
        decoder_attention_enabled(args.decoder_attention)
        adaptive_cutoff(args)
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
        if shares_output and args.decoder_embed_dim != args.decoder_out_embed_dim:
            raise ConfigError(
                f"sharing the decoder's input and output embeddings requires {key('model.decoder_embed_dim')} "
                f"({args.decoder_embed_dim}) to match {key('model.decoder_out_embed_dim')} "
                f"({args.decoder_out_embed_dim})"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "LSTMModel":
        cls.check_config(cfg)
        args = filled_args(cfg, LSTMConfig, base_architecture)
        src_dict, tgt_dict = task.source_dictionary, task.target_dictionary
        if args.encoder_embed_path:
            encoder_embed = load_pretrained_embedding_from_file(
                args.encoder_embed_path, src_dict, args.encoder_embed_dim, "model.encoder_embed_path"
            )
        else:
            encoder_embed = Embedding(len(src_dict), args.encoder_embed_dim, src_dict.pad())
        share_output = bool(args.share_decoder_input_output_embed)
        decoder_embed = None
        if args.share_all_embeddings:
            if src_dict != tgt_dict:
                raise ConfigError(
                    f"{key('model.share_all_embeddings')} requires a joined dictionary: binarize with "
                    f"fairseq-preprocess --joined-dictionary"
                )
            decoder_embed = encoder_embed
            share_output = True  # as fairseq (which sets args.share_decoder_input_output_embed)
        elif args.decoder_embed_path:
            decoder_embed = load_pretrained_embedding_from_file(
                args.decoder_embed_path, tgt_dict, args.decoder_embed_dim, "model.decoder_embed_path"
            )
        encoder = LSTMEncoder(
            dictionary=src_dict,
            embed_dim=args.encoder_embed_dim,
            hidden_size=args.encoder_hidden_size,
            num_layers=args.encoder_layers,
            dropout_in=args.encoder_dropout_in,
            dropout_out=args.encoder_dropout_out,
            bidirectional=bool(args.encoder_bidirectional),
            pretrained_embed=encoder_embed,
            max_source_positions=args.get("max_source_positions") or DEFAULT_MAX_SOURCE_POSITIONS,
        )
        decoder = LSTMDecoder(
            dictionary=tgt_dict,
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            out_embed_dim=args.decoder_out_embed_dim,
            num_layers=args.decoder_layers,
            dropout_in=args.decoder_dropout_in,
            dropout_out=args.decoder_dropout_out,
            attention=decoder_attention_enabled(args.decoder_attention),
            encoder_output_units=encoder.output_units,
            pretrained_embed=decoder_embed,
            share_input_output_embed=share_output,
            adaptive_softmax_cutoff=adaptive_cutoff(args, len(tgt_dict)),
            max_target_positions=args.get("max_target_positions") or DEFAULT_MAX_TARGET_POSITIONS,
            residuals=False,
        )
        # fairseq freezes the decoder's embedding only when it was loaded from a file (and fails otherwise);
        # here the flag freezes whichever embedding the decoder has.
        if args.encoder_freeze_embed:
            encoder.embed_tokens.weight.requires_grad = False
        if args.decoder_freeze_embed:
            decoder.embed_tokens.weight.requires_grad = False
        return cls(encoder, decoder)

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor,
        prev_output_tokens: Tensor,
        incremental_state: IncrementalState | None = None,
    ) -> DecoderOut:
        """As fairseq's, but for the attention in `extra`, which is over `src_tokens` as given (the decoder's is
        over the encoder's right-padded outputs): alignments (--print-alignment) then index the source's
        tokens, as the transformer's do."""
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        x, extra = self.decoder(prev_output_tokens, encoder_out=encoder_out, incremental_state=incremental_state)
        attn = extra["attn"][0]
        if attn is not None and self.encoder.left_pad:
            extra = {**extra, "attn": [attention_over_source(attn, src_tokens, self.encoder.padding_idx)]}
        return x, extra


def attention_over_source(attn: Tensor, src_tokens: Tensor, padding_idx: int) -> Tensor:
    """Attention B x T x S over the right-padded source the encoder made from left-padded `src_tokens`,
    moved back to the columns of `src_tokens` (the pad columns, which have no weight, move to the left)."""
    pad_mask = src_tokens.eq(padding_idx)
    if not pad_mask[:, 0].any():
        return attn  # the encoder kept this batch as it was (see utils.convert_padding_direction)
    width = src_tokens.size(1)
    columns = torch.arange(width, device=attn.device) - pad_mask.sum(dim=1, keepdim=True)
    index = torch.remainder(columns, width).unsqueeze(1).expand_as(attn)
    return attn.gather(2, index)


class LSTMEncoder(FairseqEncoder):
    def __init__(
        self,
        dictionary: Any,
        embed_dim: int = 512,
        hidden_size: int = 512,
        num_layers: int = 1,
        dropout_in: float = 0.1,
        dropout_out: float = 0.1,
        bidirectional: bool = False,
        left_pad: bool = True,
        pretrained_embed: nn.Embedding | None = None,
        padding_idx: int | None = None,
        max_source_positions: int = DEFAULT_MAX_SOURCE_POSITIONS,
    ):
        super().__init__(dictionary)
        self.num_layers = num_layers
        self.dropout_in_module = FairseqDropout(float(dropout_in), module_name=type(self).__name__)
        self.dropout_out_module = FairseqDropout(float(dropout_out), module_name=type(self).__name__)
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.max_source_positions = max_source_positions
        self.padding_idx = padding_idx if padding_idx is not None else dictionary.pad()
        if pretrained_embed is None:
            pretrained_embed = Embedding(len(dictionary), embed_dim, self.padding_idx)
        self.embed_tokens = pretrained_embed
        # Between stacked layers nn.LSTM applies dropout_out itself (fairseq's choice).
        self.lstm = LSTM(
            input_size=embed_dim,
            hidden_size=hidden_size,
            num_layers=num_layers,
            dropout=self.dropout_out_module.p if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.left_pad = left_pad
        self.output_units = hidden_size * 2 if bidirectional else hidden_size

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, enforce_sorted: bool = False):
        """src_tokens: B x S (left-padded, as fairseq's datasets give them); src_lengths: B, tokens per row.
        Returns fairseq's tuple (see the module docstring).

        enforce_sorted: fairseq's default True makes pack_padded_sequence refuse a batch that is not sorted by
        decreasing length (fairseq's batches are); False packs any order, with the same outputs."""
        if self.left_pad:
            # pack_padded_sequence wants right padding.
            src_tokens = utils.convert_padding_direction(src_tokens, self.padding_idx, left_to_right=True)
        if src_lengths is None:
            src_lengths = src_tokens.ne(self.padding_idx).sum(dim=1)
        bsz, seqlen = src_tokens.size()
        x = self.dropout_in_module(self.embed_tokens(src_tokens)).transpose(0, 1)  # T x B x C
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.view(-1).cpu(), enforce_sorted=enforce_sorted)
        packed_outs, (final_hiddens, final_cells) = self.lstm(packed)
        # fairseq fills the pads with padding_idx (1.0), which attention masks out; total_length keeps a batch
        # whose longest row is shorter than its width (all-pad columns) as wide as its padding mask.
        x, _ = nn.utils.rnn.pad_packed_sequence(packed_outs, padding_value=float(self.padding_idx), total_length=seqlen)
        x = self.dropout_out_module(x)
        if self.bidirectional:
            final_hiddens = self.combine_bidir(final_hiddens, bsz)
            final_cells = self.combine_bidir(final_cells, bsz)
        encoder_padding_mask = src_tokens.eq(self.padding_idx).t()
        return (x, final_hiddens, final_cells, encoder_padding_mask)

    def combine_bidir(self, outs: Tensor, bsz: int) -> Tensor:
        """(layers*2) x B x H, directions interleaved per layer -> layers x B x 2H: [forward; backward]."""
        out = outs.view(self.num_layers, 2, bsz, -1).transpose(1, 2).contiguous()
        return out.view(self.num_layers, bsz, -1)

    def reorder_encoder_out(self, encoder_out: LSTMEncoderOut, new_order: Tensor) -> LSTMEncoderOut:
        # Every entry is batch-second: outputs and mask are time-first, the final states layer-first.
        return tuple(t.index_select(1, new_order) for t in encoder_out)

    def max_positions(self) -> int:
        return self.max_source_positions


# Named architectures: each fills only the values the user left unset, then chains to the base.
# Values are fairseq 0.12.2's (fairseq/models/lstm.py).


@register_model_architecture("lstm", "lstm")
def base_architecture(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 512)
    args.encoder_embed_path = getattr(args, "encoder_embed_path", None)
    args.encoder_freeze_embed = getattr(args, "encoder_freeze_embed", False)
    args.encoder_hidden_size = getattr(args, "encoder_hidden_size", args.encoder_embed_dim)
    args.encoder_layers = getattr(args, "encoder_layers", 1)
    args.encoder_bidirectional = getattr(args, "encoder_bidirectional", False)
    args.encoder_dropout_in = getattr(args, "encoder_dropout_in", args.dropout)
    args.encoder_dropout_out = getattr(args, "encoder_dropout_out", args.dropout)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 512)
    args.decoder_embed_path = getattr(args, "decoder_embed_path", None)
    args.decoder_freeze_embed = getattr(args, "decoder_freeze_embed", False)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", args.decoder_embed_dim)
    args.decoder_layers = getattr(args, "decoder_layers", 1)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 512)
    args.decoder_attention = getattr(args, "decoder_attention", "1")
    args.decoder_dropout_in = getattr(args, "decoder_dropout_in", args.dropout)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", args.dropout)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.share_all_embeddings = getattr(args, "share_all_embeddings", False)
    args.adaptive_softmax_cutoff = getattr(args, "adaptive_softmax_cutoff", "10000,50000,200000")


@register_model_architecture("lstm", "lstm_wiseman_iwslt_de_en")
def lstm_wiseman_iwslt_de_en(args: Any) -> None:
    args.dropout = getattr(args, "dropout", 0.1)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.encoder_dropout_in = getattr(args, "encoder_dropout_in", 0)
    args.encoder_dropout_out = getattr(args, "encoder_dropout_out", 0)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 256)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    args.decoder_dropout_in = getattr(args, "decoder_dropout_in", 0)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", args.dropout)
    base_architecture(args)


@register_model_architecture("lstm", "lstm_luong_wmt_en_de")
def lstm_luong_wmt_en_de(args: Any) -> None:
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 1000)
    args.encoder_layers = getattr(args, "encoder_layers", 4)
    args.encoder_dropout_out = getattr(args, "encoder_dropout_out", 0)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 1000)
    args.decoder_layers = getattr(args, "decoder_layers", 4)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 1000)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", 0)
    base_architecture(args)
