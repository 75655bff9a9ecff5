"""Epoch-aware, resumable, shardable iteration over batches of a map-style dataset."""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch.utils.data

from fairseq_lite.data.data_utils import numpy_seed
from fairseq_lite.errors import CheckpointError, DataError

logger = logging.getLogger(__name__)

__all__ = ["CountingIterator", "GroupedIterator", "ShardedIterator", "EpochBatchIterator"]

BatchSampler = Sequence[Sequence[int]] | Callable[[Any, int], Sequence[Sequence[int]]]


class CountingIterator:
    """Wrap an iterable and count the items consumed.

    Args:
        iterable: what to wrap.
        start: initial count (it does not advance the iterable: use it when the iterable
            already starts mid-way, e.g. after a resume). Defaults to ``iterable.n`` if present.
        total: length reported by ``len()`` and where iteration stops; defaults to
            ``start + len(iterable)``.
    """

    def __init__(self, iterable: Iterable[Any], start: int | None = None, total: int | None = None):
        self._itr = iter(iterable)
        self.n: int = start or getattr(iterable, "n", 0)
        if total is None:
            total = self.n + len(iterable)  # type: ignore[arg-type]
        self.total: int = total

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> CountingIterator:
        return self

    def __next__(self) -> Any:
        if not self.has_next():
            raise StopIteration
        try:
            item = next(self._itr)
        except StopIteration:
            raise IndexError(
                f"iterator expected to have length {self.total}, but it was exhausted at position {self.n}"
            ) from None
        self.n += 1
        return item

    def has_next(self) -> bool:
        """Whether items remain."""
        return self.n < self.total

    def skip(self, n: int) -> CountingIterator:
        """Consume and discard the next ``n`` items."""
        for _ in range(n):
            next(self)
        return self

    def take(self, n: int) -> CountingIterator:
        """Stop after ``n`` items in total (counted from the epoch start, like ``n``)."""
        self.total = min(self.total, n)
        # let a wrapped counting iterator know too, so its own end-of-epoch is consistent
        if hasattr(self._itr, "take"):
            self._itr.take(max(n - self.n, 0))
        return self


def _chunks(itr: Iterable[Any], chunk_size: int, skip_remainder: bool) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in itr:
        chunk.append(item)
        if len(chunk) == chunk_size:
            yield chunk
            chunk = []
    if chunk and not skip_remainder:
        yield chunk


class GroupedIterator(CountingIterator):
    """Yield lists of ``chunk_size`` consecutive items (``--update-freq``); the last may be short.

    With ``skip_remainder_batch`` the short last group is dropped, and so are its items in the
    wrapped iterator, so that the epoch ends when the grouped iterator does.
    """

    def __init__(self, iterable: Any, chunk_size: int, skip_remainder_batch: bool = False):
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if skip_remainder_batch:
            total = len(iterable) // chunk_size
        else:
            total = math.ceil(len(iterable) / chunk_size)
        super().__init__(
            _chunks(iterable, chunk_size, skip_remainder_batch),
            start=math.ceil(getattr(iterable, "n", 0) / chunk_size),
            total=total,
        )
        self.chunk_size = chunk_size
        if skip_remainder_batch:
            self.take(total)
            if hasattr(iterable, "take"):
                iterable.take(total * chunk_size)


class ShardedIterator(CountingIterator):
    """Every ``num_shards``-th item starting at ``shard_id``; all shards have the same length.

    Shards that come up short are padded with ``fill_value`` so that every distributed rank
    runs the same number of steps.
    """

    def __init__(self, iterable: Sequence[Any], num_shards: int, shard_id: int, fill_value: Any = None):
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        sharded_len = math.ceil(len(iterable) / num_shards)
        mine = itertools.islice(iterable, shard_id, len(iterable), num_shards)
        padded = (item for _, item in itertools.zip_longest(range(sharded_len), mine, fillvalue=fill_value))
        super().__init__(
            padded,
            start=math.ceil(getattr(iterable, "n", 0) / num_shards),
            total=sharded_len,
        )


def _load_batches(dataset: Any, collate_fn: Callable, batches: Iterable[Sequence[int]]) -> Iterator[Any]:
    for batch in batches:
        yield collate_fn([dataset[i] for i in batch])


