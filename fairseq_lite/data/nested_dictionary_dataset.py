"""fairseq's `NestedDictionaryDataset`: a batch dict assembled from one dataset per entry.

A task describes its batch as a nested dict of datasets, e.g.
``{"id": IdDataset(), "net_input": {"src_tokens": RightPadDataset(...), "src_lengths": ...}}``;
each sample is the dict of the datasets' samples, and each entry of the batch is collated by its
own dataset. Internally the nesting is flattened into dotted keys (``"net_input.src_tokens"``), and
unflattened again after collation.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch.utils.data
from torch.utils.data.dataloader import default_collate

from fairseq_lite.data.fairseq_dataset import FairseqDataset

__all__ = ["NestedDictionaryDataset"]


def _flatten(tree: Any, prefix: str | None = None) -> OrderedDict[str, Any]:
    """``{"a": {"b": x}, "c": [y, z]}`` -> ``{"a.b": x, "c.[0]": y, "c.[1]": z}``; None values dropped."""
    flat: OrderedDict[str, Any] = OrderedDict()
    if isinstance(tree, dict):
        head = "" if prefix is None else prefix + "."
        for name, value in tree.items():
            if value is not None:
                flat.update(_flatten(value, head + name))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            flat.update(_flatten(value, f"{prefix}.[{i}]"))
    else:
        flat[prefix] = tree
    return flat


def _unflatten(flat: dict[str, Any]) -> OrderedDict[Any, Any]:
    """Undo :func:`_flatten`, the way fairseq does: a list becomes a dict, and its ``"[i]"`` parts
    turn into int keys except in the last position of a key, which stays a string."""
    tree: OrderedDict[Any, Any] = OrderedDict()
    for full_key, value in flat.items():
        *parents, leaf = full_key.split(".")
        node = tree
        for part in parents:
            name: Any = int(part[1:-1]) if part.startswith("[") and part.endswith("]") else part
            node = node.setdefault(name, OrderedDict())
        node[leaf] = value
    return tree


class NestedDictionaryDataset(FairseqDataset):
    """Samples and batches shaped like ``defn``, a (nested) dict of datasets.

    Args:
        defn: the dict; its leaves must be datasets. Those of length 0 (``IdDataset``,
            ``NumSamplesDataset``) fit any length; the others must have the same length, which is
            this dataset's.
        sizes: the samples' sizes, or a list of size arrays; ``num_tokens`` is the largest of them
            at an index, ``size`` the one array's value (a tuple of them with several).
    """

    def __init__(self, defn: dict[str, Any], sizes: Any = None) -> None:
        super().__init__()
        self.defn = _flatten(defn)
        self.sizes = list(sizes) if isinstance(sizes, (list, tuple)) else [sizes]
        length = 0
        for name, dataset in self.defn.items():
            if not isinstance(dataset, torch.utils.data.Dataset):
                raise ValueError(f"Expected Dataset but found: {dataset.__class__} (entry {name!r})")
            n = len(dataset)
            if n > 0:
                if length > 0 and n != length:
                    raise ValueError(f"dataset lengths must match: {name!r} has {n} samples, not {length}")
                length = n
        self._len = length

    def __getitem__(self, index: int) -> OrderedDict[str, Any]:
        return OrderedDict((name, dataset[index]) for name, dataset in self.defn.items())

    def __len__(self) -> int:
        return self._len

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        """Each entry collated by its dataset (torch's ``default_collate`` for a dataset without a
        collater), nested back into ``defn``'s shape; ``{}`` for no samples."""
        if len(samples) == 0:
            return {}
        batch: OrderedDict[str, Any] = OrderedDict()
        for name, dataset in self.defn.items():
            values = [s[name] for s in samples]
            collater = getattr(dataset, "collater", None)
            try:
                if collater is None:
                    raise NotImplementedError
                batch[name] = collater(values)
            except NotImplementedError:
                batch[name] = default_collate(values)
        return _unflatten(batch)

    def num_tokens(self, index: int) -> Any:
        return max(s[index] for s in self.sizes)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """:meth:`num_tokens` of many indices at once (the same values, without a Python loop)."""
        arrays = [np.asarray(s) for s in self.sizes if s is not None]
        if len(arrays) != len(self.sizes) or any(a.ndim != 1 for a in arrays):
            raise NotImplementedError
        return np.max(np.stack([a[indices] for a in arrays]), axis=0)

    def size(self, index: int) -> Any:
        """fairseq returns a generator for several size arrays; a tuple holds the same values and
        can be compared with ``max_positions`` more than once."""
        if len(self.sizes) == 1:
            return self.sizes[0][index]
        return tuple(s[index] for s in self.sizes)

    @property
    def supports_prefetch(self) -> bool:
        return any(getattr(d, "supports_prefetch", False) for d in self.defn.values())

    def prefetch(self, indices: np.ndarray) -> None:
        for dataset in self.defn.values():
            if getattr(dataset, "supports_prefetch", False):
                dataset.prefetch(indices)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return all(getattr(d, "can_reuse_epoch_itr_across_epochs", True) for d in self.defn.values())

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        for dataset in self.defn.values():
            if hasattr(dataset, "set_epoch"):
                dataset.set_epoch(epoch)
