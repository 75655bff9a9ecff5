"""fairseq's `BaseWrapperDataset`: a dataset that changes one aspect of another and forwards the rest.

Plugins build their pipelines out of wrappers (pad this, prepend that, truncate there), so every
method the batch iterator calls has to reach the innermost dataset unless a wrapper overrides it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from torch.utils.data.dataloader import default_collate

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["BaseWrapperDataset"]


class BaseWrapperDataset(FairseqDataset):
    """Forward every dataset method to ``dataset``.

    As in fairseq, batching and size filtering are delegated too, so they use the wrapped dataset's
    sizes: a wrapper that changes sizes (``PrependTokenDataset``, ``TruncateDataset``) only affects
    batching through its ``sizes`` when a dataset above it (``NestedDictionaryDataset``) is given
    them. When the wrapped dataset is a plain torch dataset without these methods (an
    ``MMapIndexedDataset``), this class's own ``FairseqDataset`` versions run instead of failing.
    """

    def __init__(self, dataset: Any) -> None:
        super().__init__()
        self.dataset = dataset

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    def collater(self, samples: list[Any]) -> Any:
        collater = getattr(self.dataset, "collater", None)
        if collater is None:
            return default_collate(samples)
        return collater(samples)

    @property
    def sizes(self) -> Any:
        return self.dataset.sizes

    def num_tokens(self, index: int) -> Any:
        return self.dataset.num_tokens(index)

    def size(self, index: int) -> Any:
        return self.dataset.size(index)

    def ordered_indices(self) -> np.ndarray:
        if hasattr(self.dataset, "ordered_indices"):
            return self.dataset.ordered_indices()
        return super().ordered_indices()

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.dataset, "supports_prefetch", False)

    def attr(self, attr: str, index: int) -> Any:
        if hasattr(self.dataset, "attr"):
            return self.dataset.attr(attr, index)
        return super().attr(attr, index)

    def prefetch(self, indices: np.ndarray) -> None:
        self.dataset.prefetch(indices)

    def get_batch_shapes(self) -> list[tuple[int | None, int]] | None:
        if hasattr(self.dataset, "get_batch_shapes"):
            return self.dataset.get_batch_shapes()
        return None

    def batch_by_size(
        self,
        indices: np.ndarray,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        required_batch_size_multiple: int = 1,
    ) -> list[np.ndarray]:
        if not hasattr(self.dataset, "batch_by_size"):
            return super().batch_by_size(indices, max_tokens, max_sentences, required_batch_size_multiple)
        return self.dataset.batch_by_size(
            indices,
            max_tokens=max_tokens,
            max_sentences=max_sentences,
            required_batch_size_multiple=required_batch_size_multiple,
        )

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        if not hasattr(self.dataset, "filter_indices_by_size"):
            return super().filter_indices_by_size(indices, max_sizes)
        return self.dataset.filter_indices_by_size(indices, max_sizes)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return getattr(self.dataset, "can_reuse_epoch_itr_across_epochs", True)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
