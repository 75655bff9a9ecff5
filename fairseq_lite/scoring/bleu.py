"""BLEU: fairseq's tokenized corpus BLEU ("bleu") and detokenized SacreBLEU ("sacrebleu").

"bleu" reproduces fairseq's libbleu: n-gram matches on token ids (unk never matches, leading pad
and trailing eos/pad trimmed), no smoothing, brevity penalty min(1, exp(1 - ref/hyp)).
"""

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fairseq_lite.dataclass import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError
from fairseq_lite.registry import register_scorer
from fairseq_lite.scoring.base import BaseScorer

# sacrebleu's tokenizer names, listed here so that start-up does not import sacrebleu.
SACREBLEU_TOKENIZERS = ["none", "zh", "13a", "intl", "char", "ja-mecab", "ko-mecab", "spm", "flores101", "flores200"]


@dataclass
class BleuConfig(FairseqDataclass):
    pad: int = cfg_field(1, "padding index")
    eos: int = cfg_field(2, "eos index")
    unk: int = cfg_field(3, "unk index")


@register_scorer("bleu", dataclass=BleuConfig)
class BleuScorer(BaseScorer):
    MAX_ORDER = 4

    def __init__(self, cfg: Any = None):
        super().__init__(cfg)
        cfg = cfg if cfg is not None else BleuConfig()
        self.pad, self.eos, self.unk = int(cfg.pad), int(cfg.eos), int(cfg.unk)
        self.reset()

    def reset(self) -> None:
        self.reflen = 0
        self.predlen = 0
        self.match = [0] * self.MAX_ORDER
        self.count = [0] * self.MAX_ORDER

    def add(self, ref: Sequence[int], pred: Sequence[int]) -> None:
        """Token ids of one reference and its hypothesis (tensors or lists)."""
        ref_ids = ref.tolist() if torch.is_tensor(ref) else list(ref)
        pred_ids = pred.tolist() if torch.is_tensor(pred) else list(pred)
        # A reference unk matches nothing: an unk in the output is never right.
        ref_ids = [-999 if t == self.unk else t for t in ref_ids]
        self._add_sequences(self._trim(ref_ids), self._trim(pred_ids))

    def add_string(self, ref: str, pred: str) -> None:
        """Whitespace-separated tokens; the same statistics as `add` on their ids."""
        self._add_sequences(ref.split(), pred.split())

    def _trim(self, ids: list[Any]) -> list[Any]:
        start = 0
        while start < len(ids) and ids[start] == self.pad:
            start += 1
        ids = ids[start:]
        end = len(ids) - 1
        # (libbleu never trims the first token, even an eos.)
        while end > 0 and ids[end] in (self.eos, self.pad):
            end -= 1
        return ids[: end + 1]

    def _add_sequences(self, ref: list[Any], pred: list[Any]) -> None:
        self.reflen += len(ref)
        self.predlen += len(pred)
        for n in range(1, self.MAX_ORDER + 1):
            if len(pred) < n:
                continue
            pred_ngrams = Counter(tuple(pred[i : i + n]) for i in range(len(pred) - n + 1))
            ref_ngrams = Counter(tuple(ref[i : i + n]) for i in range(len(ref) - n + 1))
            self.count[n - 1] += len(pred) - n + 1
            self.match[n - 1] += sum(min(c, pred_ngrams[g]) for g, c in ref_ngrams.items())

    def precision(self) -> list[float]:
        return [m / c if c > 0 else 0 for m, c in zip(self.match, self.count)]

    def brevity(self) -> float:
        if self.predlen == 0:
            return 0.0
        return min(1.0, math.exp(1 - self.reflen / self.predlen))

    def score(self, order: int = 4) -> float:
        log_sum = sum(math.log(p) if p > 0 else float("-inf") for p in self.precision()[:order])
        return self.brevity() * math.exp(log_sum / order) * 100

    def result_string(self, order: int = 4) -> str:
        if order > self.MAX_ORDER:
            raise ValueError("BLEU scores for order > 4 aren't supported")
        precisions = "/".join(f"{p * 100:2.1f}" for p in self.precision()[:order])
        ratio = self.predlen / self.reflen if self.reflen else 0.0
        return (
            f"BLEU{order} = {self.score(order):2.2f}, {precisions} (BP={self.brevity():.3f}, "
            f"ratio={ratio:.3f}, syslen={self.predlen}, reflen={self.reflen})"
        )


@dataclass
class SacrebleuConfig(FairseqDataclass):
    sacrebleu_tokenizer: ChoiceEnum(SACREBLEU_TOKENIZERS) = cfg_field("13a", "tokenizer")
    sacrebleu_lowercase: bool = cfg_field(False, "apply lowercasing")
    sacrebleu_char_level: bool = cfg_field(False, "evaluate at character level")


@register_scorer("sacrebleu", dataclass=SacrebleuConfig)
class SacrebleuScorer(BaseScorer):
    """Corpus BLEU of detokenized text with sacrebleu's own tokenization (standard, comparable)."""

    def __init__(self, cfg: Any = None):
        super().__init__(cfg)
        cfg = cfg if cfg is not None else SacrebleuConfig()
        try:
            import sacrebleu
        except ImportError as e:
            raise ConfigError("--scoring sacrebleu needs the sacrebleu package: pip install sacrebleu") from e
        self.sacrebleu = sacrebleu
        self.tokenizer = sacrebleu.BLEU(tokenize=str(cfg.sacrebleu_tokenizer)).tokenizer
        self.lowercase = bool(cfg.sacrebleu_lowercase)
        self.char_level = bool(cfg.sacrebleu_char_level)

    def _tokenize(self, text: str) -> str:
        text = self.tokenizer(text)
        if self.char_level:
            # Characters become tokens; spaces survive as a visible symbol.
            text = " ".join(text.replace(" ", "\u2581"))
        return text.lower() if self.lowercase else text

    def add_string(self, ref: str, pred: str) -> None:
        super().add_string(self._tokenize(ref), self._tokenize(pred))

    def _score(self):
        # Tokenized above already, so sacrebleu must not tokenize again.
        return self.sacrebleu.corpus_bleu(self.pred, [self.ref], tokenize="none")

    def score(self, order: int = 4) -> float:
        return self._score().score

    def result_string(self, order: int = 4) -> str:
        return self._score().format()
