"""Base classes for models, in fairseq's terms.

A model is built from its config and the task (`Model.build_model(cfg, task)`), returns raw
outputs as `(logits, extra)` and knows how to turn them into (log-)probabilities. Decoders are
shared: the same `FairseqIncrementalDecoder` serves a language model (no encoder) and an
encoder-decoder model (`FairseqEncoderDecoderModel`), which passes `encoder_out` through to it.

`encoder_out`, when present, is fairseq's dict of lists (each list holds one tensor, or none):
  "encoder_out": [S x B x C]  "encoder_padding_mask": [B x S bool, True at pads]
  "encoder_embedding": [B x S x C]  "encoder_states": [S x B x C per layer] (with return_all_hiddens)
  "src_tokens": [], "src_lengths": [B x 1]
The time-first tensors are transposed views of the batch-first tensors the layers compute (no copies).
"""

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from fairseq_lite.dataclass.utils import add_registered_args
from fairseq_lite.incremental_decoding_utils import FairseqIncrementalState
from fairseq_lite.modules.multihead_attention import IncrementalState

EncoderOut = dict[str, Any]
# Entries of fairseq's encoder output that are time-first (S x B x C): their batch dimension is 1.
TIME_FIRST_ENCODER_OUT = ("encoder_out", "encoder_states")
DecoderOut = tuple[Tensor, dict[str, Any]]


class BaseFairseqModel(nn.Module):
    @classmethod
    def add_args(cls, parser: Any) -> None:
        """fairseq's: the flags of the model's config, without defaults (an architecture fills those),
        for a subclass's own add_args to extend (`TransformerModel.add_args(parser)`)."""
        add_registered_args(cls, parser, delete_default=True)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Reject a model config that cannot make this model (heads that do not divide the width, ...)
        with a one-line ConfigError, before anything is built: the checks before a run call it, and
        so should build_model."""

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "BaseFairseqModel":
        raise NotImplementedError(f"{cls.__name__} must implement build_model(cfg, task)")

    def get_targets(self, sample: dict[str, Any], net_output: DecoderOut) -> Tensor:
        return sample["target"]

    def get_normalized_probs(
        self, net_output: DecoderOut, log_probs: bool, sample: dict[str, Any] | None = None
    ) -> Tensor:
        return self.get_normalized_probs_scriptable(net_output, log_probs, sample)

    def get_normalized_probs_scriptable(
        self, net_output: DecoderOut, log_probs: bool, sample: dict[str, Any] | None = None
    ) -> Tensor:
        """fairseq's split: a subclass may override either; get_normalized_probs calls this one."""
        decoder = getattr(self, "decoder", None)
        if isinstance(decoder, FairseqDecoder):
            return decoder.get_normalized_probs(net_output, log_probs, sample)
        # Normalize in fp32: softmax over a large vocabulary in bf16/fp16 loses too much.
        logits = output_logits(net_output).float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self) -> Any | None:
        return None

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Unique parameters (a tied embedding counts once)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)


class FairseqDecoder(nn.Module):
    # True when the decoder accepts an encoder_out with fewer rows than prev_output_tokens, B = g * B_enc,
    # rows i*g ... i*g+g-1 reading encoder row i. Beam search then keeps one encoder output per sentence
    # (not one per hypothesis) and reorders it only when sentences finish. It counts only where the
    # decoder's own class sets it (see accepts_grouped_encoder_out): a subclass, which may read encoder_out
    # itself, gets fairseq's one row per hypothesis unless it opts in again.
    supports_grouped_encoder_out: bool = False

    def __init__(self, dictionary: Any):
        super().__init__()
        self.dictionary = dictionary

    def forward(self, prev_output_tokens: Tensor, encoder_out: EncoderOut | None = None, **kwargs) -> DecoderOut:
        x, extra = self.extract_features(prev_output_tokens, encoder_out=encoder_out, **kwargs)
        return self.output_layer(x), extra

    def extract_features(
        self, prev_output_tokens: Tensor, encoder_out: EncoderOut | None = None, **kwargs
    ) -> DecoderOut:
        raise NotImplementedError

    def output_layer(self, features: Tensor) -> Tensor:
        raise NotImplementedError

    def get_normalized_probs(
        self, net_output: DecoderOut, log_probs: bool, sample: dict[str, Any] | None = None
    ) -> Tensor:
        return self.get_normalized_probs_scriptable(net_output, log_probs, sample)

    def get_normalized_probs_scriptable(
        self, net_output: DecoderOut, log_probs: bool, sample: dict[str, Any] | None = None
    ) -> Tensor:
        adaptive_softmax = getattr(self, "adaptive_softmax", None)
        if adaptive_softmax is not None:
            # With the sample's targets, the tail clusters are computed only where a target needs them.
            target = sample["target"] if sample is not None and "target" in sample else None
            lprobs = adaptive_softmax.get_log_prob(net_output[0], target)
            return lprobs if log_probs else lprobs.exp()
        logits = net_output[0].float()
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)

    def max_positions(self) -> int:
        return int(1e6)


