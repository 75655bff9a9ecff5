"""fairseq's `TruncateDataset`, `RandomCropDataset` and `maybe_shorten_dataset`: samples cut to a
maximum length (``--shorten-method truncate|random_crop``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.data.data_utils import numpy_seed

__all__ = ["TruncateDataset", "RandomCropDataset", "maybe_shorten_dataset"]


class TruncateDataset(BaseWrapperDataset):
    """The first ``truncation_length`` tokens of every sample.

    ``sizes`` are capped at the length; ``num_tokens`` and ``size`` are the wrapped dataset's, as in
    fairseq (tasks batch on ``sizes`` through a ``NestedDictionaryDataset``).
    """

    def __init__(self, dataset: Any, truncation_length: int) -> None:
        super().__init__(dataset)
        if truncation_length is None:
            raise ValueError("TruncateDataset needs a truncation_length")
        self.truncation_length = truncation_length

    def __getitem__(self, index: int) -> torch.Tensor:
        item = self.dataset[index]
        if item.size(0) > self.truncation_length:
            item = item[: self.truncation_length]
        return item

    @property
    def sizes(self) -> np.ndarray:
        return np.minimum(self.dataset.sizes, self.truncation_length)

    def __len__(self) -> int:
        return len(self.dataset)


class RandomCropDataset(TruncateDataset):
    """A random window of ``truncation_length`` tokens of every longer sample.

    The window is drawn under ``numpy_seed(seed, epoch, index)``: the same sample gets the same
    crop within an epoch, on every worker and after a resume, and a new one the next epoch. The
    sizes do not change with the epoch, so the epoch's batches can be reused.
    """

    def __init__(self, dataset: Any, truncation_length: int, seed: int = 1) -> None:
        super().__init__(dataset, truncation_length)
        self.seed = seed
        self.epoch = 0

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return True

    def set_epoch(self, epoch: int, **unused: Any) -> None:
        super().set_epoch(epoch)
        self.epoch = epoch

    def __getitem__(self, index: int) -> torch.Tensor:
        with numpy_seed(self.seed, self.epoch, index):
            item = self.dataset[index]
            excess = item.size(0) - self.truncation_length
            if excess > 0:
                start = np.random.randint(0, excess)
                item = item[start : start + self.truncation_length]
            return item


def maybe_shorten_dataset(
    dataset: Any,
    split: str,
    shorten_data_split_list: str,
    shorten_method: str,
    tokens_per_sample: int,
    seed: int,
) -> Any:
    """``dataset`` truncated or randomly cropped to ``tokens_per_sample`` when ``shorten_method`` says
    so and ``split`` is one of the comma-separated ``shorten_data_split_list`` (empty: every split)."""
    applies = len(shorten_data_split_list) == 0 or split in shorten_data_split_list.split(",")
    if applies and shorten_method == "truncate":
        return TruncateDataset(dataset, tokens_per_sample)
    if applies and shorten_method == "random_crop":
        return RandomCropDataset(dataset, tokens_per_sample, seed)
    return dataset
