"""Models. Importing this package registers every model and named architecture."""

from typing import Any

from fairseq_lite.models import (  # noqa: F401  (models lstm, lstm_lm and their architectures)
    lstm,
    lstm_lm,
    target_model,  # noqa: F401  (model: {_target_: ...})
)
from fairseq_lite.models.fairseq_model import (
    BaseFairseqModel,
    FairseqDecoder,
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    FairseqLanguageModel,
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
    "TransformerConfig",
    "TransformerDecoder",
    "TransformerEncoder",
    "TransformerLanguageModel",
    "TransformerLanguageModelConfig",
    "TransformerModel",
]
