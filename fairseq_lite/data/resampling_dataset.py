"""fairseq's `ResamplingDataset`: a new random sample of another dataset every epoch."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["ResamplingDataset"]


class ResamplingDataset(BaseWrapperDataset):
    """``ceil(len(dataset) * size_ratio)`` samples of ``dataset``, drawn anew for every epoch.

    Args:
        dataset: the dataset to sample from.
        weights: one probability weight per sample (normalized here); None samples uniformly.
        replace: sample with replacement (then ``size_ratio`` may exceed 1, to see more of a
            dataset per epoch) or without (then ``size_ratio`` must be below 1).
        size_ratio: the epoch's size relative to ``dataset``'s.
        batch_by_size: order the epoch's samples by size (index order otherwise).
        seed: with the epoch, what the draw depends on.
        epoch: the epoch drawn at construction.

    The draw is ``np.random.RandomState([42, seed % 2**32, epoch]).choice(...)``, fairseq's exact
    generator and arguments, so an epoch samples the same indices as under fairseq 0.12.2.

    Unlike fairseq, batching and size filtering run on this dataset's own indices (its sizes are
    the sampled samples' sizes): fairseq hands the sampled positions to the wrapped dataset, which
    reads the sizes of the wrong samples there.
    """

    def __init__(
        self,
        dataset: Any,
        weights: Sequence[float] | np.ndarray | None = None,
        replace: bool = True,
        size_ratio: float = 1.0,
        batch_by_size: bool = True,
        seed: int = 0,
        epoch: int = 1,
    ) -> None:
        super().__init__(dataset)
        self.weights: np.ndarray | None = None
        if weights is not None:
            if len(weights) != len(dataset):
                raise ConfigError(f"ResamplingDataset: {len(weights)} weights for {len(dataset)} samples")
            weights_arr = np.array(weights, dtype=np.float64)
            self.weights = weights_arr / weights_arr.sum()
        self.replace = replace
        if not size_ratio > 0.0:
            raise ConfigError(f"ResamplingDataset: size_ratio must be positive, got {size_ratio}")
        if not replace and not size_ratio < 1.0:
            raise ConfigError(f"ResamplingDataset: sampling without replacement needs size_ratio < 1, got {size_ratio}")
        self.size_ratio = float(size_ratio)
        self.actual_size = int(np.ceil(len(dataset) * self.size_ratio))
        self.batch_by_size_enabled = batch_by_size
        self.seed = seed
        self._cur_epoch: int | None = None
        self._cur_indices: np.ndarray = np.empty(0, dtype=np.int64)
        self.set_epoch(epoch)

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self._cur_indices[index]]

    def __len__(self) -> int:
        return self.actual_size

    @property
    def sizes(self) -> Any:
        inner = self.dataset.sizes
        if isinstance(inner, list):
            return [np.asarray(s)[self._cur_indices] for s in inner]
        return np.asarray(inner)[self._cur_indices]

    def num_tokens(self, index: int) -> Any:
        return self.dataset.num_tokens(self._cur_indices[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        if not hasattr(self.dataset, "num_tokens_vec"):
            raise NotImplementedError
        return self.dataset.num_tokens_vec(self._cur_indices[indices])

    def size(self, index: int) -> Any:
        return self.dataset.size(self._cur_indices[index])

    def ordered_indices(self) -> np.ndarray:
        if self.batch_by_size_enabled:
            return np.lexsort([np.arange(len(self)), self.sizes])
        return np.arange(len(self))

    def prefetch(self, indices: np.ndarray) -> None:
        self.dataset.prefetch(self._cur_indices[indices])

    def batch_by_size(
        self,
        indices: np.ndarray,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        required_batch_size_multiple: int = 1,
    ) -> list[np.ndarray]:
        return FairseqDataset.batch_by_size(self, indices, max_tokens, max_sentences, required_batch_size_multiple)

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        return FairseqDataset.filter_indices_by_size(self, indices, max_sizes)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # the samples, and so the batches, change every epoch

    def set_epoch(self, epoch: int) -> None:
        logger.debug("ResamplingDataset.set_epoch: %s", epoch)
        super().set_epoch(epoch)
        if epoch == self._cur_epoch:
            return
        self._cur_epoch = epoch
        rng = np.random.RandomState([42, self.seed % (2**32), epoch])
        self._cur_indices = rng.choice(len(self.dataset), self.actual_size, replace=self.replace, p=self.weights)
