"""Padding, seeding, batching and size filtering (fairseq_lite.data.data_utils)."""

import numpy as np
import pytest
import torch

from fairseq_lite.data.data_utils import (
    batch_by_size,
    collate_tokens,
    filter_indices_by_size,
    filter_paired_dataset_indices_by_size,
    numpy_seed,
)
from fairseq_lite.errors import ConfigError, DataError, FairseqLiteError

PAD, EOS = 1, 2


def t(*values):
    return torch.tensor(values, dtype=torch.long)


# -- collate_tokens --------------------------------------------------------------------------


def test_collate_right_and_left_pad():
    values = [t(5, 6, 2), t(7, 2)]
    assert collate_tokens(values, PAD).tolist() == [[5, 6, 2], [7, 2, 1]]
    assert collate_tokens(values, PAD, left_pad=True).tolist() == [[5, 6, 2], [1, 7, 2]]


def test_collate_move_eos_to_beginning():
    values = [t(5, 6, 2), t(7, 2)]
    out = collate_tokens(values, PAD, EOS, move_eos_to_beginning=True)
    assert out.tolist() == [[2, 5, 6], [2, 7, 1]]
    # without an eos index the last token is rotated to the front
    out = collate_tokens([t(5, 6, 9)], PAD, None, move_eos_to_beginning=True)
    assert out.tolist() == [[9, 5, 6]]


def test_collate_pad_to_length_multiple_and_bsz():
    values = [t(5, 6, 2), t(7, 2)]
    assert collate_tokens(values, PAD, pad_to_length=5).shape == (2, 5)
    assert collate_tokens(values, PAD, pad_to_length=2).shape == (2, 3)
    assert collate_tokens(values, PAD, pad_to_multiple=8).shape == (2, 8)
    assert collate_tokens([t(*range(8))], PAD, pad_to_multiple=8).shape == (1, 8)
    out = collate_tokens(values, PAD, pad_to_bsz=4)
    assert out.shape == (4, 3)
    assert out[2:].eq(PAD).all()


def test_collate_keeps_dtype():
    out = collate_tokens([torch.tensor([1, 2], dtype=torch.int32)], 0)
    assert out.dtype == torch.int32


# -- numpy_seed ------------------------------------------------------------------------------


def test_numpy_seed_restores_global_state():
    np.random.seed(123)
    expected = np.random.rand(3)
    np.random.seed(123)
    with numpy_seed(7):
        np.random.rand(10)
    assert np.allclose(np.random.rand(3), expected)


def test_numpy_seed_reproducible_and_matches_fairseq():
    with numpy_seed(1, 2):
        first = np.random.permutation(8).tolist()
    with numpy_seed(1, 2):
        second = np.random.permutation(8).tolist()
    assert first == second == [2, 1, 5, 6, 4, 3, 0, 7]  # fairseq 0.12.2's value
    with numpy_seed(1, 3):
        assert np.random.permutation(8).tolist() != first


def test_numpy_seed_none_is_a_no_op():
    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    with numpy_seed(None):
        pass
    assert np.random.rand() == expected


# -- batch_by_size ---------------------------------------------------------------------------


def reference_batches(indices, ntok, max_tokens, max_sentences, mult):
    """Slow, obviously-correct statement of fairseq's batch_by_size_vec semantics."""
    batches, start, n = [], 0, len(indices)
    while start < n:
        count = 0
        while start + count < n:
            k = count + 1
            padded = k * max(ntok[start : start + k])
            if (max_tokens and max_tokens > 0 and padded > max_tokens) or (
                max_sentences and max_sentences > 0 and k > max_sentences
            ):
                break
            count = k
        if count > mult:
            count -= count % mult
        batches.append(list(indices[start : start + count]))
        start += count
    return batches


SIZES = np.array([1, 2, 2, 3, 3, 3, 4, 5, 5, 8, 9, 9, 10], dtype=np.int64)


@pytest.mark.parametrize(
    "max_tokens, max_sentences, mult, expected",
    [
        # literals produced by fairseq 0.12.2's batch_by_size
        (20, None, 1, [[0, 1, 2, 3, 4, 5], [6, 7, 8], [9, 10], [11, 12]]),
        (40, None, 4, [[0, 1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11], [12]]),
        (None, 5, 2, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12]]),
    ],
)
def test_batch_by_size_matches_fairseq(max_tokens, max_sentences, mult, expected):
    batches = batch_by_size(
        np.arange(13),
        num_tokens_vec=SIZES,
        max_tokens=max_tokens,
        max_sentences=max_sentences,
        required_batch_size_multiple=mult,
    )
    assert [b.tolist() for b in batches] == expected
    assert all(b.dtype == np.int64 for b in batches)


