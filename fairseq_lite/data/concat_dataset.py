"""fairseq's `ConcatDataset`: several datasets one after the other, each repeated by a sample ratio.

It is how ``load_indexed_dataset(..., combine=True)`` joins ``train``, ``train1``, ... and how tasks
upsample a small corpus (``sample_ratios=[1, 3]`` shows the second dataset three times per epoch).
"""

from __future__ import annotations

import bisect
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from torch.utils.data.dataloader import default_collate

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["ConcatDataset"]


class ConcatDataset(FairseqDataset):
    """The datasets in order; dataset k takes ``int(sample_ratios[k] * len(datasets[k]))`` indices.

    Index ``i`` of dataset k's range reads its sample ``i % len(datasets[k])``, so a ratio above 1
    repeats the dataset (a fractional one repeats its beginning). Collation is the first dataset's:
    fairseq supports only datasets that collate alike.
    """

    @staticmethod
    def cumsum(sequence: Sequence[Any], sample_ratios: Sequence[float]) -> list[int]:
        """The end index of every dataset's range."""
        ends, total = [], 0
        for dataset, ratio in zip(sequence, sample_ratios):
            total += int(ratio * len(dataset))
            ends.append(total)
        return ends

    def __init__(self, datasets: Iterable[Any], sample_ratios: float | Sequence[float] = 1) -> None:
        super().__init__()
        self.datasets = list(datasets)
        if len(self.datasets) == 0:
            raise ValueError("datasets should not be an empty iterable")
        if isinstance(sample_ratios, numbers.Number):
            sample_ratios = [sample_ratios] * len(self.datasets)
        if len(sample_ratios) != len(self.datasets):
            raise ValueError(f"{len(sample_ratios)} sample ratios for {len(self.datasets)} datasets")
        self.sample_ratios = sample_ratios
        self.cumulative_sizes = self.cumsum(self.datasets, sample_ratios)
        self.real_sizes = [len(d) for d in self.datasets]

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx: int) -> Any:
        dataset_idx, sample_idx = self._get_dataset_and_sample_index(idx)
        return self.datasets[dataset_idx][sample_idx]

    def _get_dataset_and_sample_index(self, idx: int) -> tuple[int, int]:
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        start = self.cumulative_sizes[dataset_idx - 1] if dataset_idx > 0 else 0
        return dataset_idx, (idx - start) % self.real_sizes[dataset_idx]

    def collater(self, samples: list[Any], **extra_args: Any) -> Any:
        collater = getattr(self.datasets[0], "collater", None)
        if collater is None:
            return default_collate(samples, **extra_args)
        return collater(samples, **extra_args)

    def size(self, idx: int) -> Any:
        dataset_idx, sample_idx = self._get_dataset_and_sample_index(idx)
        return self.datasets[dataset_idx].size(sample_idx)

    def num_tokens(self, index: int) -> Any:
        return np.max(self.size(index))

    def attr(self, attr: str, index: int) -> Any:
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, index)
        return getattr(self.datasets[dataset_idx], attr, None)

    @property
    def sizes(self) -> np.ndarray:
        """Every index's size: each dataset's sizes (the first array of a list of them) repeated as
        its ratio says. fairseq tiles the arrays, which is the same for whole ratios and 1-D sizes;
        indexing also gives fractional ratios and 2-D (source, target) sizes their right rows."""
        parts = []
        for dataset, count in zip(self.datasets, np.diff([0, *self.cumulative_sizes])):
            sizes = dataset.sizes
            if isinstance(sizes, list):
                sizes = sizes[0]  # like fairseq, only a dataset's first size array counts
            sizes = np.asarray(sizes)
            parts.append(sizes[np.arange(count) % len(sizes)])
        return np.concatenate(parts)

    @property
    def supports_prefetch(self) -> bool:
        return all(getattr(d, "supports_prefetch", False) for d in self.datasets)

    def ordered_indices(self) -> np.ndarray:
        """Indices by size; 2-D (source, target) sizes: by target, then stably by source, like
        ``LanguagePairDataset``."""
        sizes = self.sizes
        if sizes.ndim > 1:
            indices = np.arange(len(self))
            if sizes.shape[1] > 1:
                indices = indices[np.argsort(sizes[indices, 1], kind="mergesort")]
                return indices[np.argsort(sizes[indices, 0], kind="mergesort")]
            return indices[np.argsort(sizes[indices, 0], kind="mergesort")]
        return np.argsort(sizes)

    def prefetch(self, indices: np.ndarray) -> None:
        start = 0
        for end, dataset in zip(self.cumulative_sizes, self.datasets):
            if getattr(dataset, "supports_prefetch", False):
                real_size = len(dataset)
                dataset.prefetch([(i - start) % real_size for i in indices if start <= i < end])
            start = end

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return all(getattr(d, "can_reuse_epoch_itr_across_epochs", True) for d in self.datasets)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for dataset in self.datasets:
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