class EpochBatchIterator:
    """A multi-epoch iterator over the batches of a dataset.

    Compared with a plain DataLoader it can be reused epoch after epoch (reshuffling batches
    with a seed derived from ``(seed, epoch)``), sharded across distributed ranks, and saved and
    restored mid-epoch with :meth:`state_dict` / :meth:`load_state_dict`.

    Args:
        dataset: map-style dataset; ``dataset[i]`` gives a sample.
        collate_fn: merges a list of samples into a batch (``[]`` gives the dummy batch).
        batch_sampler: the batches (sequences of dataset indices), or a callable
            ``(dataset, epoch) -> batches`` called at every new epoch.
        seed: shuffling seed; batch order is a function of ``(seed, epoch)`` only.
        num_shards, shard_id: this rank's share of every epoch (batches ``shard_id``,
            ``shard_id + num_shards``, ...); all ranks get the same count, short ones padded with
            empty batches.
        num_workers: DataLoader worker processes (0 loads in the main process).
        epoch: the epoch to start from (1-based).
        buffer_size: accepted for compatibility; DataLoader prefetching is used instead.
        timeout: DataLoader timeout for collecting a batch from workers.
        disable_shuffling: never shuffle batches.
        skip_remainder_batch: drop each epoch's last batch.
        grouped_shuffling: shuffle groups of ``num_shards`` consecutive batches together.
        pin_memory: let the DataLoader pin batches (only useful with a GPU).
    """

    def __init__(
        self,
        dataset: torch.utils.data.Dataset,
        collate_fn: Callable[[list[Any]], Any],
        batch_sampler: BatchSampler,
        seed: int = 1,
        num_shards: int = 1,
        shard_id: int = 0,
        num_workers: int = 0,
        epoch: int = 1,
        buffer_size: int = 0,
        timeout: float = 0,
        disable_shuffling: bool = False,
        skip_remainder_batch: bool = False,
        grouped_shuffling: bool = False,
        pin_memory: bool = False,
    ) -> None:
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, {num_shards}), got {shard_id}")
        self.dataset = dataset
        self.collate_fn = collate_fn
        self.batch_sampler = batch_sampler
        self._frozen_batches: tuple[Sequence[int], ...] | None = (
            None if callable(batch_sampler) else tuple(batch_sampler)
        )
        self.seed = seed
        self.num_shards = num_shards
        self.shard_id = shard_id
        self.num_workers = num_workers
        self.buffer_size = min(buffer_size, 20)
        self.timeout = timeout
        self.disable_shuffling = disable_shuffling
        self.skip_remainder_batch = skip_remainder_batch
        self.grouped_shuffling = grouped_shuffling
        self.pin_memory = pin_memory

        self.epoch = max(epoch, 1)
        self.shuffle = not disable_shuffling
        # Batches of the current epoch (in global order, all shards) done before this process
        # started it: non-zero only after resuming a checkpoint saved with another number of shards.
        self._epoch_start = 0
        self._cur_epoch_itr: CountingIterator | None = None
        self._next_epoch_itr: CountingIterator | None = None

    # -- batches -----------------------------------------------------------------------------

    @property
    def frozen_batches(self) -> tuple[Sequence[int], ...]:
        """The unshuffled, unsharded batches of the current epoch."""
        if self._frozen_batches is None:
            make_batches = self.batch_sampler
            assert callable(make_batches)
            self._frozen_batches = tuple(make_batches(self.dataset, self.epoch))
        return self._frozen_batches

    @property
    def first_batch(self) -> Any:
        if len(self.frozen_batches) == 0:
            raise DataError(
                "the dataset is empty: all samples may have been skipped; try a larger --max-tokens or a larger dataset"
            )
        if getattr(self.dataset, "supports_fetch_outside_dataloader", True):
            return self.collate_fn([self.dataset[i] for i in self.frozen_batches[0]])
        return "DUMMY"

    def __len__(self) -> int:
        """Number of batches per epoch for this shard."""
        return math.ceil(max(0, len(self.frozen_batches) - self._epoch_start) / self.num_shards)

    def ordered_batches(self, epoch: int, shuffle: bool, start: int = 0) -> list[Sequence[int]]:
        """This shard's batches for ``epoch``, in iteration order, leaving out the epoch's first
        ``start`` batches (in global order, before sharding)."""
        batches: list[Sequence[int]] = list(self.frozen_batches)
        if shuffle:
            with numpy_seed(self.seed + epoch):
                if self.grouped_shuffling:
                    groups = [
                        batches[i * self.num_shards : (i + 1) * self.num_shards]
                        for i in range(len(batches) // self.num_shards)
                    ]
                    leftover = batches[len(groups) * self.num_shards :]
                    np.random.shuffle(groups)
                    # fairseq drops the leftover batches here; keep them, at the end
                    batches = list(itertools.chain.from_iterable(groups)) + leftover
                else:
                    np.random.shuffle(batches)
        return list(ShardedIterator(batches[start:], self.num_shards, self.shard_id, fill_value=[]))

    # -- epochs ------------------------------------------------------------------------------

    @property
    def next_epoch_idx(self) -> int:
        """The epoch that :meth:`next_epoch_itr` will return."""
        if self._next_epoch_itr is not None:
            return self.epoch
        if self._cur_epoch_itr is not None and self.end_of_epoch():
            return self.epoch + 1
        return self.epoch

    def next_epoch_itr(
        self,
        shuffle: bool = True,
        fix_batches_to_gpus: bool = False,
        set_dataset_epoch: bool = True,
    ) -> CountingIterator:
        """Start (or, after :meth:`load_state_dict`, resume) the next epoch's iterator.

        ``fix_batches_to_gpus`` only matters for datasets that prefetch, which are not
        supported here; it is accepted for compatibility.
        """
        if self.disable_shuffling:
            shuffle = False
        prev_epoch = self.epoch
        self.epoch = self.next_epoch_idx
        if set_dataset_epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        if self._next_epoch_itr is not None:
            self._cur_epoch_itr = self._next_epoch_itr
            self._next_epoch_itr = None
        else:
            if callable(self.batch_sampler) and prev_epoch != self.epoch:
                self._frozen_batches = None  # rebuild batches for the new epoch
            self._epoch_start = 0
            self._cur_epoch_itr = self._get_iterator_for_epoch(self.epoch, shuffle)
        self.shuffle = shuffle
        return self._cur_epoch_itr

    def end_of_epoch(self) -> bool:
        """Whether the current epoch's iterator is exhausted."""
        return self._cur_epoch_itr is not None and not self._cur_epoch_itr.has_next()

    @property
    def iterations_in_epoch(self) -> int:
        """Batches consumed so far in the current epoch."""
        if self._cur_epoch_itr is not None:
            return self._cur_epoch_itr.n
        if self._next_epoch_itr is not None:
            return self._next_epoch_itr.n
        return 0

    @property
    def n(self) -> int:
        return self.iterations_in_epoch

    # -- checkpointing -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where iteration stands, as plain Python values.

        At the end of an epoch this already points at the start of the next one.
        """
        if self.end_of_epoch():
            epoch, iterations = self.epoch + 1, 0
        else:
            epoch, iterations = self.epoch, self.iterations_in_epoch
        return {
            "version": 2,
            "epoch": int(epoch),
            "iterations_in_epoch": int(iterations),
            "shuffle": bool(self.shuffle),
            # With these two, a run resumed on another number of ranks goes on from the same
            # global batch: all shards advance together, so num_shards * iterations are done.
            "num_shards": int(self.num_shards),
            "epoch_start": int(self._epoch_start if iterations else 0),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`; the next :meth:`next_epoch_itr`
        continues right after the last consumed batch."""
        self.epoch = int(state_dict["epoch"])
        offset = int(state_dict.get("iterations_in_epoch", 0))
        version = state_dict.get("version", 1)
        saved_shards = int(state_dict.get("num_shards", self.num_shards))
        self._epoch_start = int(state_dict.get("epoch_start", 0))
        self._cur_epoch_itr = None
        if callable(self.batch_sampler):
            self._frozen_batches = None
        if offset > 0 and saved_shards != self.num_shards:
            if self.grouped_shuffling:
                raise CheckpointError(
                    f"cannot resume mid-epoch with grouped shuffling on {self.num_shards} ranks from a "
                    f"checkpoint saved on {saved_shards}; restart with --reset-dataloader"
                )
            # Another world size: this epoch's batch order is the same, so skip the batches all the
            # old ranks consumed and share out the rest among the new ones.
            consumed = self._epoch_start + offset * saved_shards
            if consumed >= len(self.frozen_batches):
                self.epoch += 1
                self._epoch_start = 0
                self._next_epoch_itr = None
                return
            self._epoch_start, offset = consumed, 0
            self._next_epoch_itr = self._get_iterator_for_epoch(
                self.epoch, shuffle=bool(state_dict.get("shuffle", True))
            )
            return
        if offset > 0:
            itr = self._get_iterator_for_epoch(self.epoch, shuffle=bool(state_dict.get("shuffle", True)), offset=offset)
            if itr is None:
                if version == 1:
                    # legacy checkpoints saved at the very end of an epoch: go on with the next
                    self.epoch += 1
                else:
                    raise CheckpointError(
                        f"cannot resume: the checkpoint is {offset} batches into epoch "
                        f"{self.epoch} but this epoch has only {len(self)} batches (the data or "
                        "batching options changed); restart with --reset-dataloader"
                    )
            self._next_epoch_itr = itr
        else:
            self._next_epoch_itr = None

    # -- loading -----------------------------------------------------------------------------

    def _get_iterator_for_epoch(self, epoch: int, shuffle: bool, offset: int = 0) -> CountingIterator | None:
        batches = self.ordered_batches(epoch, shuffle, start=self._epoch_start)
        epoch_len = len(batches)
        remaining = batches[offset:]
        if offset > 0 and len(remaining) == 0:
            return None

        if self.num_workers > 0:
            loader: Iterable[Any] = torch.utils.data.DataLoader(
                self.dataset,
                collate_fn=self.collate_fn,
                batch_sampler=remaining,
                num_workers=self.num_workers,
                timeout=self.timeout,
                pin_memory=self.pin_memory,
                # fairseq's data_buffer_size: batches each worker loads ahead of the trainer
                prefetch_factor=max(1, self.buffer_size) if self.buffer_size else None,
                persistent_workers=False,
            )
        else:
            loader = _load_batches(self.dataset, self.collate_fn, remaining)

        itr = CountingIterator(loader, start=offset, total=epoch_len)
        if self.skip_remainder_batch:
            itr.take(epoch_len - 1)
        return itr
