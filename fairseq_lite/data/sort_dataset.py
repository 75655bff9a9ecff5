"""fairseq's `SortDataset`: a dataset whose batch order is given by sort keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset
from fairseq_lite.errors import DataError

__all__ = ["SortDataset"]


class SortDataset(BaseWrapperDataset):
    """Order ``dataset`` by ``sort_order``: one key array, or several.

    ``ordered_indices`` is ``np.lexsort(sort_order)``, so with several keys the *last* one sorts
    first and the earlier ones break its ties. fairseq's tasks pass ``[shuffle, sizes]``: samples by
    length, equal lengths in a random order drawn under the epoch's seed.
    """

    def __init__(self, dataset: Any, sort_order: Any) -> None:
        super().__init__(dataset)
        if not isinstance(sort_order, (list, tuple)):
            sort_order = [sort_order]
        self.sort_order: Sequence[Any] = sort_order
        lengths = [len(key) for key in sort_order]
        if any(n != len(dataset) for n in lengths):
            raise DataError(f"SortDataset: sort keys of lengths {lengths} for a dataset of {len(dataset)} samples")

    def ordered_indices(self) -> np.ndarray:
        return np.lexsort(self.sort_order)
