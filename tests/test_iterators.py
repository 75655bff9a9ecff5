"""Counting/grouped/sharded iterators and the resumable EpochBatchIterator."""

import numpy as np
import pytest
import torch

from fairseq_lite.data.iterators import (
    CountingIterator,
    EpochBatchIterator,
    GroupedIterator,
    ShardedIterator,
)
from fairseq_lite.errors import CheckpointError


class Numbers(torch.utils.data.Dataset):
    """dataset[i] == i; records the epochs it was told about."""

    def __init__(self, n=50):
        self.n = n
        self.epochs = []

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return int(i)

    def set_epoch(self, epoch):
        self.epochs.append(epoch)


def collate(samples):
    return list(samples) if samples else {}


def collate_tensor(samples):
    return torch.tensor(samples, dtype=torch.long) if samples else {}


BATCHES = [list(range(i, min(i + 3, 50))) for i in range(0, 50, 3)]  # 17 batches


def make_itr(**kwargs):
    kwargs.setdefault("seed", 7)
    return EpochBatchIterator(Numbers(), collate, BATCHES, **kwargs)


# -- small iterators -------------------------------------------------------------------------


def test_counting_iterator():
    itr = CountingIterator(range(10))
    assert len(itr) == 10 and itr.n == 0 and itr.has_next()
    assert next(itr) == 0 and itr.n == 1
    itr.skip(3)
    assert next(itr) == 4 and itr.n == 5
    itr.take(7)
    assert list(itr) == [5, 6]
    assert not itr.has_next() and itr.n == 7


def test_counting_iterator_start_and_short_source():
    itr = CountingIterator(iter([5, 6]), start=3, total=6)
    assert itr.n == 3 and len(itr) == 6
    assert next(itr) == 5 and next(itr) == 6
    with pytest.raises(IndexError):
        next(itr)


def test_grouped_iterator():
    itr = GroupedIterator(CountingIterator(range(7)), 3)
    assert len(itr) == 3
    assert list(itr) == [[0, 1, 2], [3, 4, 5], [6]]
    itr = GroupedIterator(CountingIterator(range(7)), 3, skip_remainder_batch=True)
    assert len(itr) == 2
    assert list(itr) == [[0, 1, 2], [3, 4, 5]]


def test_grouped_iterator_resumes_count():
    inner = CountingIterator(range(10))
    inner.skip(4)
    assert GroupedIterator(inner, 2).n == 2


def test_sharded_iterator_pads_short_shards():
    data = list(range(7))
    shards = [list(ShardedIterator(data, 3, i, fill_value=-1)) for i in range(3)]
    assert shards == [[0, 3, 6], [1, 4, -1], [2, 5, -1]]
    with pytest.raises(ValueError):
        ShardedIterator(data, 3, 3)


# -- EpochBatchIterator ----------------------------------------------------------------------


def epoch_batches(itr, **kwargs):
    return list(itr.next_epoch_itr(**kwargs))


def test_order_matches_fairseq():
    itr = make_itr()
    # produced by fairseq 0.12.2's EpochBatchIterator with the same batches and seed=7
    assert epoch_batches(itr) == [
        [18, 19, 20],
        [39, 40, 41],
        [6, 7, 8],
        [42, 43, 44],
        [45, 46, 47],
        [36, 37, 38],
        [0, 1, 2],
        [21, 22, 23],
        [33, 34, 35],
        [48, 49],
        [24, 25, 26],
        [30, 31, 32],
        [15, 16, 17],
        [27, 28, 29],
        [3, 4, 5],
        [12, 13, 14],
        [9, 10, 11],
    ]
    assert epoch_batches(itr)[:3] == [[45, 46, 47], [6, 7, 8], [21, 22, 23]]
    sharded = make_itr(num_shards=3, shard_id=1)
    assert epoch_batches(sharded) == [[39, 40, 41], [45, 46, 47], [21, 22, 23], [24, 25, 26], [27, 28, 29], [9, 10, 11]]


