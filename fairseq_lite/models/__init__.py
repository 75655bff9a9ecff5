"""Models. Importing this package registers every model and named architecture."""

from fairseq_lite.models.fairseq_model import (
    BaseFairseqModel,
    FairseqDecoder,
    FairseqIncrementalDecoder,
    FairseqLanguageModel,
)
from fairseq_lite.models.transformer_decoder import TransformerDecoder
from fairseq_lite.models.transformer_lm import TransformerLanguageModel, TransformerLanguageModelConfig

__all__ = [
    "BaseFairseqModel",
    "FairseqDecoder",
    "FairseqIncrementalDecoder",
    "FairseqLanguageModel",
    "TransformerDecoder",
    "TransformerLanguageModel",
    "TransformerLanguageModelConfig",
]
