"""fairseq's `NumelDataset`: the number of elements of each sample of another dataset.

Tasks use it for ``"ntokens"`` (``reduce=True``: one number for the batch) and for ``src_lengths``
(``reduce=False``: one length per sample).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset

__all__ = ["NumelDataset"]


class NumelDataset(BaseWrapperDataset):
    def __init__(self, dataset: Any, reduce: bool = False) -> None:
        super().__init__(dataset)
        self.reduce = reduce

    def __getitem__(self, index: int) -> int:
        item = self.dataset[index]
        if torch.is_tensor(item):
            return torch.numel(item)
        return int(np.size(item))

    def __len__(self) -> int:
        return len(self.dataset)

    def collater(self, samples: list[int]) -> int | torch.Tensor:
        """The batch's total (an int) with ``reduce``, else a LongTensor of the samples' counts."""
        if self.reduce:
            return sum(samples)
        return torch.tensor(samples)
