"""Scorers for generated text (`--scoring`): corpus BLEU as fairseq computes it, and SacreBLEU."""

from typing import Any

from fairseq_lite.registry import SCORING_REGISTRY, cfg_name
from fairseq_lite.scoring.base import BaseScorer
from fairseq_lite.scoring.bleu import BleuConfig, BleuScorer

__all__ = ["BaseScorer", "BleuConfig", "BleuScorer", "build_scorer"]


def build_scorer(choice: Any, tgt_dict: Any = None):
    """The scorer `choice` names (a name or a config node with `_name`). fairseq's "bleu" compares
    token ids, so it takes its pad/eos/unk from the target dictionary."""
    name = cfg_name(choice) or "bleu"
    if name == "bleu" and tgt_dict is not None:
        return BleuScorer(BleuConfig(pad=tgt_dict.pad(), eos=tgt_dict.eos(), unk=tgt_dict.unk()))
    entry = SCORING_REGISTRY.get(name)
    if isinstance(choice, str) or choice is None:
        choice = entry.dataclass() if entry.dataclass is not None else None
    return entry.cls(choice)
