"""fairseq's `data_utils.load_indexed_dataset`: open `.bin/.idx` datasets by their path prefix.

fairseq infers the file format from the index's magic bytes and falls back to ``default`` when
there is nothing to infer from. fairseq-lite reads three formats: ``mmap``, which is what
fairseq-preprocess writes by default, fairseq's older ``lazy``/``cached`` format (legacy_indexed_dataset.py),
and ``raw`` (the text itself, encoded with the dictionary when read); ``None``, ``"cached"`` and ``"lazy"``
therefore mean "look at the files" (a ``.bin/.idx`` pair, else a text file at the prefix itself), and a
huffman index found there is an error saying how to re-binarize. Any other implementation is refused before
files are read.

This module imports ``ConcatDataset`` (for ``combine=True``), which depends on ``data_utils``
through ``FairseqDataset``; ``data_utils`` cannot import it back without an import cycle.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

from fairseq_lite.data.concat_dataset import ConcatDataset
from fairseq_lite.data.indexed_dataset import MAGIC, MMapIndexedDataset, index_file_path
from fairseq_lite.data.legacy_indexed_dataset import IndexedDataset
from fairseq_lite.data.raw_text_dataset import IndexedRawTextDataset
from fairseq_lite.errors import ConfigError, DataError, setting

logger = logging.getLogger(__name__)

__all__ = ["check_indexed_dataset", "load_indexed_dataset", "infer_dataset_impl"]

# What fairseq 0.12.2 writes at the start of the `.idx` of its other implementations.
_LEGACY_MAGIC = b"TNTIDX\x00\x00"  # "lazy" / "cached" (IndexedDataset)
_HUFFMAN_MAGIC = b"HUFFIDX\x00"

_INFER = (None, "cached", "lazy")


def _check_impl(value: str | None, what: str) -> None:
    if value not in _INFER and value not in ("mmap", "raw"):
        raise ConfigError(
            f"{what} is not supported: fairseq-lite reads 'mmap', 'lazy'/'cached' and 'raw' datasets "
            "(None, 'cached' or 'lazy' mean: infer it from the files)"
        )


def infer_dataset_impl(path: str) -> str | None:
    """The implementation that wrote the dataset at prefix ``path`` (``"mmap"``, ``"cached"`` or
    ``"huffman"``, as fairseq names them), or None when its ``.bin``/``.idx`` pair is missing or
    the index starts with no magic fairseq knows."""
    if not MMapIndexedDataset.exists(path):
        return None
    with open(index_file_path(path), "rb") as f:
        magic = f.read(8)
    if magic == MAGIC[:8]:
        return "mmap"
    if magic == _LEGACY_MAGIC:
        return "cached"
    if magic == _HUFFMAN_MAGIC:
        return "huffman"
    return None


def _load_one(path: str, dataset_impl: str | None, dictionary: Any = None) -> Any:
    if dataset_impl == "raw" or (dataset_impl != "mmap" and not MMapIndexedDataset.exists(path)):
        if IndexedRawTextDataset.exists(path):
            return IndexedRawTextDataset(path, dictionary)
        return None
    if not MMapIndexedDataset.exists(path):
        return None  # fairseq's answer for a missing dataset: the caller decides if that is an error
    if dataset_impl != "mmap":
        found = infer_dataset_impl(path)
        if found == "cached":  # fairseq's lazy/cached format (TNTIDX), as older data-bin directories hold it
            return IndexedDataset(path, fix_lua_indexing=True)
        if found == "huffman":
            raise DataError(
                f"{index_file_path(path)} was written by fairseq's 'huffman' dataset implementation, which "
                "fairseq-lite does not read; binarize the data again with fairseq-preprocess --dataset-impl mmap"
            )
    # An index with an unknown magic makes MMapIndexedDataset raise its "bad magic" error.
    return MMapIndexedDataset(path)


def load_indexed_dataset(
    path: str,
    dictionary: Any = None,
    dataset_impl: str | None = None,
    combine: bool = False,
    default: str | None = "cached",
) -> MMapIndexedDataset | ConcatDataset | None:
    """The dataset at prefix ``path`` (e.g. ``data-bin/train``), or None when it does not exist.

    Args:
        path: the files' prefix, without ``.bin``/``.idx``.
        dictionary: what a raw text dataset is encoded with.
        dataset_impl: ``"mmap"``, or None / ``"cached"`` / ``"lazy"`` to infer the format.
        combine: also load ``path1``, ``path2``, ... (up to the first missing one) and return them
            concatenated as one :class:`ConcatDataset` when there is more than one.
        default: fairseq's fallback when the format cannot be inferred; the same values are allowed.
    """
    _check_impl(dataset_impl, setting("dataset.dataset_impl", dataset_impl))
    _check_impl(default, f"load_indexed_dataset(default={default!r})")
    datasets = []
    for k in itertools.count():
        path_k = path + (str(k) if k > 0 else "")
        dataset = _load_one(path_k, dataset_impl, dictionary)
        if dataset is None:
            break
        logger.info(f"loaded {len(dataset):,} examples from: {path_k}")
        datasets.append(dataset)
        if not combine:
            break
    if len(datasets) == 0:
        return None
    if len(datasets) == 1:
        return datasets[0]
    return ConcatDataset(datasets)


def check_indexed_dataset(path: str) -> None:
    """Open the binarized dataset at prefix `path` (mmap, or fairseq's older lazy/cached format) and check its
    index against its data, as the checks before a run do: a one-line DataError when it is broken."""
    if infer_dataset_impl(path) == "cached":
        IndexedDataset(path)
    else:
        MMapIndexedDataset(path)  # also says "bad magic" for an index of no format fairseq-lite reads