@pytest.mark.parametrize("sort", [True, False])
def test_batch_by_size_random_against_reference(sort):
    rng = np.random.RandomState(0)
    for _ in range(150):
        n = rng.randint(1, 120)
        ntok = rng.randint(1, 40, size=n)
        if sort:
            ntok = np.sort(ntok)
        indices = rng.permutation(n) + 1000
        max_tokens = int(rng.choice([0, 40, 64, 100, 500]))
        max_sentences = int(rng.choice([0, 1, 3, 8, 50]))
        mult = int(rng.choice([1, 2, 3, 8]))
        got = batch_by_size(
            indices,
            num_tokens_vec=ntok,
            max_tokens=max_tokens or None,
            max_sentences=max_sentences or None,
            required_batch_size_multiple=mult,
        )
        assert [b.tolist() for b in got] == reference_batches(
            indices.tolist(), ntok.tolist(), max_tokens, max_sentences, mult
        )


def test_batch_by_size_limits_hold():
    rng = np.random.RandomState(1)
    sizes = rng.randint(1, 100, size=5000)
    indices = np.argsort(sizes, kind="stable")
    batches = batch_by_size(
        indices,
        num_tokens_vec=sizes[indices],
        max_tokens=1000,
        max_sentences=64,
        required_batch_size_multiple=8,
    )
    assert np.array_equal(np.concatenate(batches), indices)
    for b in batches:
        assert len(b) * sizes[b].max() <= 1000
        assert len(b) <= 64
        assert len(b) % 8 == 0 or len(b) < 8


def test_batch_by_size_with_num_tokens_fn_equals_vec():
    sizes = np.random.RandomState(2).randint(1, 30, size=300)
    indices = np.random.RandomState(3).permutation(300)
    by_fn = batch_by_size(indices, num_tokens_fn=lambda i: sizes[i], max_tokens=90, required_batch_size_multiple=4)
    by_vec = batch_by_size(indices, num_tokens_vec=sizes[indices], max_tokens=90, required_batch_size_multiple=4)
    assert [b.tolist() for b in by_fn] == [b.tolist() for b in by_vec]


def test_batch_by_size_item_too_long_is_a_clear_error():
    with pytest.raises(DataError) as excinfo:
        batch_by_size([4, 7, 9], num_tokens_vec=[3, 50, 4], max_tokens=10)
    message = str(excinfo.value)
    assert "#7" in message and "50" in message and "10" in message
    assert isinstance(excinfo.value, FairseqLiteError)


def test_batch_by_size_edge_cases():
    assert batch_by_size(np.array([], dtype=np.int64), num_tokens_vec=[]) == []
    # no limits at all: one batch, still trimmed to the multiple
    assert [b.tolist() for b in batch_by_size(range(10), num_tokens_vec=[1] * 10)] == [list(range(10))]
    got = batch_by_size(range(10), num_tokens_vec=[1] * 10, required_batch_size_multiple=4)
    assert [len(b) for b in got] == [8, 2]
    with pytest.raises(ConfigError):
        batch_by_size(range(3), num_tokens_vec=[1] * 3, required_batch_size_multiple=0)


def test_batch_by_size_fixed_shapes():
    sizes = np.array([2, 2, 3, 3, 3, 6, 6, 8])
    batches = batch_by_size(np.arange(8), num_tokens_fn=lambda i: sizes[i], fixed_shapes=[(4, 3), (2, 8)])
    assert [b.tolist() for b in batches] == [[0, 1, 2, 3], [4, 5], [6, 7]]


# -- filtering -------------------------------------------------------------------------------


def test_filter_indices_by_size_keeps_order_and_reports_ignored(caplog):
    sizes = np.array([5, 12, 3, 11, 7])
    kept, ignored = filter_indices_by_size(np.array([4, 3, 2, 1, 0]), sizes, 10)
    assert kept.tolist() == [4, 2, 0]
    assert ignored == [3, 1]
    assert "2 samples have invalid sizes" in caplog.text


def test_filter_indices_by_size_raises_with_fairseq_message():
    sizes = np.array([5, 12, 3, 11])
    with pytest.raises(DataError) as excinfo:
        filter_indices_by_size(np.arange(4), sizes, 10, raise_exception=True)
    message = str(excinfo.value)
    assert "Size of sample #1 is invalid (=12) since max_positions=10" in message
    assert "--skip-invalid-size-inputs-valid-test" in message
    assert "[1, 3]" in message


def test_filter_indices_by_size_tuples_and_none():
    pair_sizes = np.array([[5, 5], [5, 20], [20, 5]])
    kept, ignored = filter_indices_by_size(np.arange(3), pair_sizes, (10, None))
    assert kept.tolist() == [0, 1] and ignored == [2]
    kept, ignored = filter_indices_by_size(np.arange(3), pair_sizes, 10)
    assert kept.tolist() == [0] and ignored == [1, 2]
    kept, ignored = filter_indices_by_size(np.arange(3), np.array([1, 2, 3]), None)
    assert kept.tolist() == [0, 1, 2] and ignored == []


def test_filter_paired_dataset_indices_by_size():
    src, tgt = np.array([5, 12, 3]), np.array([4, 4, 30])
    kept, ignored = filter_paired_dataset_indices_by_size(src, tgt, np.arange(3), (10, 20))
    assert kept.tolist() == [0] and ignored == [1, 2]
    kept, ignored = filter_paired_dataset_indices_by_size(src, None, np.arange(3), 10)
    assert kept.tolist() == [0, 2] and ignored == [1]
