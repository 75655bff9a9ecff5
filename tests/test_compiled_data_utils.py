"""Compiled batching and token-block builders (fairseq_lite/csrc/data_utils.cpp) against the numpy
references in fairseq_lite.data: the same batches and blocks on random inputs and edge cases.

Every public-API test runs on both paths: `reference` forces the numpy code, `compiled` forces the
C++ operators (skipped when fairseq_lite._C is not built).
"""

import warnings

import numpy as np
import pytest
import torch

from fairseq_lite import kernels
from fairseq_lite.data.data_utils import batch_by_size
from fairseq_lite.data.token_block_dataset import BREAK_MODES, TokenBlockDataset, _build_blocks
from fairseq_lite.errors import ConfigError, DataError

needs_extension = pytest.mark.skipif(
    not kernels.extension_available(), reason="fairseq_lite._C is not built (pip install --no-build-isolation -e .)"
)


@pytest.fixture(params=["reference", pytest.param("compiled", marks=needs_extension)])
def path(request):
    """Runs the test on the numpy reference and on the compiled operators."""
    with kernels.force_reference(request.param == "reference"):
        if request.param == "compiled":
            for op in ("batch_by_size", "batch_fixed_shapes", "token_block_slices"):
                assert kernels.compiled_op(op, torch.device("cpu")) is not None, op
        yield request.param


def on_both_paths(fn):
    """(reference result, compiled result) of fn(); the test is skipped without the extension."""
    if not kernels.extension_available():
        pytest.skip("fairseq_lite._C is not built")
    with kernels.force_reference(True):
        ref = fn()
    with kernels.force_reference(False):
        got = fn()
    return ref, got


def as_lists(batches):
    assert all(isinstance(b, np.ndarray) and b.dtype == np.int64 for b in batches)
    return [b.tolist() for b in batches]


# -- batch_by_size ---------------------------------------------------------------------------

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
def test_batch_by_size_matches_fairseq(path, max_tokens, max_sentences, mult, expected):
    got = batch_by_size(
        np.arange(13),
        num_tokens_vec=SIZES,
        max_tokens=max_tokens,
        max_sentences=max_sentences,
        required_batch_size_multiple=mult,
    )
    assert as_lists(got) == expected


@pytest.mark.parametrize("order", ["sorted", "random", "descending"])
def test_batch_by_size_compiled_equals_reference(order):
    rng = np.random.RandomState(0)
    for _ in range(200):
        n = int(rng.randint(1, 300))
        ntok = rng.randint(0, 60, size=n)  # zero-length items included
        if order == "sorted":
            ntok = np.sort(ntok)
        elif order == "descending":
            ntok = np.sort(ntok)[::-1]
        indices = rng.permutation(n) + 7
        max_tokens = int(rng.choice([0, 60, 64, 100, 257, 5000]))
        max_sentences = int(rng.choice([0, 1, 3, 8, 50, 1000]))
        mult = int(rng.choice([1, 2, 3, 8, 64, 500]))

        def run():
            return as_lists(
                batch_by_size(
                    indices,
                    num_tokens_vec=ntok,
                    max_tokens=max_tokens or None,
                    max_sentences=max_sentences or None,
                    required_batch_size_multiple=mult,
                )
            )

        ref, got = on_both_paths(run)
        assert got == ref, (n, max_tokens, max_sentences, mult)


def test_batch_by_size_limits_hold_on_a_large_input(path):
    rng = np.random.RandomState(1)
    sizes = rng.randint(1, 256, size=200_000)
    indices = rng.permutation(len(sizes))
    batches = batch_by_size(
        indices, num_tokens_vec=sizes[indices], max_tokens=4096, max_sentences=100, required_batch_size_multiple=8
    )
    assert np.array_equal(np.concatenate(batches), indices)
    lengths = np.array([len(b) for b in batches])
    padded = np.array([len(b) * sizes[b].max() for b in batches])
    assert (padded <= 4096).all() and (lengths <= 100).all()
    assert ((lengths % 8 == 0) | (lengths < 8)).all()


