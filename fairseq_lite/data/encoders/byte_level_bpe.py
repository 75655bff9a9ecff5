"""GPT-2's byte-level BPE: `bpe=gpt2` (--gpt2-encoder-json encoder.json --gpt2-vocab-bpe vocab.bpe, the
files of GPT-2 and of fairseq's RoBERTa/BART releases) and `bpe=hf_byte_bpe` (--bpe-vocab vocab.json
--bpe-merges merges.txt), both on Hugging Face's `tokenizers`, which implements the same pre-tokenization
regex and merges.

As in fairseq, the encoded text is the BPE ids written as words ("31414 232"): those ids are what
fairseq-preprocess binarizes with the dict.txt of the release. Nothing is downloaded: the files are
given by path.
"""

import os
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.registry import register_bpe

SPECIAL_WORDS = ("<unk>", "<s>", "</s>", "<pad>")


def _file(value: Any, key: str, what: str) -> str:
    path = os.path.expanduser(str(value))
    if "://" in path:
        raise ConfigError(f"{key}={path}: nothing can be downloaded; give the path of a local {what}")
    if not os.path.isfile(path):
        raise DataError(f"{key}: no {what} at '{path}'")
    return path


def _byte_level_bpe(vocab: str, merges: str, add_prefix_space: bool) -> Any:
    try:
        from tokenizers import ByteLevelBPETokenizer
    except ImportError:
        raise ConfigError("byte-level BPE needs Hugging Face's tokenizers: pip install tokenizers") from None
    return ByteLevelBPETokenizer.from_file(vocab, merges, add_prefix_space=add_prefix_space)


class _IdsAsWords:
    """encode: text -> BPE ids as words; decode: ids -> text, with symbols that are no id (<unk>, <mask>,
    ...) kept as they are between the decoded runs."""

    bpe: Any

    def encode(self, x: str) -> str:
        return " ".join(map(str, self.bpe.encode(x).ids))

    def decode(self, x: str) -> str:
        pieces, ids = [], []
        for word in x.split():
            if word.isdigit():
                ids.append(int(word))
                continue
            if ids:
                pieces.append(self.bpe.decode(ids))
                ids = []
            pieces.append(word)
        if ids:
            pieces.append(self.bpe.decode(ids))
        return "".join(pieces)

    def is_beginning_of_word(self, x: str) -> bool:
        return x in SPECIAL_WORDS or self.decode(x).startswith(" ")


@dataclass
class GPT2BPEConfig(FairseqDataclass):
    gpt2_encoder_json: str = cfg_field(MISSING, help="path to encoder.json")
    gpt2_vocab_bpe: str = cfg_field(MISSING, help="path to vocab.bpe")


@register_bpe("gpt2", dataclass=GPT2BPEConfig)
class GPT2BPE(_IdsAsWords):
    def __init__(self, cfg: Any):
        vocab = _file(cfg.gpt2_encoder_json, "bpe.gpt2_encoder_json", "GPT-2 encoder.json")
        merges = _file(cfg.gpt2_vocab_bpe, "bpe.gpt2_vocab_bpe", "GPT-2 vocab.bpe")
        self.bpe = _byte_level_bpe(vocab, merges, add_prefix_space=False)


@dataclass
class HuggingFaceByteLevelBPEConfig(FairseqDataclass):
    bpe_merges: str = cfg_field(MISSING, help="path to merges.txt")
    bpe_vocab: str = cfg_field(MISSING, help="path to vocab.json")
    bpe_add_prefix_space: bool = cfg_field(False, help="add prefix space before encoding")


@register_bpe("hf_byte_bpe", dataclass=HuggingFaceByteLevelBPEConfig)
class HuggingFaceByteLevelBPE(_IdsAsWords):
    def __init__(self, cfg: Any):
        vocab = _file(cfg.bpe_vocab, "bpe.bpe_vocab", "vocab.json")
        merges = _file(cfg.bpe_merges, "bpe.bpe_merges", "merges.txt")
        self.bpe = _byte_level_bpe(vocab, merges, add_prefix_space=bool(cfg.bpe_add_prefix_space))