def test_order_is_a_function_of_seed_and_epoch():
    a, b = make_itr(), make_itr()
    first_a, second_a = epoch_batches(a), epoch_batches(a)
    assert first_a != second_a
    assert sorted(map(tuple, first_a)) == sorted(map(tuple, BATCHES))
    # a fresh iterator started directly at epoch 2 gives epoch 2's order
    assert epoch_batches(make_itr(epoch=2)) == second_a
    assert epoch_batches(b) == first_a
    # numpy's global RNG state does not matter, and is left untouched
    np.random.seed(0)
    state = np.random.get_state()[1].copy()
    assert epoch_batches(make_itr()) == first_a
    assert (np.random.get_state()[1] == state).all()
    assert epoch_batches(make_itr(seed=8)) != first_a


def test_unshuffled_and_disabled_shuffling_keep_order():
    assert epoch_batches(make_itr(), shuffle=False) == BATCHES
    itr = make_itr(disable_shuffling=True)
    assert epoch_batches(itr) == BATCHES
    assert itr.state_dict()["shuffle"] is False


def test_epoch_bookkeeping_and_set_epoch():
    itr = make_itr()
    assert itr.epoch == 1 and itr.next_epoch_idx == 1 and len(itr) == 17
    epoch_itr = itr.next_epoch_itr()
    assert not itr.end_of_epoch()
    for _ in range(5):
        next(epoch_itr)
    assert itr.iterations_in_epoch == 5
    list(epoch_itr)
    assert itr.end_of_epoch() and itr.next_epoch_idx == 2
    itr.next_epoch_itr()
    assert itr.epoch == 2
    assert itr.dataset.epochs == [1, 2]


@pytest.mark.parametrize("num_shards", [1, 2, 3, 4])
def test_shards_partition_batches_with_equal_lengths(num_shards):
    per_shard = [epoch_batches(make_itr(num_shards=num_shards, shard_id=r)) for r in range(num_shards)]
    assert len({len(s) for s in per_shard}) == 1
    assert all(len(make_itr(num_shards=num_shards, shard_id=r)) == len(per_shard[r]) for r in range(num_shards))
    real = [tuple(b) for s in per_shard for b in s if b != {}]
    assert sorted(real) == sorted(map(tuple, BATCHES))
    dummies = sum(b == {} for s in per_shard for b in s)
    assert dummies == len(per_shard[0]) * num_shards - len(BATCHES)


@pytest.mark.parametrize("consumed", [0, 1, 6, 16])
def test_mid_epoch_resume(consumed):
    reference = make_itr()
    epoch_batches(reference)
    full = epoch_batches(reference)  # epoch 2

    itr = make_itr()
    epoch_batches(itr)
    epoch_itr = itr.next_epoch_itr()
    for _ in range(consumed):
        next(epoch_itr)
    state = itr.state_dict()
    assert state == {
        "version": 2,
        "epoch": 2,
        "iterations_in_epoch": consumed,
        "shuffle": True,
        "num_shards": 1,
        "epoch_start": 0,
    }
    assert all(type(v) in (int, bool) for v in state.values())

    resumed = make_itr()
    resumed.load_state_dict(state)
    assert resumed.iterations_in_epoch == consumed
    rest = resumed.next_epoch_itr()
    assert resumed.epoch == 2 and rest.n == consumed and len(rest) == len(full)
    assert list(rest) == full[consumed:]
    assert resumed.end_of_epoch()
    assert epoch_batches(resumed) == epoch_batches(reference)  # epoch 3 continues normally


def test_resume_from_end_of_epoch_starts_next_epoch():
    itr = make_itr()
    epoch_batches(itr)
    state = itr.state_dict()
    assert state["epoch"] == 2 and state["iterations_in_epoch"] == 0
    resumed = make_itr()
    resumed.load_state_dict(state)
    expected = make_itr()
    epoch_batches(expected)
    assert epoch_batches(resumed) == epoch_batches(expected)
    assert resumed.epoch == 2


def test_resume_past_the_end_is_an_error():
    itr = make_itr()
    with pytest.raises(CheckpointError):
        itr.load_state_dict({"version": 2, "epoch": 1, "iterations_in_epoch": 99})


