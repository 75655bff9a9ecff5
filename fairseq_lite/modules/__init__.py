"""Building blocks shared by the models, under fairseq's names (`fairseq.modules`)."""

from fairseq_lite.modules.adaptive_input import AdaptiveInput
from fairseq_lite.modules.adaptive_softmax import AdaptiveSoftmax
from fairseq_lite.modules.checkpoint_activations import checkpoint_wrapper
from fairseq_lite.modules.downsampled_multihead_attention import DownsampledMultiHeadAttention  # noqa: F401
from fairseq_lite.modules.dynamic_convolution import DynamicConv, DynamicConv1dTBC  # noqa: F401  (lightconv's)
from fairseq_lite.modules.fairseq_dropout import FairseqDropout
from fairseq_lite.modules.grad_multiply import GradMultiply
from fairseq_lite.modules.layer_norm import Fp32LayerNorm, LayerNorm
from fairseq_lite.modules.lightweight_convolution import LightweightConv, LightweightConv1dTBC  # noqa: F401
from fairseq_lite.modules.linearized_convolution import ConvTBC, LinearizedConvolution  # noqa: F401  (fconv's)
from fairseq_lite.modules.multihead_attention import MultiheadAttention
from fairseq_lite.modules.positional_embedding import (
    LearnedPositionalEmbedding,
    PositionalEmbedding,
    SinusoidalPositionalEmbedding,
    make_positions,
)
from fairseq_lite.modules.transformer_layer import TransformerDecoderLayer, TransformerEncoderLayer
from fairseq_lite.modules.transpose_last import SamePad, TransposeLast

__all__ = [
    "AdaptiveInput",
    "AdaptiveSoftmax",
    "FairseqDropout",
    "Fp32LayerNorm",
    "GradMultiply",
    "LayerNorm",
    "SamePad",
    "TransposeLast",
    "checkpoint_wrapper",
    "LearnedPositionalEmbedding",
    "MultiheadAttention",
    "PositionalEmbedding",
    "SinusoidalPositionalEmbedding",
    "TransformerDecoderLayer",
    "TransformerEncoderLayer",
    "make_positions",
]
