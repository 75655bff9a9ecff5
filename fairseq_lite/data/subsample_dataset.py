"""fairseq's `SubsampleDataset`: a fixed random fraction of another dataset."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import ConfigError

logger = logging.getLogger(__name__)

__all__ = ["SubsampleDataset"]


class SubsampleDataset(BaseWrapperDataset):
    """``ceil(len(dataset) * size_ratio)`` distinct samples of ``dataset``, chosen once.

    The choice uses numpy's global generator at construction, as fairseq's does, so seed it
    (``numpy_seed``) around the constructor for a reproducible subset. ``shuffle`` breaks size ties
    randomly in ``ordered_indices``. Batching and size filtering run on this dataset's own indices
    (fairseq hands them to the wrapped dataset, which reads the sizes of other samples there).
    """

    def __init__(self, dataset: Any, size_ratio: float, shuffle: bool = False) -> None:
        super().__init__(dataset)
        if not size_ratio < 1:
            raise ConfigError(f"SubsampleDataset: size_ratio must be below 1, got {size_ratio}")
        self.actual_size = int(np.ceil(len(dataset) * size_ratio))
        self.indices = np.random.choice(len(self.dataset), self.actual_size, replace=False)
        self.shuffle = shuffle
        logger.info(f"subsampled dataset from {len(self.dataset)} to {self.actual_size} (ratio={size_ratio})")

    def __getitem__(self, index: int) -> Any:
        return self.dataset[self.indices[index]]

    def __len__(self) -> int:
        return self.actual_size

    def collater(self, samples: list[Any]) -> Any:
        return self.dataset.collater(samples)

    @property
    def sizes(self) -> np.ndarray:
        return np.asarray(self.dataset.sizes)[self.indices]

    @property
    def name(self) -> Any:
        return self.dataset.name

    def num_tokens(self, index: int) -> Any:
        return self.dataset.num_tokens(self.indices[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        if not hasattr(self.dataset, "num_tokens_vec"):
            raise NotImplementedError
        return self.dataset.num_tokens_vec(self.indices[indices])

    def size(self, index: int) -> Any:
        return self.dataset.size(self.indices[index])

    def ordered_indices(self) -> np.ndarray:
        tie_break = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        return np.lexsort([tie_break, self.sizes])

    def prefetch(self, indices: np.ndarray) -> None:
        self.dataset.prefetch(self.indices[indices])

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