def test_sharded_resume():
    full = epoch_batches(make_itr(num_shards=3, shard_id=2))
    itr = make_itr(num_shards=3, shard_id=2)
    epoch_itr = itr.next_epoch_itr()
    next(epoch_itr), next(epoch_itr)
    resumed = make_itr(num_shards=3, shard_id=2)
    resumed.load_state_dict(itr.state_dict())
    assert epoch_batches(resumed) == full[2:]


def test_num_workers_gives_the_same_batches():
    def run(num_workers):
        itr = EpochBatchIterator(
            Numbers(),
            collate_tensor,
            BATCHES,
            seed=3,
            num_shards=2,
            shard_id=1,
            num_workers=num_workers,
        )
        out = []
        for _ in range(2):
            out.append([b.tolist() if torch.is_tensor(b) else b for b in itr.next_epoch_itr()])
        return out

    assert run(2) == run(0)


def test_num_workers_resume():
    itr = EpochBatchIterator(Numbers(), collate_tensor, BATCHES, seed=3, num_workers=2)
    epoch_itr = itr.next_epoch_itr()
    first = [next(epoch_itr).tolist() for _ in range(4)]
    rest = [b.tolist() for b in epoch_itr]
    resumed = EpochBatchIterator(Numbers(), collate_tensor, BATCHES, seed=3, num_workers=2)
    resumed.load_state_dict({"epoch": 1, "iterations_in_epoch": 4, "shuffle": True})
    assert [b.tolist() for b in resumed.next_epoch_itr()] == rest
    assert len(first) == 4


def test_callable_batch_sampler_is_called_per_epoch():
    calls = []

    def sampler(dataset, epoch):
        calls.append(epoch)
        return [np.array([epoch, i]) for i in range(4)]

    itr = EpochBatchIterator(Numbers(), collate, sampler, seed=1)
    first = epoch_batches(itr, shuffle=False)
    second = epoch_batches(itr, shuffle=False)
    assert first == [[1, i] for i in range(4)]
    assert second == [[2, i] for i in range(4)]
    assert calls == [1, 2]


def test_skip_remainder_batch():
    itr = make_itr(skip_remainder_batch=True)
    batches = epoch_batches(itr, shuffle=False)
    assert batches == BATCHES[:-1]
    assert itr.end_of_epoch()


def test_first_batch():
    assert make_itr().first_batch == [0, 1, 2]


@pytest.mark.parametrize("old_shards,new_shards,consumed", [(2, 1, 3), (2, 3, 4), (3, 2, 1), (1, 2, 5), (2, 1, 8)])
def test_resume_on_another_number_of_shards_continues_the_global_order(old_shards, new_shards, consumed):
    """A checkpoint saved on `old_shards` ranks resumed on `new_shards`: the new ranks together get
    exactly the batches the old ones had not reached yet, then the next epoch is as usual."""
    order = epoch_batches(make_itr())  # the epoch's global batch order (1 shard)
    itr = make_itr(num_shards=old_shards, shard_id=0)
    epoch_itr = itr.next_epoch_itr()
    for _ in range(consumed):
        next(epoch_itr)
    state = itr.state_dict()
    done = min(consumed * old_shards, len(order))
    got = []
    for shard in range(new_shards):
        resumed = make_itr(num_shards=new_shards, shard_id=shard)
        resumed.load_state_dict(state)
        mine = [b for b in epoch_batches(resumed) if b]
        assert len(resumed) == -(-(len(order) - done) // new_shards)
        got.append(mine)
        # A second save and resume within that epoch keeps counting from the same global start.
        again = make_itr(num_shards=new_shards, shard_id=shard)
        again.load_state_dict(state)
        first = again.next_epoch_itr()
        if len(mine) > 1:  # still mid-epoch after one more batch
            next(first)
            third = make_itr(num_shards=new_shards, shard_id=shard)
            third.load_state_dict(again.state_dict())
            assert [b for b in epoch_batches(third) if b] == mine[1:]
    interleaved = [b for i in range(len(order)) for shard in got if i < len(shard) for b in [shard[i]]]
    assert interleaved == order[done:]
