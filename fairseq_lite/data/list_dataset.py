"""fairseq's `ListDataset`: samples that are batched as a plain list (raw strings, metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset

__all__ = ["ListDataset"]


class ListDataset(BaseWrapperDataset):
    """Wrap any indexable ``dataset``; a batch is the list of its samples, uncollated.

    ``sizes`` is what was given (None by default), and ``num_tokens``/``size`` read it, since the
    samples themselves need not have a length. ``set_epoch`` is not passed on, as in fairseq.
    """

    def __init__(self, dataset: Any, sizes: Any = None) -> None:
        super().__init__(dataset)
        self._sizes = sizes

    def __iter__(self) -> Iterator[Any]:
        yield from self.dataset

    def collater(self, samples: list[Any]) -> list[Any]:
        return samples

    @property
    def sizes(self) -> Any:
        return self._sizes

    def num_tokens(self, index: int) -> Any:
        return self.sizes[index]

    def size(self, index: int) -> Any:
        return self.sizes[index]

    def set_epoch(self, epoch: int) -> None:
        pass
