"""fairseq's `PadDataset`, `LeftPadDataset`, `RightPadDataset`: token samples padded into a batch."""

from __future__ import annotations

from typing import Any

import torch

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.data.data_utils import collate_tokens

__all__ = ["PadDataset", "LeftPadDataset", "RightPadDataset"]


class PadDataset(BaseWrapperDataset):
    """Collate 1-D token tensors into a ``B x T`` tensor filled with ``pad_idx``.

    ``left_pad`` puts the padding in front (encoder inputs, so the last real tokens line up);
    ``pad_length`` pads every batch to at least that many columns.
    """

    def __init__(self, dataset: Any, pad_idx: int, left_pad: bool, pad_length: int | None = None) -> None:
        super().__init__(dataset)
        self.pad_idx = pad_idx
        self.left_pad = left_pad
        self.pad_length = pad_length

    def collater(self, samples: list[torch.Tensor]) -> torch.Tensor:
        return collate_tokens(samples, self.pad_idx, left_pad=self.left_pad, pad_to_length=self.pad_length)


class LeftPadDataset(PadDataset):
    def __init__(self, dataset: Any, pad_idx: int) -> None:
        super().__init__(dataset, pad_idx, left_pad=True)


class RightPadDataset(PadDataset):
    def __init__(self, dataset: Any, pad_idx: int) -> None:
        super().__init__(dataset, pad_idx, left_pad=False)