class FairseqIncrementalDecoder(FairseqIncrementalState, FairseqDecoder):
    """A decoder that can generate one step at a time, caching keys/values between steps.

    Call it with the whole prefix generated so far and a dict `incremental_state` (start with
    `{}`, keep passing the same dict); only the newest position is computed and returned
    (B x 1 x V). `reorder_incremental_state` keeps the cache in step with beam search.
    """

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        **kwargs,
    ) -> DecoderOut:
        raise NotImplementedError

    def reorder_incremental_state(self, incremental_state: IncrementalState, new_order: Tensor) -> None:
        for module in self.modules():
            if (
                module is not self
                and not isinstance(module, FairseqIncrementalDecoder)
                and hasattr(module, "reorder_incremental_state")
            ):
                module.reorder_incremental_state(incremental_state, new_order)


class FairseqEncoder(nn.Module):
    """Encodes a source batch once: `encoder(src_tokens, src_lengths)` -> `EncoderOut`."""

    def __init__(self, dictionary: Any):
        super().__init__()
        self.dictionary = dictionary

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **kwargs) -> EncoderOut:
        raise NotImplementedError

    def reorder_encoder_out(self, encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
        """Select/duplicate batch rows, e.g. to expand to beam size: in fairseq's layout, dim 1 of the
        time-first entries ("encoder_out", "encoder_states"), dim 0 of every other tensor; lists entry by
        entry. An encoder with another layout overrides it."""
        return reorder_encoder_out(encoder_out, new_order)

    def max_positions(self) -> int:
        return int(1e6)


class FairseqEncoderDecoderModel(BaseFairseqModel):
    """`model(src_tokens, src_lengths, prev_output_tokens)` -> (logits B x T x V, extra).

    Generation calls the halves separately: `model.encoder(...)` once, then
    `model.decoder(prev_output_tokens, encoder_out=..., incremental_state=...)` step by step.
    """

    def __init__(self, encoder: FairseqEncoder, decoder: FairseqDecoder):
        super().__init__()
        if not isinstance(encoder, FairseqEncoder) or not isinstance(decoder, FairseqDecoder):
            raise TypeError(
                f"expected a FairseqEncoder and a FairseqDecoder, got "
                f"{type(encoder).__name__} and {type(decoder).__name__}"
            )
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor, **kwargs) -> DecoderOut:
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return self.decoder(prev_output_tokens, encoder_out=encoder_out, **kwargs)

    def forward_decoder(self, prev_output_tokens: Tensor, **kwargs) -> DecoderOut:
        return self.decoder(prev_output_tokens, **kwargs)

    def extract_features(
        self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor, **kwargs
    ) -> DecoderOut:
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return self.decoder.extract_features(prev_output_tokens, encoder_out=encoder_out, **kwargs)

    def output_layer(self, features: Tensor) -> Tensor:
        return self.decoder.output_layer(features)

    def max_positions(self) -> tuple[int, int]:
        return (self.encoder.max_positions(), self.decoder.max_positions())

    def max_decoder_positions(self) -> int:
        return self.decoder.max_positions()


class FairseqLanguageModel(BaseFairseqModel):
    """A decoder-only model: `model(src_tokens)` -> (logits B x T x V, extra)."""

    def __init__(self, decoder: FairseqDecoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **kwargs) -> DecoderOut:
        return self.decoder(src_tokens, **kwargs)

    def forward_decoder(self, prev_output_tokens: Tensor, **kwargs) -> DecoderOut:
        return self.decoder(prev_output_tokens, **kwargs)

    def extract_features(self, src_tokens: Tensor, src_lengths: Tensor | None = None, **kwargs) -> DecoderOut:
        return self.decoder.extract_features(src_tokens, **kwargs)

    def output_layer(self, features: Tensor) -> Tensor:
        return self.decoder.output_layer(features)

    def max_positions(self) -> int:
        return self.decoder.max_positions()

    def max_decoder_positions(self) -> int:
        return self.decoder.max_positions()

    @property
    def supported_targets(self) -> set:
        return {"future"}