def test_batch_by_size_edge_cases(path):
    assert batch_by_size(np.array([], dtype=np.int64), num_tokens_vec=[]) == []
    assert as_lists(batch_by_size([5], num_tokens_vec=[3], max_tokens=3)) == [[5]]
    # no limits: one batch, trimmed to the multiple (the rest is the last batch)
    assert as_lists(batch_by_size(range(10), num_tokens_vec=[1] * 10)) == [list(range(10))]
    got = batch_by_size(range(10), num_tokens_vec=[1] * 10, required_batch_size_multiple=4)
    assert [len(b) for b in got] == [8, 2]
    # a multiple larger than any batch leaves the batches untrimmed
    got = batch_by_size(range(10), num_tokens_vec=[5] * 10, max_tokens=15, required_batch_size_multiple=16)
    assert [len(b) for b in got] == [3, 3, 3, 1]
    # zero-length items never use up max_tokens
    assert as_lists(batch_by_size(range(6), num_tokens_vec=[0] * 6, max_tokens=1)) == [list(range(6))]
    # max_sentences alone
    assert [len(b) for b in batch_by_size(range(7), num_tokens_vec=[9] * 7, max_sentences=3)] == [3, 3, 1]
    # sizes near the int64 range must not overflow the padded-size product
    huge = 2**62
    got = batch_by_size(range(3), num_tokens_vec=[huge, 1, 1], max_tokens=2**63 - 1)
    assert as_lists(got) == [[0], [1, 2]]
    with pytest.raises(ConfigError):
        batch_by_size(range(3), num_tokens_vec=[1] * 3, required_batch_size_multiple=0)
    with pytest.raises(DataError, match="non-negative"):
        batch_by_size(range(3), num_tokens_vec=[1, -1, 1], max_tokens=4)


def test_batch_by_size_item_too_long_is_a_clear_error(path):
    with pytest.raises(DataError) as excinfo:
        batch_by_size([4, 7, 9], num_tokens_vec=[3, 50, 4], max_tokens=10, required_batch_size_multiple=2)
    message = str(excinfo.value)
    assert "#7" in message and "50" in message and "10" in message


@needs_extension
def test_compiled_ops_check_their_inputs():
    op = torch.ops.fairseq_lite
    with pytest.raises(RuntimeError, match="exceeds max_tokens=10"):
        op.batch_by_size(torch.tensor([3, 50]), 10, -1, 1)  # the operator guards itself, too
    with pytest.raises(RuntimeError, match="int64"):
        op.batch_by_size(torch.tensor([3, 5], dtype=torch.int32), 10, -1, 1)
    with pytest.raises(RuntimeError, match="multiple must be >= 1"):
        op.batch_by_size(torch.tensor([3, 5]), 10, -1, 0)
    with pytest.raises(RuntimeError, match=r"\[S, 2\]"):
        op.batch_fixed_shapes(torch.tensor([3, 5]), torch.tensor([1, 2, 3]))
    with pytest.raises(RuntimeError, match="unknown break mode 'sentence'"):
        op.token_block_slices(torch.tensor([3, 5]), "sentence", 4, 1)
    with pytest.raises(RuntimeError, match="block_size >= 1"):
        op.token_block_slices(torch.tensor([3, 5]), "complete", 0, 1)


def test_read_only_sizes_are_accepted_without_warnings(path):
    sizes = np.random.RandomState(3).randint(1, 20, size=100)
    sizes.setflags(write=False)  # like memory-mapped sizes from an indexed dataset
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = batch_by_size(np.arange(100), num_tokens_vec=sizes, max_tokens=50)
        starts, lengths = _build_blocks(sizes, "complete", 30, 1)
    assert np.array_equal(np.concatenate(got), np.arange(100))
    assert lengths.sum() == sizes.sum()
    assert starts[0] == 0


def test_batch_by_size_strided_inputs(path):
    sizes = np.random.RandomState(4).randint(1, 30, size=400)
    got = batch_by_size(np.arange(400)[::2], num_tokens_vec=sizes[::2], max_tokens=64)
    ref = batch_by_size(np.arange(0, 400, 2), num_tokens_vec=sizes[::2].copy(), max_tokens=64)
    assert as_lists(got) == as_lists(ref)


# -- fixed shapes ----------------------------------------------------------------------------


