"""fairseq's `NumSamplesDataset`: counts the samples of a batch (its ``"nsentences"``)."""

from __future__ import annotations

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["NumSamplesDataset"]


class NumSamplesDataset(FairseqDataset):
    """Every sample is 1, and a batch collates to their sum, a Python int.

    Like ``IdDataset`` its length is 0, so it can sit beside datasets of any length.
    """

    def __getitem__(self, index: int) -> int:
        return 1

    def __len__(self) -> int:
        return 0

    def collater(self, samples: list[int]) -> int:
        return sum(samples)
