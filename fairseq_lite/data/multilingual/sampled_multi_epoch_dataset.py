"""fairseq's `SampledMultiEpochDataset`: a SampledMultiDataset read one virtual epoch at a time
(--virtual-epoch-size), so that batching and filtering handle a slice of a very large sampled dataset.

The sampled dataset (`virtual_size` items, drawn as SampledMultiDataset draws them) is shuffled once by a
seeded permutation; epoch e reads slice (e - 1) mod n of it. After the last slice the next epoch draws a
new sampled dataset and asks for the next shard of the data (`load_next_shard`, `shard_epoch`).
"""

import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fairseq_lite.data.multilingual.sampled_multi_dataset import (
    CollateFormat,
    SampledMultiDataset,
    _class_seed,
    default_virtual_size_func,
)

logger = logging.getLogger(__name__)

__all__ = ["SampledMultiEpochDataset"]


class SampledMultiEpochDataset(SampledMultiDataset):
    """SampledMultiDataset's arguments, and `virtual_epoch_size` (items per epoch; None: all of them) and
    `shard_epoch` (the real epoch that chose the data shard)."""

    def __init__(
        self,
        datasets: "OrderedDict[str, Any] | list[Any]",
        sampling_ratios: Sequence[float] | None = None,
        seed: int = 2,
        epoch: int = 1,
        eval_key: str | None = None,
        collate_format: CollateFormat = CollateFormat.single,
        virtual_size: int | Callable[..., int] | None = default_virtual_size_func,
        split: str = "",
        virtual_epoch_size: int | None = None,
        shared_collater: bool = False,
        shard_epoch: int | None = 1,
        shuffle: bool = True,
    ):
        self.virtual_epoch_size = virtual_epoch_size
        self._current_epoch_start_index: int | None = None
        self._random_global_indices: np.ndarray | None = None
        self.shard_epoch = shard_epoch if shard_epoch is not None else 1
        self.load_next_shard: bool | None = None
        self._epoch_sizes: np.ndarray | None = None
        super().__init__(
            datasets=datasets,
            sampling_ratios=sampling_ratios,
            seed=seed,
            epoch=epoch,
            eval_key=eval_key,
            collate_format=collate_format,
            virtual_size=virtual_size,
            split=split,
            shared_collater=shared_collater,
            shuffle=shuffle,
        )

    def _setup(self, epoch: int) -> None:
        if self.virtual_epoch_size is None:
            self.virtual_epoch_size = self.virtual_size
        if self.virtual_epoch_size > self.virtual_size:
            logger.warning(
                f"virtual epoch size {self.virtual_epoch_size} is greater than virtual dataset size {self.virtual_size}"
            )
            self.virtual_epoch_size = self.virtual_size
        self.num_virtual_epochs = math.ceil(self.virtual_size / self.virtual_epoch_size)
        self._current_epoch_start_index = self._get_epoch_start_index(epoch)
        logger.info(f"virtual epoch size {self.virtual_epoch_size}; virtual dataset size {self.virtual_size}")

    def _map_epoch_index_to_global(self, index: int) -> int:
        return int(self._random_global_indices[self._current_epoch_start_index + index])

    @property
    def sizes(self) -> np.ndarray:
        if self._epoch_sizes is None:
            all_sizes = super().sizes
            start = self._current_epoch_start_index
            self._epoch_sizes = all_sizes[self._random_global_indices[start : start + len(self)]]
            self._sizes = None  # the whole sampled dataset's sizes are not needed any more
        return self._epoch_sizes

    def _get_dataset_and_index(self, index: int) -> tuple[int, int]:
        return super()._get_dataset_and_index(self._map_epoch_index_to_global(index))

    def __len__(self) -> int:
        start = self._current_epoch_start_index
        if start + self.virtual_epoch_size < self.virtual_size:
            return self.virtual_epoch_size
        return self.virtual_size - start

    def set_epoch(self, epoch: int) -> None:
        if self._current_epoch_start_index is None:
            self._setup(epoch)  # the first call, from the constructor
            self._next_virtual_epoch(epoch)
            return
        if epoch == self._cur_epoch:
            return
        self._next_virtual_epoch(epoch)

    def _get_epoch_start_index(self, epoch: int) -> int:
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        return ((epoch - 1) % self.num_virtual_epochs) * self.virtual_epoch_size

    def _next_global_indices(self, epoch: int) -> None:
        rng = np.random.RandomState([_class_seed(type(self)), self.seed % (2**32), epoch])
        self._random_global_indices = rng.choice(self.virtual_size, self.virtual_size, replace=False)
        if self.load_next_shard is None:
            self.load_next_shard = False
        else:
            # every slice was read: the next load_dataset reads the next shard
            self.shard_epoch += 1
            self.load_next_shard = True
            logger.info(f"to load next epoch/shard in next load_dataset: epoch={epoch}/shard_epoch={self.shard_epoch}")

    def _next_virtual_epoch(self, epoch: int) -> None:
        index = self._get_epoch_start_index(epoch)
        if index == 0 or self._random_global_indices is None:
            # A pass over the sampled dataset is drawn with the seed of its first epoch. fairseq seeds a pass
            # entered mid-way (a resumed run) with the current epoch instead, so its resumed run reads
            # other items than the uninterrupted one; this one reads the same.
            first_epoch = epoch - index // self.virtual_epoch_size
            logger.info(
                f"establishing a new set of global virtual indices for epoch={epoch}/shard_epoch={self.shard_epoch}"
            )
            super().set_epoch(first_epoch)
            self._next_global_indices(first_epoch)
            self._cur_epoch = epoch
        else:
            self._cur_epoch = epoch
        self._epoch_sizes = None
        self._current_epoch_start_index = index
