"""fairseq's `SampledMultiDataset`: several datasets (one per language pair) drawn from by sampling ratios.

Each epoch, the dataset's `virtual_size` items are drawn afresh: dataset k gets `virtual_size * p_k` of them
(the rounding remainder drawn by p), chosen uniformly from it (with replacement when it is too small). The
draw is seeded by (class name, `seed`, epoch) exactly as fairseq's, so an epoch's items are the same after
a resume and equal fairseq's for the same data. Without ratios the datasets are concatenated.

Item i is `(k, datasets[k][j])`: the collater knows which dataset each sample came from.
"""

import hashlib
import logging
from bisect import bisect_right
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

import numpy as np
import torch

from fairseq_lite.data.data_utils import filter_paired_dataset_indices_by_size
from fairseq_lite.data.fairseq_dataset import FairseqDataset

logger = logging.getLogger(__name__)

__all__ = ["CollateFormat", "SampledMultiDataset", "default_virtual_size_func"]


def default_virtual_size_func(datasets: Sequence[Any], ratios: Any, max_scale_up: float = 1.5) -> int:
    """The epoch size fairseq picks: every dataset scaled to the largest one by its ratio, at most
    `max_scale_up` times the real total."""
    sizes = [len(d) for d in datasets]
    if ratios is None:
        return sum(sizes)
    largest = int(np.argmax(sizes))
    virtual = sum((r / ratios[largest]) * sizes[largest] for r in ratios)
    max_size = sum(sizes) * max_scale_up
    return int(virtual if virtual < max_size else max_size)


class CollateFormat(Enum):
    single = 1
    ordered_dict = 2


def _class_seed(cls: type) -> int:
    return int(hashlib.sha1(cls.__name__.encode("utf-8")).hexdigest(), 16) % (2**32)


