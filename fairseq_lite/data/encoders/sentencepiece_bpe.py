"""`bpe=sentencepiece` (--bpe sentencepiece --sentencepiece-model spm.model): text <-> pieces.

`encode` turns raw text into space-separated pieces (what fairseq-preprocess binarizes);
`decode` undoes it: pieces are concatenated and the word-boundary mark U+2581 becomes a space.
"""

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.registry import register_bpe

WORD_BOUNDARY = "\u2581"


@dataclass
class SentencepieceConfig(FairseqDataclass):
    sentencepiece_model: str = cfg_field(MISSING, help="path to sentencepiece model")
    sentencepiece_enable_sampling: bool = cfg_field(False, help="enable sampling")
    sentencepiece_alpha: float | None = cfg_field(
        None, help="soothing parameter for unigram sampling, and merge probability for BPE-dropout"
    )


@register_bpe("sentencepiece", dataclass=SentencepieceConfig)
class SentencepieceBPE:
    def __init__(self, cfg: Any):
        try:
            import sentencepiece as spm
        except ImportError:
            raise ConfigError("bpe=sentencepiece needs the sentencepiece package: pip install sentencepiece") from None
        path = os.path.expanduser(str(cfg.sentencepiece_model))
        if not os.path.isfile(path):
            raise DataError(f"bpe.sentencepiece_model: no sentencepiece model at '{path}'")
        self.enable_sampling = bool(cfg.sentencepiece_enable_sampling)
        self.alpha = cfg.sentencepiece_alpha
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(path)

    def encode(self, x: str) -> str:
        kwargs = {"enable_sampling": self.enable_sampling}
        if self.alpha is not None:  # sentencepiece rejects alpha=None
            kwargs["alpha"] = float(self.alpha)
        return " ".join(self.sp.Encode(x, out_type=str, **kwargs))

    def decode(self, x: str) -> str:
        return x.replace(" ", "").replace(WORD_BOUNDARY, " ").strip()

    def is_beginning_of_word(self, x: str) -> bool:
        # Special symbols also appear in the sentencepiece vocabulary; they always start a word.
        if x in ("<unk>", "<s>", "</s>", "<pad>"):
            return True
        return x.startswith(WORD_BOUNDARY)
