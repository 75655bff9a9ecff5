"""fairseq's joint alignment and translation model (`--arch transformer_align`, "Jointly Learning to Align and
Translate with Transformer Models", Garg et al., EMNLP 2019).

A Transformer whose encoder attention at one decoder layer (`alignment_layer`, averaged over its first
`alignment_heads` heads) is supervised with word alignments by the criterion
label_smoothed_cross_entropy_with_alignment. With `full_context_alignment`, that attention comes from a second
decoder pass without the causal mask (each target position sees the whole target), as in the paper; the
translation itself always comes from the ordinary causal pass.

The network and its weights are the Transformer's (same state-dict names), so fairseq checkpoints load
unchanged. Generation decodes with the plain decoder, step by step; fairseq-generate --print-alignment then
takes, as fairseq does, the search's own attention (the last layer's, all heads) for a model without
full_context_alignment, and this model's forward pass (the supervised layer and heads) for one with it.
"""

import argparse
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from fairseq_lite.dataclass.base import cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.models.fairseq_model import DecoderOut, EncoderOut
from fairseq_lite.models.transformer import (
    TransformerConfig,
    TransformerModel,
    base_architecture,
    transformer_wmt_en_de_big,
)
from fairseq_lite.modules.multihead_attention import IncrementalState
from fairseq_lite.registry import register_model, register_model_architecture


@dataclass
class TransformerAlignConfig(TransformerConfig):
    alignment_heads: int = cfg_field(1, help="Number of cross attention heads per layer to supervised with alignments")
    alignment_layer: int = cfg_field(
        4, help="Layer number which has to be supervised. 0 corresponding to the bottommost layer."
    )
    full_context_alignment: bool = cfg_field(
        False, help="Whether or not alignment is supervised conditioned on the full target context."
    )
    # The task's limits, or (under a task without them) the encoder's and decoder's fallback of 1024, as the
    # LSTM's config reads them; `oc.select` because not every task has the fields.
    max_source_positions: int | None = cfg_field(
        "${oc.select:task.max_source_positions,null}", help="max number of tokens in the source sequence"
    )
    max_target_positions: int | None = cfg_field(
        "${oc.select:task.max_target_positions,null}", help="max number of tokens in the target sequence"
    )


@register_model("transformer_align", dataclass=TransformerAlignConfig)
class TransformerAlignModel(TransformerModel):
    """See "Jointly Learning to Align and Translate with Transformer Models" (Garg et al., EMNLP 2019)."""

    def __init__(self, encoder: Any, decoder: Any, args: Any):
        # fairseq's argument order (the encoder and decoder first), unlike TransformerModel's.
        super().__init__(args, encoder, decoder)
        self.alignment_heads = int(args.alignment_heads)
        self.alignment_layer = int(args.alignment_layer)
        self.full_context_alignment = bool(args.full_context_alignment)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        super().check_config(cfg)
        layers = cfg.decoder_layers if cfg.decoder_layers is not None else 6
        heads = cfg.decoder_attention_heads if cfg.decoder_attention_heads is not None else 8
        # fairseq has no such checks: out of range, the supervised attention is missing (the criterion then
        # fails on None) or, with no heads, an empty mean (NaN losses).
        if not 0 <= cfg.alignment_layer < layers:
            raise ConfigError(
                f"{key('model.alignment_layer')} must be a decoder layer, 0 to {layers - 1} "
                f"({key('model.decoder_layers')} is {layers}), got {cfg.alignment_layer}"
            )
        if not 1 <= cfg.alignment_heads <= heads:
            raise ConfigError(
                f"{key('model.alignment_heads')} must be 1 to {heads} "
                f"({key('model.decoder_attention_heads')} is {heads}), got {cfg.alignment_heads}"
            )

    @classmethod
    def build_model(cls, cfg: Any, task: Any) -> "TransformerAlignModel":
        if isinstance(cfg, argparse.Namespace):
            transformer_align(cfg)  # fairseq's: a subclass's args get this model's defaults first
        cls.check_config(cfg)
        transformer = TransformerModel.build_model(cfg, task)
        return cls(transformer.encoder, transformer.decoder, cfg)

    def forward(self, src_tokens: Tensor, src_lengths: Tensor, prev_output_tokens: Tensor) -> DecoderOut:
        """(logits B x T x V, extra) with extra["attn"] = [the supervised attention, B x T x S]."""
        encoder_out = self.encoder(src_tokens, src_lengths=src_lengths)
        return self.forward_decoder(prev_output_tokens, encoder_out)

    def forward_decoder(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut | None = None,
        incremental_state: IncrementalState | None = None,
        features_only: bool = False,
        **extra_args: Any,
    ) -> DecoderOut:
        """The decoder's output, its extra["attn"] the alignment layer's attention (averaged over
        alignment_heads). With full_context_alignment, that attention comes from a second pass without the
        causal mask; a step of incremental decoding (which has only a prefix) keeps the causal one."""
        attn_args = {"alignment_layer": self.alignment_layer, "alignment_heads": self.alignment_heads}
        second_pass = self.full_context_alignment and incremental_state is None
        decoder_out = self.decoder(
            prev_output_tokens,
            encoder_out,
            incremental_state=incremental_state,
            features_only=features_only,
            # The first pass's attention would be replaced: leave it to the fused kernels then.
            **({} if second_pass else attn_args),
            **extra_args,
        )
        if second_pass:
            _, alignment_out = self.decoder(
                prev_output_tokens,
                encoder_out,
                features_only=True,
                full_context_alignment=True,
                **attn_args,
                **extra_args,
            )
            decoder_out[1]["attn"] = alignment_out["attn"]
        return decoder_out


# Values are fairseq 0.12.2's (fairseq/models/transformer_align.py).


@register_model_architecture("transformer_align", "transformer_align")
def transformer_align(args: Any) -> None:
    args.alignment_heads = getattr(args, "alignment_heads", 1)
    args.alignment_layer = getattr(args, "alignment_layer", 4)
    args.full_context_alignment = getattr(args, "full_context_alignment", False)
    base_architecture(args)


@register_model_architecture("transformer_align", "transformer_wmt_en_de_big_align")
def transformer_wmt_en_de_big_align(args: Any) -> None:
    args.alignment_heads = getattr(args, "alignment_heads", 1)
    args.alignment_layer = getattr(args, "alignment_layer", 4)
    transformer_wmt_en_de_big(args)