class FairseqMultiModel(BaseFairseqModel):
    """One encoder-decoder model per key (a language pair: "de-en"), as fairseq's: `models[key]`, whose
    encoders and decoders may be shared between keys. Its state dict names are fairseq's
    ("models.de-en.encoder...."); a model built for fewer keys (inference of one direction) loads the
    weights of its own keys out of a checkpoint that has more."""

    def __init__(self, encoders: dict[str, FairseqEncoder], decoders: dict[str, FairseqDecoder]):
        super().__init__()
        if list(encoders) != list(decoders):
            raise ValueError(f"encoders ({', '.join(encoders)}) and decoders ({', '.join(decoders)}) differ in keys")
        self.keys = list(encoders)
        self.models = nn.ModuleDict({k: FairseqEncoderDecoderModel(encoders[k], decoders[k]) for k in self.keys})

    @staticmethod
    def build_shared_embeddings(
        dicts: dict[str, Any], langs: list[str], embed_dim: int, build_embedding: Any, pretrained_embed_path=None
    ) -> nn.Module:
        """One embedding for `langs`, whose dictionaries must be equal (a joined dictionary)."""
        shared = dicts[langs[0]]
        if any(dicts[lang] != shared for lang in langs):
            raise ValueError(
                "--share-*-embeddings requires a joined dictionary: --share-encoder-embeddings a joined source "
                "dictionary, --share-decoder-embeddings a joined target dictionary, --share-all-embeddings one "
                "dictionary for sources and targets"
            )
        return build_embedding(shared, embed_dim, pretrained_embed_path)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor, **kwargs) -> DecoderOut:
        """A model of one pair (one direction, at inference) runs as that pair's model; with several, the caller
        names the pair: `model.models[key]`."""
        if len(self.keys) != 1:
            raise ValueError(
                f"this FairseqMultiModel has {len(self.keys)} language pairs ({', '.join(self.keys)}): run one, "
                f"model.models[pair]"
            )
        return self.models[self.keys[0]](src_tokens, src_lengths, prev_output_tokens, **kwargs)

    def max_positions(self) -> dict[str, tuple[int, int]]:
        return {k: (self.models[k].encoder.max_positions(), self.models[k].decoder.max_positions()) for k in self.keys}

    def max_decoder_positions(self) -> int:
        return min(model.decoder.max_positions() for model in self.models.values())

    @property
    def encoder(self) -> FairseqEncoder:
        return self.models[self.keys[0]].encoder

    @property
    def decoder(self) -> FairseqDecoder:
        return self.models[self.keys[0]].decoder

    def forward_decoder(self, prev_output_tokens: Tensor, **kwargs) -> DecoderOut:
        return self.decoder(prev_output_tokens, **kwargs)

    def load_state_dict(self, state_dict: dict[str, Tensor], strict: bool = True, model_cfg: Any = None, **kwargs):
        # a checkpoint of more language pairs than this model's: keep this model's pairs only
        mine = {k: v for k, v in state_dict.items() if not k.startswith("models.") or k.split(".")[1] in self.models}
        return super().load_state_dict(mine, strict=strict)


def reorder_encoder_out(encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
    """Rows `new_order` of an encoder output in fairseq's layout (FairseqEncoder.reorder_encoder_out)."""
    return {
        key: _select_rows(value, 1 if key in TIME_FIRST_ENCODER_OUT else 0, new_order)
        for key, value in encoder_out.items()
    }


def _select_rows(value: Any, dim: int, order: Tensor) -> Any:
    if torch.is_tensor(value):
        return value.index_select(dim, order)
    if isinstance(value, list):
        return [_select_rows(v, dim, order) for v in value]
    return value


def accepts_grouped_encoder_out(decoder: nn.Module) -> bool:
    """Whether beam search may give `decoder` one encoder row per sentence (FairseqDecoder's
    supports_grouped_encoder_out), declared by the decoder's own class, not inherited."""
    return bool(vars(type(decoder)).get("supports_grouped_encoder_out", False))


def _unwrap(model: nn.Module) -> nn.Module:
    """The model under torch.compile's and DDP's wrappers (FSDP2 keeps the model's own class)."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        else:
            return model


def _inherits_method(obj: Any, name: str, base_impl: Any) -> bool:
    return name not in vars(obj) and getattr(type(obj), name, None) is base_impl


def output_logits(net_output: Any) -> Tensor:
    """The scores a model returned: a decoder's (logits, extra) pair, or a plain tensor, as a model built
    on BaseFairseqModel may return (fairseq's classifying-names tutorial does)."""
    return net_output if torch.is_tensor(net_output) else net_output[0]


def normalizes_with_log_softmax(model: nn.Module) -> bool:
    """Whether model.get_normalized_probs(net_output, log_probs=True) is log_softmax(net_output[0])
    (in fp32): true when neither the model nor its decoder overrides get_normalized_probs. The criteria
    and eval-lm then compute the loss from the logits with the fused kernel
    (fairseq_lite/kernels/cross_entropy.py), which never builds the [N, V] log-probabilities; a model with
    its own normalization (an adaptive softmax, a temperature, a copy mechanism...) keeps the
    log-probabilities path."""
    model = _unwrap(model)
    if not _inherits_normalization(model, BaseFairseqModel):
        return False
    decoder = getattr(model, "decoder", None)
    if not isinstance(decoder, FairseqDecoder):
        return True
    return _inherits_normalization(decoder, FairseqDecoder) and getattr(decoder, "adaptive_softmax", None) is None


def _inherits_normalization(obj: Any, base: type) -> bool:
    return all(
        _inherits_method(obj, name, getattr(base, name))
        for name in ("get_normalized_probs", "get_normalized_probs_scriptable")
    )