def test_batch_fixed_shapes(path):
    sizes = np.array([2, 2, 3, 3, 3, 6, 6, 8])
    batches = batch_by_size(np.arange(8), num_tokens_fn=lambda i: sizes[i], fixed_shapes=[(4, 3), (2, 8)])
    assert as_lists(batches) == [[0, 1, 2, 3], [4, 5], [6, 7]]
    # an item no shape accepts still gets a batch of its own; no empty batch is emitted
    batches = batch_by_size(np.arange(3), num_tokens_vec=[9, 2, 9], fixed_shapes=[(4, 3)])
    assert as_lists(batches) == [[0], [1], [2]]
    # without shapes every item is alone
    assert as_lists(batch_by_size(np.arange(3), num_tokens_vec=[1, 1, 1], fixed_shapes=[])) == [[0], [1], [2]]
    with pytest.raises(ConfigError):
        batch_by_size(np.arange(3), num_tokens_vec=[1, 1, 1], fixed_shapes=[(-1, 3)])


def test_batch_fixed_shapes_compiled_equals_reference():
    rng = np.random.RandomState(5)
    for _ in range(200):
        n = int(rng.randint(1, 200))
        ntok = rng.randint(0, 40, size=n)
        if rng.rand() < 0.5:
            ntok = np.sort(ntok)
        shapes = rng.randint(0, 50, size=(int(rng.randint(0, 5)), 2))  # (bsz, length); none at all sometimes
        indices = rng.permutation(n)
        ref, got = on_both_paths(lambda: as_lists(batch_by_size(indices, num_tokens_vec=ntok, fixed_shapes=shapes)))
        assert got == ref


# -- token blocks ----------------------------------------------------------------------------


def random_sizes(rng, n):
    sizes = rng.randint(0, 12, size=n)
    sizes[rng.rand(n) < 0.2] = 1  # document separators (an empty line: eos only)
    sizes[rng.rand(n) < 0.1] = 0  # empty sentences
    return sizes.astype(np.int64)


@pytest.mark.parametrize("mode", BREAK_MODES)
def test_token_blocks_compiled_equals_reference(mode):
    rng = np.random.RandomState(6)
    for _ in range(300):
        sizes = random_sizes(rng, int(rng.randint(0, 60)))
        block_size = int(rng.choice([1, 2, 3, 5, 8, 13, 40, 1000]))
        sep_len = int(rng.choice([0, 1, 1, 2]))
        ref, got = on_both_paths(lambda: _build_blocks(sizes, mode, block_size, sep_len))
        for r, g in zip(ref, got):
            assert g.dtype == np.int64
            assert g.tolist() == r.tolist(), (mode, sizes.tolist(), block_size, sep_len)


def test_token_blocks_edge_cases(path):
    empty = np.zeros(0, dtype=np.int64)
    for mode in BREAK_MODES:
        starts, lengths = _build_blocks(empty, mode, 4, 1)
        assert starts.tolist() == [] and lengths.tolist() == []
    # all sentences empty: no blocks except one per sentence in eos mode
    zeros = np.zeros(5, dtype=np.int64)
    assert _build_blocks(zeros, "none", 4, 1)[0].tolist() == []
    assert _build_blocks(zeros, "complete", 4, 1)[0].tolist() == []
    assert _build_blocks(zeros, "eos", None, 1)[1].tolist() == [0] * 5
    # a sentence longer than the block is a block of its own; empty sentences around it are kept
    sizes = np.array([0, 9, 0, 2, 2, 0], dtype=np.int64)
    starts, lengths = _build_blocks(sizes, "complete", 4, 1)
    assert list(zip(starts.tolist(), lengths.tolist())) == [(0, 9), (9, 4)]
    # only separators and one-token blocks: nothing survives complete_doc
    assert _build_blocks(np.array([1, 1, 1]), "complete_doc", 4, 1)[0].tolist() == []
    with pytest.raises(ConfigError):
        _build_blocks(sizes, "complete", 0, 1)
    with pytest.raises(ConfigError):
        _build_blocks(sizes, "none", None, 1)


@pytest.mark.parametrize("mode", BREAK_MODES)
def test_token_block_dataset_same_items_on_both_paths(mode):
    rng = np.random.RandomState(7)
    sizes = random_sizes(rng, 80)
    sizes[0] = max(sizes[0], 2)
    stream = np.arange(100, 100 + sizes.sum())
    sentences = [torch.from_numpy(s) for s in np.split(stream, np.cumsum(sizes)[:-1])]

    def build():
        ds = TokenBlockDataset(sentences, sizes, 6, pad=1, eos=2, break_mode=mode, include_targets=True)
        return (
            ds.slice_indices.tolist(),
            ds.block_to_dataset_index.tolist(),
            [tuple(x.tolist() for x in ds[i]) for i in range(len(ds))],
        )

    ref, got = on_both_paths(build)
    assert got == ref
