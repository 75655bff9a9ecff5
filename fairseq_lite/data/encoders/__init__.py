"""Subword encoders (`bpe=...`) and tokenizers (`tokenizer=...`), fairseq's set. Importing this package
registers them in BPE_REGISTRY / TOKENIZER_REGISTRY (fairseq_lite/registry.py).

Each has `encode(text) -> symbols` and `decode(symbols) -> text`; fairseq-generate and
fairseq-interactive run the tokenizer then the BPE to encode, and the reverse to decode.
"""

from fairseq_lite.data.encoders.byte_level import ByteBPE, Bytes, Characters
from fairseq_lite.data.encoders.byte_level_bpe import GPT2BPE, HuggingFaceByteLevelBPE
from fairseq_lite.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig
from fairseq_lite.data.encoders.subword_nmt_bpe import FastBPE, SubwordNMTBPE
from fairseq_lite.data.encoders.tokenizers import MosesTokenizer, NLTKTokenizer, SpaceTokenizer

__all__ = [
    "ByteBPE",
    "Bytes",
    "Characters",
    "FastBPE",
    "GPT2BPE",
    "HuggingFaceByteLevelBPE",
    "MosesTokenizer",
    "NLTKTokenizer",
    "SentencepieceBPE",
    "SentencepieceConfig",
    "SpaceTokenizer",
    "SubwordNMTBPE",
]
