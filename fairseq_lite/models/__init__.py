"""Models. Importing this package registers every model and named architecture."""

from typing import Any

# every model module registers its model and named architectures
from fairseq_lite.models import (  # noqa: F401
    fconv,
    fconv_lm,
    fconv_self_att,
    lightconv,
    lightconv_lm,
    lstm,
    lstm_lm,
    multilingual_transformer,
    target_model,  # model: {_target_: ...}
    transformer_align,
)
from fairseq_lite.models.fairseq_model import (
    BaseFairseqModel,
    FairseqDecoder,
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    FairseqLanguageModel,
    FairseqMultiModel,
)
from fairseq_lite.models.transformer import TransformerConfig, TransformerModel
from fairseq_lite.models.transformer_decoder import TransformerDecoder
from fairseq_lite.models.transformer_encoder import TransformerEncoder
from fairseq_lite.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig
from fairseq_lite.registry import MODEL_REGISTRY, register_model, register_model_architecture


def build_model(cfg: Any, task: Any, from_checkpoint: bool = False) -> BaseFairseqModel:
    """The model `cfg` names, built for `task` (fairseq's `models.build_model`)."""
    return MODEL_REGISTRY.build(cfg, task)


__all__ = [
    "build_model",
    "MODEL_REGISTRY",
    "register_model",
    "register_model_architecture",
    "BaseFairseqModel",
    "FairseqDecoder",
    "FairseqEncoder",
    "FairseqEncoderDecoderModel",
    "FairseqIncrementalDecoder",
    "FairseqLanguageModel",
    "FairseqMultiModel",
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerEncoder",
    "TransformerLanguageModel",
    "TransformerLanguageModelConfig",
    "TransformerModel",
]
