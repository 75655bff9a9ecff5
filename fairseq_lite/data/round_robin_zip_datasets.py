"""Several datasets zipped by index, the shorter ones repeated round robin (fairseq's RoundRobinZipDatasets):
what the multilingual_translation task trains on, one batch per language pair in every step."""

import logging
from collections import OrderedDict
from typing import Any

import numpy as np

from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import DataError

logger = logging.getLogger(__name__)


class RoundRobinZipDatasets(FairseqDataset):
    """Item i is {key: datasets[key][its order[i % its length]]}, in the order each dataset's own
    ordered_indices gives (so each pair is shuffled and length-sorted as it would be alone).

    eval_key: at inference and validation of one direction, items and batches are that dataset's alone.
    """

    def __init__(self, datasets: dict[str, Any], eval_key: str | None = None):
        super().__init__()
        if not datasets:
            raise ValueError("RoundRobinZipDatasets needs at least one dataset")
        self.datasets = OrderedDict(datasets)
        if eval_key is not None and eval_key not in self.datasets:
            raise KeyError(f"eval_key '{eval_key}' is none of the datasets ({', '.join(self.datasets)})")
        self.eval_key = eval_key
        self.longest_dataset_key = max(self.datasets, key=lambda k: len(self.datasets[k]))
        self.longest_dataset = self.datasets[self.longest_dataset_key]
        self._ordered_indices: OrderedDict[str, np.ndarray] | None = None

    def _map_index(self, key: str, index: int) -> int:
        if self._ordered_indices is None:
            raise RuntimeError("call RoundRobinZipDatasets.ordered_indices() before reading items")
        order = self._ordered_indices[key]
        return int(order[index % len(order)])

    def __getitem__(self, index: int) -> Any:
        if self.eval_key is not None:
            return self.datasets[self.eval_key][self._map_index(self.eval_key, index)]
        return OrderedDict((key, ds[self._map_index(key, index)]) for key, ds in self.datasets.items())

    def __len__(self) -> int:
        if self._ordered_indices is not None:
            return len(self._ordered_indices[self.longest_dataset_key])
        return len(self.longest_dataset)

    def collater(self, samples: list[Any]) -> Any:
        if len(samples) == 0:
            return None
        if self.eval_key is not None:
            return self.datasets[self.eval_key].collater(samples)
        return OrderedDict((key, ds.collater([sample[key] for sample in samples])) for key, ds in self.datasets.items())

    def num_tokens(self, index: int) -> int:
        # a step holds one batch per dataset: the largest of them bounds its memory
        return max(ds.num_tokens(self._map_index(key, index)) for key, ds in self.datasets.items())

    def size(self, index: int) -> dict[str, Any]:
        return {key: ds.size(self._map_index(key, index)) for key, ds in self.datasets.items()}

    def ordered_indices(self) -> np.ndarray:
        if self._ordered_indices is None:
            # each dataset's own order: the same shuffle it would have on its own
            self._ordered_indices = OrderedDict((key, ds.ordered_indices()) for key, ds in self.datasets.items())
        return np.arange(len(self), dtype=np.int64)

    def set_epoch(self, epoch: int) -> None:
        for ds in self.datasets.values():
            ds.set_epoch(epoch)

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return all(getattr(ds, "can_reuse_epoch_itr_across_epochs", True) for ds in self.datasets.values())

    def filter_indices_by_size(self, indices: np.ndarray, max_positions: Any = None) -> tuple[np.ndarray, list[int]]:
        """Filter each dataset on its own (`max_positions` per key, or one limit for all), then zip the
        filtered orders. The ignored items are logged per key; the return says only whether there were any."""
        if self._ordered_indices is None:
            self.ordered_indices()
        limits = max_positions if isinstance(max_positions, dict) else {k: max_positions for k in self.datasets}
        ignored_some = False
        self._ignored: dict[str, list[int]] = {}
        for key, ds in self.datasets.items():
            kept, ignored = ds.filter_indices_by_size(self._ordered_indices[key], limits.get(key))
            if len(kept) == 0:
                raise DataError(f"every sample of {key} is longer than max_positions={limits.get(key)}")
            self._ordered_indices[key] = kept
            if len(ignored) > 0:
                ignored_some = True
                self._ignored[key] = list(ignored)
                logger.warning(
                    f"{len(ignored)} samples from {key} have invalid sizes and will be skipped, "
                    f"max_positions={limits.get(key)}, first few sample ids={list(ignored[:10])}"
                )
        return np.arange(len(self), dtype=np.int64), [0] if ignored_some else []

    def describe_ignored(self) -> str:
        """What the last filter_indices_by_size left out, per dataset (the zipped indices cannot name them)."""
        return "; ".join(
            f"{len(ids)} of {key} (e.g. its sample #{ids[0]}, size {self.datasets[key].size(ids[0])})"
            for key, ids in getattr(self, "_ignored", {}).items()
        )

    @property
    def supports_prefetch(self) -> bool:
        return all(getattr(ds, "supports_prefetch", False) for ds in self.datasets.values())

    def prefetch(self, indices: np.ndarray) -> None:
        for key, ds in self.datasets.items():
            ds.prefetch([self._map_index(key, int(i)) for i in indices])