class SampledMultiDataset(FairseqDataset):
    """Args (fairseq's): `datasets` (an OrderedDict key -> dataset, or a list), `sampling_ratios` (one weight
    per dataset; None concatenates), `seed` (fairseq's default 2: the tasks never pass --seed here), `epoch`,
    `eval_key`, `collate_format` (single: one mixed batch; ordered_dict: a batch per dataset key),
    `virtual_size` (an int, or a function of (datasets, ratios)), `split`, `shared_collater` (all datasets
    collate alike, so the first one collates every batch) and `shuffle`."""

    def __init__(
        self,
        datasets: "OrderedDict[str, Any] | list[Any]",
        sampling_ratios: Sequence[float] | None = None,
        seed: int = 2,
        epoch: int = 1,
        eval_key: str | None = None,
        collate_format: CollateFormat = CollateFormat.single,
        virtual_size: int | Callable[..., int] | None = default_virtual_size_func,
        split: str = "",
        shared_collater: bool = False,
        shuffle: bool = True,
    ):
        super().__init__()
        self.shared_collater = shared_collater
        self.shuffle = shuffle
        if isinstance(datasets, OrderedDict):
            self.keys = list(datasets.keys())
            datasets = list(datasets.values())
        elif isinstance(datasets, list):
            self.keys = list(range(len(datasets)))
        else:
            raise TypeError(f"datasets must be an OrderedDict or a list, not {type(datasets).__name__}")
        self.datasets = datasets
        self.split = split
        self.eval_key = eval_key
        self.collate_format = CollateFormat.single if eval_key is not None else collate_format
        self.seed = seed
        self._cur_epoch: int | None = None
        # Item i comes from datasets[k], k = bisect_right(cumulated_sizes, i), at its index _cur_indices[i].
        self.cumulated_sizes: np.ndarray | None = None
        self._cur_indices: np.ndarray | None = None
        self._sizes: np.ndarray | None = None
        self.virtual_size_per_dataset: np.ndarray | None = None
        self.setup_sampling(sampling_ratios, virtual_size)
        self.set_epoch(epoch)

    # --- sampling ------------------------------------------------------------------------------
    def setup_sampling(self, sample_ratios: Sequence[float] | None, virtual_size: Any) -> None:
        sizes = [len(d) for d in self.datasets]
        if sample_ratios is None:
            self.sample_ratios = None
            self.virtual_size = sum(sizes)
            return
        self.sample_ratios = np.asarray(sample_ratios)
        virtual_size = default_virtual_size_func if virtual_size is None else virtual_size
        self.virtual_size = int(
            virtual_size(self.datasets, self.sample_ratios) if callable(virtual_size) else virtual_size
        )

    def adjust_sampling(self, epoch: int, sampling_ratios: Sequence[float] | None, virtual_size: Any) -> None:
        """New ratios (an adaptive sampler's), the same on every rank."""
        if sampling_ratios is not None:
            self.setup_sampling(self._sync_sample_ratios(sampling_ratios), virtual_size)

    def _sync_sample_ratios(self, ratios: Sequence[float]) -> np.ndarray:
        # Ranks whose ratios differ in the last bits would draw different epochs: average them.
        values = torch.tensor(ratios, dtype=torch.float64)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            on = values.cuda() if torch.distributed.get_backend() == "nccl" else values
            torch.distributed.all_reduce(on)
            values = on.cpu() / torch.distributed.get_world_size()
        return values.numpy()

    def random_choice_in_dataset(self, rng: np.random.RandomState, dataset: Any, choice_size: int) -> np.ndarray:
        if hasattr(dataset, "random_choice_in_dataset"):
            return dataset.random_choice_in_dataset(rng, choice_size)
        dataset_size = len(dataset)
        return rng.choice(dataset_size, choice_size, replace=(choice_size > dataset_size))

    def get_virtual_indices(
        self, rng: np.random.RandomState, datasets: Sequence[Any], sample_ratios: np.ndarray | None, virtual_size: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(in-dataset index of every item, cumulative item counts per dataset, items per dataset). The
        draws happen in fairseq's order, so the same rng state gives fairseq's items."""
        sizes = [len(d) for d in datasets]
        if sample_ratios is None:
            in_dataset_indices = [np.arange(s) for s in sizes]
            per_dataset = np.asarray(sizes, dtype=np.int64)
        else:
            ratios = sample_ratios / sample_ratios.sum()
            counts = np.array([virtual_size * r for r in ratios], dtype=np.int64)
            diff = virtual_size - int(counts.sum())
            if diff < 0:
                raise ValueError(f"sampling ratios {list(ratios)} ask for more than {virtual_size} items")
            if diff > 0:  # what the rounding down left over, drawn by the ratios
                for i in rng.choice(len(ratios), size=diff, p=ratios):
                    counts[i] += 1
            in_dataset_indices = [self.random_choice_in_dataset(rng, d, c) for c, d in zip(counts, datasets)]
            per_dataset = np.array([len(d) for d in in_dataset_indices], dtype=np.int64)
        cumulative = np.cumsum(per_dataset)
        if virtual_size < sum(sizes):
            logger.warning(
                f"virtual data size ({virtual_size}) is less than real data size ({sum(sizes)}). "
                "If virtual size << real data size, there could be data coverage issue."
            )
        return np.hstack(in_dataset_indices).astype(np.int64), cumulative, per_dataset

    # --- items ---------------------------------------------------------------------------------
    def _get_dataset_and_index(self, index: int) -> tuple[int, int]:
        return bisect_right(self.cumulated_sizes, index), int(self._cur_indices[index])

    def __getitem__(self, index: int) -> tuple[int, Any]:
        ds_idx, ds_sample_idx = self._get_dataset_and_index(index)
        return ds_idx, self.datasets[ds_idx][ds_sample_idx]

    def __len__(self) -> int:
        return self.virtual_size

    def num_tokens(self, index: int) -> int:
        return int(np.max(self.sizes[index]))

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        sizes = self.sizes[np.asarray(indices)]
        return np.amax(sizes, axis=tuple(range(1, sizes.ndim))) if sizes.ndim > 1 else sizes

    def size(self, index: int) -> Any:
        return self.sizes[index]

    @property
    def sizes(self) -> np.ndarray:
        """Every item's size, (source, target) rows for language pairs."""
        if self._sizes is None:
            starts = np.concatenate([[0], self.cumulated_sizes[:-1]])
            parts = [
                np.asarray(d.sizes)[self._cur_indices[start:end]]
                for d, start, end in zip(self.datasets, starts, self.cumulated_sizes)
            ]
            self._sizes = np.vstack(parts) if parts[0].ndim > 1 else np.concatenate(parts)
        return self._sizes

    def ordered_indices(self) -> np.ndarray:
        """By source length, then target length (stable sorts), after a shuffle from numpy's global RNG
        (which the batch iterator seeds)."""
        indices = np.random.permutation(len(self)) if self.shuffle else np.arange(len(self))
        sizes = self.sizes
        paired = sizes.ndim > 1 and sizes.shape[1] > 1
        src_sizes = sizes[:, 0] if paired else sizes
        if paired:
            indices = indices[np.argsort(sizes[:, 1][indices], kind="mergesort")]
        return indices[np.argsort(src_sizes[indices], kind="mergesort")]

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        sizes = self.sizes
        paired = sizes.ndim > 1 and sizes.shape[1] > 1
        return filter_paired_dataset_indices_by_size(
            sizes[:, 0] if paired else sizes, sizes[:, 1] if paired else None, np.asarray(indices), max_sizes
        )

    def prefetch(self, indices: np.ndarray) -> None:
        per_dataset: list[list[int]] = [[] for _ in self.datasets]
        for i in indices:
            ds_idx, ds_sample_idx = self._get_dataset_and_index(i)
            per_dataset[ds_idx].append(ds_sample_idx)
        for dataset, wanted in zip(self.datasets, per_dataset):
            dataset.prefetch(wanted)

    # --- batches -------------------------------------------------------------------------------
    def collater(self, samples: list[tuple[int, Any]], **extra_args: Any) -> Any:
        if len(samples) == 0:
            return {}
        if self.collate_format == CollateFormat.ordered_dict:
            by_dataset: list[list[Any]] = [[] for _ in self.datasets]
            for i, sample in samples:
                by_dataset[i].append(sample)
            return OrderedDict(
                (self.keys[i], dataset.collater(by_dataset[i]))
                for i, dataset in enumerate(self.datasets)
                if by_dataset[i]
            )
        if self.shared_collater:
            return self.datasets[0].collater([s for _, s in samples])
        return self._merge_collated(samples, extra_args)

    def _merge_collated(self, samples: list[tuple[int, Any]], extra_args: dict[str, Any]) -> dict[str, Any]:
        """Each dataset collates its own samples (its language tokens, lang ids), padded to the batch's
        widths, and the batches are joined, rows sorted by source length as one batch would be."""
        by_dataset: dict[int, list[Any]] = defaultdict(list)
        pad_to_length = dict(extra_args.get("pad_to_length") or {})
        pad_to_length.setdefault("source", 0)
        pad_to_length.setdefault("target", 0)
        for ds_idx, s in samples:
            pad_to_length["source"] = max(pad_to_length["source"], s["source"].size(0))
            if s["target"] is not None:
                pad_to_length["target"] = max(pad_to_length["target"], s["target"].size(0))
            by_dataset[ds_idx].append(s)
        batches = [
            self.datasets[i].collater(by_dataset[i], pad_to_length=pad_to_length)
            for i in range(len(self.datasets))
            if by_dataset[i]
        ]
        src_lengths, sort_order = torch.cat([b["net_input"]["src_lengths"] for b in batches]).sort(
            descending=True, stable=True
        )

        def joined(tensors: list[torch.Tensor]) -> torch.Tensor:
            return torch.cat(tensors, dim=0).index_select(0, sort_order)

        batch: dict[str, Any] = {
            "id": joined([b["id"] for b in batches]),
            "nsentences": sum(b["nsentences"] for b in batches),
            "ntokens": sum(b["ntokens"] for b in batches),
            "net_input": {
                "src_tokens": joined([b["net_input"]["src_tokens"] for b in batches]),
                "src_lengths": src_lengths,
            },
            "target": joined([b["target"] for b in batches]) if batches[0]["target"] is not None else None,
        }
        for name in ("prev_output_tokens", "src_lang_id"):
            if name in batches[0]["net_input"]:
                batch["net_input"][name] = joined([b["net_input"][name] for b in batches])
        if "tgt_lang_id" in batches[0]:
            batch["tgt_lang_id"] = joined([b["tgt_lang_id"] for b in batches])
        return batch

    # --- epochs --------------------------------------------------------------------------------
    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        return False  # every epoch draws other items

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        if epoch == self._cur_epoch:
            return
        for d in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)
        self._cur_epoch = epoch
        self._establish_virtual_datasets()

    def _establish_virtual_datasets(self) -> None:
        if self.sample_ratios is None and self._cur_indices is not None:
            return  # a concatenation: the same items every epoch
        self._sizes = None
        rng = np.random.RandomState([_class_seed(type(self)), self.seed % (2**32), self._cur_epoch])
        self._cur_indices, self.cumulated_sizes, self.virtual_size_per_dataset = self.get_virtual_indices(
            rng, self.datasets, self.sample_ratios, self.virtual_size
        )
        raw = dict(zip(self.keys, (len(d) for d in self.datasets)))
        sampled = dict(zip(self.keys, self.virtual_size_per_dataset.tolist()))
        logger.info(f"[{self.split}] Raw sizes: {raw}; raw total size: {sum(raw.values())}")
        logger.info(f"[{self.split}] Resampled sizes: {sampled}; resampled total size: {sum(sampled.values())}")
        if self.sample_ratios is not None:
            logger.info(f"[{self.split}] Upsampling ratios: {dict(zip(self.keys, self.sample_ratios.tolist()))}")
        else:
            logger.info(f"[{self.split}] A concat dataset")
