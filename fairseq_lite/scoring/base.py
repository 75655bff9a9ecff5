"""The scorer interface every `--scoring` choice implements."""

from typing import Any


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
