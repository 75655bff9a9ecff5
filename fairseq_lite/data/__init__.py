"""Data: dictionaries, indexed datasets and binarization."""

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import (
    MMapIndexedDataset,
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
)

__all__ = ["Dictionary", "MMapIndexedDataset", "MMapIndexedDatasetBuilder", "best_fitting_int_dtype"]
