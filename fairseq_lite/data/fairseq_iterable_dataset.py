"""fairseq's `FairseqIterableDataset`: the base of datasets that can only be read in order.

A stream (a corpus too large to index, data produced on the fly) has no ``__getitem__``, no sizes
and no batches to plan ahead; it still hears about epochs, like every fairseq dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.utils.data

from fairseq_lite.data.fairseq_dataset import EpochListening

__all__ = ["FairseqIterableDataset"]


class FairseqIterableDataset(torch.utils.data.IterableDataset, EpochListening):
    """A torch ``IterableDataset`` that also receives ``set_epoch``."""

    def __iter__(self) -> Iterator[Any]:
        raise NotImplementedError
