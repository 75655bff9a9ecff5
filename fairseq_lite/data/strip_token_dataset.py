"""fairseq's `StripTokenDataset`: remove a token (an eos, a bos) from both ends of every sample."""

from __future__ import annotations

from typing import Any

import torch

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset

__all__ = ["StripTokenDataset"]


class StripTokenDataset(BaseWrapperDataset):
    """Every run of ``id_to_strip`` at the end, then at the start, of each sample is cut off.

    ``sizes`` stay those of the wrapped dataset, as in fairseq: they are upper bounds, which is
    all batching needs.
    """

    def __init__(self, dataset: Any, id_to_strip: int) -> None:
        super().__init__(dataset)
        self.id_to_strip = id_to_strip

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        end = len(item)
        while end > 0 and item[end - 1] == self.id_to_strip:
            end -= 1
        start = 0
        while start < end and item[start] == self.id_to_strip:
            start += 1
        return item[start:end]
