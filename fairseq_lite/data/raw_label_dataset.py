"""fairseq's `RawLabelDataset`: labels given as a Python list (or array), one per sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["RawLabelDataset"]


class RawLabelDataset(FairseqDataset):
    """``labels[i]`` as sample i; a batch is ``torch.tensor`` of its labels (ints give a LongTensor,
    floats a FloatTensor), the form classification and regression criteria read targets in."""

    def __init__(self, labels: Sequence[Any]) -> None:
        super().__init__()
        self.labels = labels

    def __getitem__(self, index: int) -> Any:
        return self.labels[index]

    def __len__(self) -> int:
        return len(self.labels)

    def collater(self, samples: list[Any]) -> torch.Tensor:
        return torch.tensor(samples)
