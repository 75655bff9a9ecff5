"""`bpe=subword_nmt` (--bpe subword_nmt --bpe-codes codes): Sennrich et al.'s BPE with subword-nmt's
apply_bpe, as fairseq applies it. Pieces that continue a word end in the separator ("@@"), which
decoding (or --remove-bpe / --post-process subword_nmt) removes.

`bpe=fastbpe` reads fastBPE's codes ("a b count" per line, the same merges in priority order) with the
same algorithm, so fastBPE's compiled package is not needed.
"""

import os
import tempfile
from dataclasses import dataclass
from typing import Any

from omegaconf import MISSING

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.registry import register_bpe


@dataclass
class SubwordNMTBPEConfig(FairseqDataclass):
    bpe_codes: str = cfg_field(MISSING, help="path to subword NMT BPE")
    bpe_separator: str = cfg_field("@@", help="BPE separator")


def _codes_path(cfg: Any, kind: str) -> str:
    path = os.path.expanduser(str(cfg.bpe_codes))
    if not os.path.isfile(path):
        raise DataError(f"bpe.bpe_codes: no {kind} BPE codes at '{path}' (--bpe-codes)")
    return path


def _subword_nmt_bpe(codes_file: Any, separator: str) -> Any:
    try:
        from subword_nmt.apply_bpe import BPE
    except ImportError:
        raise ConfigError("bpe=subword_nmt needs subword-nmt: pip install subword-nmt") from None
    return BPE(codes_file, separator=separator)


@register_bpe("subword_nmt", dataclass=SubwordNMTBPEConfig)
class SubwordNMTBPE:
    def __init__(self, cfg: Any):
        with open(_codes_path(cfg, "subword-nmt"), encoding="utf-8") as codes:
            self.bpe = _subword_nmt_bpe(codes, cfg.bpe_separator)
        self.bpe_symbol = cfg.bpe_separator + " "

    def encode(self, x: str) -> str:
        return self.bpe.process_line(x)

    def decode(self, x: str) -> str:
        return (x + " ").replace(self.bpe_symbol, "").rstrip()

    def is_beginning_of_word(self, x: str) -> bool:
        return True  # as fairseq: the piece before tells whether this one continues a word


@dataclass
class FastBPEConfig(FairseqDataclass):
    bpe_codes: str = cfg_field(MISSING, help="path to fastBPE BPE")


@register_bpe("fastbpe", dataclass=FastBPEConfig)
class FastBPE(SubwordNMTBPE):
    def __init__(self, cfg: Any):
        with open(_codes_path(cfg, "fastBPE"), encoding="utf-8") as f:
            merges = [line.split()[:2] for line in f if line.strip()]
        # subword-nmt reads "a b" lines under a version header that says words end in "</w>", as fastBPE's do
        with tempfile.TemporaryFile("w+", encoding="utf-8") as codes:
            codes.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
            codes.seek(0)
            self.bpe = _subword_nmt_bpe(codes, "@@")
        self.bpe_symbol = "@@ "
