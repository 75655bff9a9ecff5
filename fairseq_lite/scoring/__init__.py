"""Scorers for generated text (`--scoring`): corpus BLEU as fairseq computes it, and SacreBLEU."""

from typing import Any

from fairseq_lite.registry import SCORING_REGISTRY, cfg_name


class BaseScorer:
    """Collects (reference, hypothesis) pairs; `score()` and `result_string()` summarize them."""

    def __init__(self, cfg: Any = None):
        self.cfg = cfg
        self.ref: list[str] = []
        self.pred: list[str] = []

    def add_string(self, ref: str, pred: str) -> None:
        self.ref.append(ref)
        self.pred.append(pred)

    def score(self) -> float:
        raise NotImplementedError

    def result_string(self) -> str:
        raise NotImplementedError


def build_scorer(choice: Any, tgt_dict: Any = None):
    """The scorer `choice` names (a name or a config node with `_name`). fairseq's "bleu" compares
    token ids, so it takes its pad/eos/unk from the target dictionary."""
    from fairseq_lite.scoring.bleu import BleuConfig, BleuScorer

    name = cfg_name(choice) or "bleu"
    if name == "bleu" and tgt_dict is not None:
        return BleuScorer(BleuConfig(pad=tgt_dict.pad(), eos=tgt_dict.eos(), unk=tgt_dict.unk()))
    entry = SCORING_REGISTRY.get(name)
    if isinstance(choice, str) or choice is None:
        choice = entry.dataclass() if entry.dataclass is not None else None
    return entry.cls(choice)


# Importing registers the scorers.
from fairseq_lite.scoring import bleu  # noqa: E402,F401
