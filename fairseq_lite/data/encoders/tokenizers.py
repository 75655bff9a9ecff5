"""fairseq's tokenizers (`--tokenizer moses|nltk|space`, `tokenizer=...`): raw text <-> space-separated
tokens, applied before BPE when encoding and after it when decoding (generate, interactive, eval_bleu).

moses is sacremoses (the Python port of Moses' tokenizer.perl and detokenizer.perl), with fairseq's
options; nltk is NLTK's word_tokenize; space only normalizes runs of whitespace.
"""

import re
from dataclasses import dataclass
from typing import Any

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError
from fairseq_lite.registry import register_tokenizer

SPACE_NORMALIZER = re.compile(r"\s+")


@dataclass
class MosesTokenizerConfig(FairseqDataclass):
    source_lang: str = cfg_field("en", help="source language")
    target_lang: str = cfg_field("en", help="target language")
    moses_no_dash_splits: bool = cfg_field(False, help="don't apply dash split rules")
    moses_no_escape: bool = cfg_field(False, help="don't perform HTML escaping on apostrophe, quotes, etc.")


@register_tokenizer("moses", dataclass=MosesTokenizerConfig)
class MosesTokenizer:
    """Tokenizes with the source language's rules; detokenizes with the target language's."""

    def __init__(self, cfg: Any):
        try:
            from sacremoses import MosesDetokenizer
            from sacremoses import MosesTokenizer as SacreMosesTokenizer
        except ImportError:
            raise ConfigError("tokenizer=moses needs sacremoses: pip install sacremoses") from None
        self.cfg = cfg
        self.tok = SacreMosesTokenizer(lang=cfg.source_lang or "en")
        self.detok = MosesDetokenizer(lang=cfg.target_lang or "en")

    def encode(self, x: str) -> str:
        return self.tok.tokenize(
            x,
            aggressive_dash_splits=not self.cfg.moses_no_dash_splits,
            return_str=True,
            escape=not self.cfg.moses_no_escape,
        )

    def decode(self, x: str) -> str:
        return self.detok.detokenize(x.split())


@register_tokenizer("nltk", dataclass=FairseqDataclass)
class NLTKTokenizer:
    def __init__(self, cfg: Any = None):
        try:
            from nltk.tokenize import word_tokenize
        except ImportError:
            raise ConfigError("tokenizer=nltk needs NLTK: pip install nltk") from None
        try:
            word_tokenize("a. b")
        except LookupError:  # word_tokenize splits sentences with the punkt model, a separate download
            raise ConfigError(
                "tokenizer=nltk needs NLTK's punkt sentence model: python -m nltk.downloader punkt_tab"
            ) from None
        self.word_tokenize = word_tokenize

    def encode(self, x: str) -> str:
        return " ".join(self.word_tokenize(x))

    def decode(self, x: str) -> str:
        return x


@register_tokenizer("space", dataclass=FairseqDataclass)
class SpaceTokenizer:
    def __init__(self, cfg: Any = None):
        pass

    def encode(self, x: str) -> str:
        return SPACE_NORMALIZER.sub(" ", x)

    def decode(self, x: str) -> str:
        return x
