"""Subword encoders (`bpe=...`) and tokenizers (`tokenizer=...`). Importing this package
registers them in BPE_REGISTRY / TOKENIZER_REGISTRY (fairseq_lite/registry.py)."""

from fairseq_lite.data.encoders.sentencepiece_bpe import SentencepieceBPE, SentencepieceConfig

__all__ = ["SentencepieceBPE", "SentencepieceConfig"]
