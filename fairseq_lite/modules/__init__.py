"""Building blocks shared by the models."""

from fairseq_lite.modules.multihead_attention import MultiheadAttention
from fairseq_lite.modules.positional_embedding import (
    LearnedPositionalEmbedding,
    PositionalEmbedding,
    SinusoidalPositionalEmbedding,
    make_positions,
)
from fairseq_lite.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer

__all__ = [
    "LearnedPositionalEmbedding",
    "MultiheadAttention",
    "PositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "make_positions",
]
