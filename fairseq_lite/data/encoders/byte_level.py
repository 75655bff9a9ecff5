"""fairseq's byte- and character-level encoders: `bpe=bytes` (one symbol per UTF-8 byte), `bpe=characters`
(one per character) and `bpe=byte_bpe` (a sentencepiece model trained on byte-encoded text).

Bytes are written as printable characters (byte b is chr(b) when printable Latin-1, else chr(256 + b)),
and a space inside the text is U+2581 once the symbols are space-separated, exactly as fairseq's
byte_utils, so their dictionaries and checkpoints carry over.
"""

import os
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.registry import register_bpe

WHITESPACE_NORMALIZER = re.compile(r"\s+")
SPACE = chr(32)
SPACE_ESCAPE = chr(9601)
# printable Latin-1 (the no-break space excluded) stands for itself; every other byte is shifted by 256
PRINTABLE_LATIN = set(range(32, 127)) | set(range(161, 173)) | set(range(174, 256))
BYTE_TO_BCHAR = {b: chr(b) if b in PRINTABLE_LATIN else chr(256 + b) for b in range(256)}
BCHAR_TO_BYTE = {c: b for b, c in BYTE_TO_BCHAR.items()}


def byte_encode(x: str) -> str:
    normalized = WHITESPACE_NORMALIZER.sub(SPACE, x)
    return "".join(BYTE_TO_BCHAR[b] for b in normalized.encode("utf-8"))


def byte_decode(x: str) -> str:
    try:
        return bytes(BCHAR_TO_BYTE[c] for c in x).decode("utf-8")
    except (ValueError, KeyError):
        return ""


def smart_byte_decode(x: str) -> str:
    """byte_decode, or where the bytes are not valid UTF-8 (a model can generate any), the longest run of
    characters that can be recovered (dynamic programming over 1-4 byte characters, as fairseq)."""
    output = byte_decode(x)
    if output or not x:
        return output
    n = len(x)
    best = [0] * (n + 1)  # characters recoverable from x[:i]
    back = [0] * (n + 1)
    for i in range(1, n + 1):
        best[i], back[i] = best[i - 1], i - 1
        for j in range(1, min(4, i) + 1):
            if best[i - j] + 1 > best[i] and byte_decode(x[i - j : i]):
                best[i], back[i] = best[i - j] + 1, i - j
    pieces, i = [], n
    while i > 0:
        if best[i] == best[back[i]] + 1:
            pieces.append(byte_decode(x[back[i] : i]))
        i = back[i]
    return "".join(reversed(pieces))


@register_bpe("bytes")
class Bytes:
    def __init__(self, cfg: Any = None):
        pass

    @staticmethod
    def encode(x: str) -> str:
        return SPACE.join(byte_encode(x).replace(SPACE, SPACE_ESCAPE))

    @staticmethod
    def decode(x: str) -> str:
        return smart_byte_decode(x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE))


@register_bpe("characters")
class Characters:
    def __init__(self, cfg: Any = None):
        pass

    @staticmethod
    def encode(x: str) -> str:
        return SPACE.join(x.replace(SPACE, SPACE_ESCAPE))

    @staticmethod
    def decode(x: str) -> str:
        return x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE)


@dataclass
class ByteBpeConfig(FairseqDataclass):
    sentencepiece_model_path: str = cfg_field(MISSING, help="path to sentencepiece model")


@register_bpe("byte_bpe", dataclass=ByteBpeConfig)
class ByteBPE:
    def __init__(self, cfg: Any):
        try:
            import sentencepiece as spm
        except ImportError:
            raise ConfigError("bpe=byte_bpe needs sentencepiece: pip install sentencepiece") from None
        path = os.path.expanduser(str(cfg.sentencepiece_model_path))
        if not os.path.isfile(path):
            raise DataError(f"bpe.sentencepiece_model_path: no sentencepiece model at '{path}'")
        self.sp = spm.SentencePieceProcessor()
        self.sp.Load(path)

    def encode(self, x: str) -> str:
        return SPACE.join(self.sp.EncodeAsPieces(byte_encode(x)))

    @staticmethod
    def decode(x: str) -> str:
        return smart_byte_decode(x.replace(SPACE, "").replace(SPACE_ESCAPE, SPACE))
