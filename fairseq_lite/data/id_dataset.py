"""fairseq's `IdDataset`: each sample is its own index, so a batch can say which samples it holds."""

from __future__ import annotations

import torch

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["IdDataset"]


class IdDataset(FairseqDataset):
    """``dataset[i] == i``; a batch of ids collates to a LongTensor (the batch's ``"id"``).

    Its length is 0, as in fairseq: it fits any length, and ``NestedDictionaryDataset`` skips
    datasets of length 0 when it checks that its members agree on theirs.
    """

    def __getitem__(self, index: int) -> int:
        return index

    def __len__(self) -> int:
        return 0

    def collater(self, samples: list[int]) -> torch.Tensor:
        return torch.tensor(samples)
