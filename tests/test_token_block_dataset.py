"""TokenBlockDataset: block geometry per break mode and (source, target, past_target) items."""

import numpy as np
import pytest
import torch

from fairseq_lite.data.token_block_dataset import TokenBlockDataset
from fairseq_lite.errors import ConfigError, DataError

PAD, EOS = 1, 2

# two documents separated by an empty line ([2]), and a trailing empty line + short sentence
SENTENCES = [[10, 11, 2], [12, 13, 14, 2], [2], [15, 2], [16, 17, 18, 19, 20, 2], [2], [21, 22, 2]]


class TokenList:
    """Minimal in-memory stand-in for an indexed dataset; counts reads."""

    def __init__(self, sentences):
        self.items = [torch.tensor(s, dtype=torch.long) for s in sentences]
        self.sizes = np.array([len(s) for s in sentences])
        self.reads = 0

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        self.reads += 1
        return self.items[i]


def make(mode, block_size=4, include_targets=True, sentences=SENTENCES, **kwargs):
    data = TokenList(sentences)
    return TokenBlockDataset(
        data,
        data.sizes,
        block_size,
        PAD,
        EOS,
        break_mode=mode,
        include_targets=include_targets,
        **kwargs,
    )


def items(ds):
    return [tuple(x.tolist() for x in ds[i]) for i in range(len(ds))]


# Expected values below were produced by fairseq 0.12.2's TokenBlockDataset on SENTENCES.


def test_none_mode_matches_fairseq():
    ds = make("none")
    assert ds.slice_indices.tolist() == [[0, 4], [4, 8], [8, 12], [12, 16], [16, 20]]
    assert ds.block_to_dataset_index.tolist() == [[0, 0, 1], [1, 1, 2], [3, 0, 4], [4, 2, 4], [5, 0, 6]]
    assert ds.sizes.tolist() == [4, 4, 4, 4, 4]
    assert items(ds) == [
        ([2, 10, 11, 2], [10, 11, 2, 12], [1, 2, 10, 11]),
        ([12, 13, 14, 2], [13, 14, 2, 2], [2, 12, 13, 14]),
        ([2, 15, 2, 16], [15, 2, 16, 17], [1, 2, 15, 2]),
        ([17, 18, 19, 20], [18, 19, 20, 2], [16, 17, 18, 19]),
        ([2, 2, 21, 22], [2, 21, 22, 2], [1, 2, 2, 21]),
    ]


def test_none_mode_last_block_is_shorter():
    ds = make("none", block_size=3, include_targets=False)
    assert ds.slice_indices.tolist() == [[0, 3], [3, 6], [6, 9], [9, 12], [12, 15], [15, 18], [18, 20]]
    assert [ds[i].tolist() for i in range(len(ds))] == [
        [10, 11, 2],
        [12, 13, 14],
        [2, 2, 15],
        [2, 16, 17],
        [18, 19, 20],
        [2, 2, 21],
        [22, 2],
    ]


def test_break_mode_none_is_the_default():
    assert make(None).slice_indices.tolist() == make("none").slice_indices.tolist()


def test_complete_mode_matches_fairseq():
    ds = make("complete")
    assert ds.slice_indices.tolist() == [[0, 3], [3, 7], [7, 10], [10, 16], [16, 20]]
    assert ds.block_to_dataset_index.tolist() == [[0, 0, 0], [1, 0, 1], [2, 0, 3], [4, 0, 4], [5, 0, 6]]
    # the 6-token sentence exceeds block_size and becomes a block of its own
    assert ds.sizes.tolist() == [3, 4, 3, 6, 4]
    assert items(ds) == [
        ([2, 10, 11], [10, 11, 2], [1, 2, 10]),
        ([2, 12, 13, 14], [12, 13, 14, 2], [1, 2, 12, 13]),
        ([2, 2, 15], [2, 15, 2], [1, 2, 2]),
        ([2, 16, 17, 18, 19, 20], [16, 17, 18, 19, 20, 2], [1, 2, 16, 17, 18, 19]),
        ([2, 2, 21, 22], [2, 21, 22, 2], [1, 2, 2, 21]),
    ]
    assert make("complete", block_size=3).slice_indices.tolist() == [
        [0, 3],
        [3, 7],
        [7, 10],
        [10, 16],
        [16, 17],
        [17, 20],
    ]


def test_complete_doc_mode_matches_fairseq():
    ds = make("complete_doc")
    assert ds.slice_indices.tolist() == [[0, 3], [3, 7], [8, 10], [10, 16], [17, 20]]
    assert ds.block_to_dataset_index.tolist() == [[0, 0, 0], [1, 0, 1], [3, 0, 3], [4, 0, 4], [6, 0, 6]]
    assert items(ds) == [
        ([2, 10, 11], [10, 11, 2], [1, 2, 10]),
        ([2, 12, 13, 14], [12, 13, 14, 2], [1, 2, 12, 13]),
        ([2, 15], [15, 2], [1, 2]),
        ([2, 16, 17, 18, 19, 20], [16, 17, 18, 19, 20, 2], [1, 2, 16, 17, 18, 19]),
        ([2, 21, 22], [21, 22, 2], [1, 2, 21]),
    ]


def test_eos_mode_matches_fairseq():
    ds = make("eos", block_size=None)
    assert ds.slice_indices.tolist() == [[0, 3], [3, 7], [7, 8], [8, 10], [10, 16], [16, 17], [17, 20]]
    got = items(ds)
    assert got[:2] == [
        ([2, 10, 11], [10, 11, 2], [1, 2, 10]),
        ([2, 12, 13, 14], [12, 13, 14, 2], [1, 2, 12, 13]),
    ]
    assert got[3] == ([2, 15], [15, 2], [1, 2])
    # a 1-token block: all three tensors keep its length (fairseq's index arithmetic wraps
    # around here and returns a longer past_target)
    assert got[2] == ([2], [2], [1])


def test_without_targets_items_are_the_blocks():
    ds = make("complete", include_targets=False)
    assert [ds[i].tolist() for i in range(len(ds))] == [
        [10, 11, 2],
        [12, 13, 14, 2],
        [2, 15, 2],
        [16, 17, 18, 19, 20, 2],
        [2, 21, 22, 2],
    ]
    assert ds[-1].tolist() == [2, 21, 22, 2]


def test_unknown_break_mode_lists_allowed_values():
    with pytest.raises(ConfigError) as excinfo:
        make("sentence")
    message = str(excinfo.value)
    for mode in ("none", "complete", "complete_doc", "eos"):
        assert mode in message


def test_invalid_inputs():
    data = TokenList(SENTENCES)
    with pytest.raises(DataError):
        TokenBlockDataset(data, data.sizes[:-1], 4, PAD, EOS)
    with pytest.raises(DataError):
        TokenBlockDataset(TokenList([]), [], 4, PAD, EOS)
    with pytest.raises(ConfigError):
        TokenBlockDataset(data, data.sizes, 0, PAD, EOS, break_mode="complete")


def test_blocks_are_built_lazily():
    data = TokenList(SENTENCES)
    ds = TokenBlockDataset(data, data.sizes, 4, PAD, EOS, break_mode="none")
    assert data.reads == 0
    ds[1]
    assert data.reads == 2  # block 1 spans sentences 1 and 2


def reference_complete(sizes, block_size, doc_sep_len=None):
    """Plain statement of fairseq's complete / complete_doc packing."""
    blocks, tok, cur = [], 0, 0
    i = 0
    while i < len(sizes):
        s = sizes[i]
        is_sep = doc_sep_len is not None and s == doc_sep_len
        if (cur + s <= block_size or cur == 0) and not is_sep:
            cur += s
            i += 1
            continue
        if cur > (1 if doc_sep_len is not None else 0):
            blocks.append([tok, tok + cur])
        tok, cur = tok + cur, 0
        if is_sep:
            tok += s
            i += 1
    if cur > (1 if doc_sep_len is not None else 0):
        blocks.append([tok, tok + cur])
    return blocks


@pytest.mark.parametrize("mode", ["none", "complete", "complete_doc", "eos"])
def test_random_streams(mode):
    rng = np.random.RandomState(0)
    for _ in range(60):
        n = rng.randint(1, 40)
        sizes = rng.randint(1, 9, size=n)
        sizes[rng.rand(n) < 0.2] = 1
        stream = np.arange(100, 100 + sizes.sum())
        sentences = np.split(stream, np.cumsum(sizes)[:-1])
        block = int(rng.randint(1, 12))
        ds = make(mode, block_size=block, sentences=[s.tolist() for s in sentences])
        flat = stream.tolist()
        for (start, end), (source, target, past) in zip(ds.slice_indices.tolist(), items(ds)):
            assert target == flat[start:end]
            assert len(source) == len(target) == len(past)
            if len(target) > 1:
                assert source[1:] == target[:-1]
        if mode in ("none", "eos"):
            covered = np.concatenate([np.arange(s, e) for s, e in ds.slice_indices])
            assert covered.tolist() == list(range(len(flat)))
        if mode == "none":
            assert (ds.sizes[:-1] == block).all()
        if mode == "complete":
            assert ds.slice_indices.tolist() == reference_complete(sizes.tolist(), block)
        if mode == "complete_doc":
            assert ds.slice_indices.tolist() == reference_complete(sizes.tolist(), block, 1)


def test_empty_sentences_lose_no_tokens():
    sentences = [[10, 11], [], [12, 13, 14], [], [], [15]]
    ds = make("none", block_size=3, sentences=sentences, include_targets=False)
    assert [ds[i].tolist() for i in range(len(ds))] == [[10, 11, 12], [13, 14, 15]]
    ds = make("complete", block_size=2, sentences=sentences, include_targets=False)
    assert [ds[i].tolist() for i in range(len(ds))] == [[10, 11], [12, 13, 14], [15]]


def test_sizes_api():
    ds = make("complete")
    assert len(ds) == 5
    assert ds.num_tokens(3) == ds.size(3) == 6
    assert ds.num_tokens_vec(np.array([0, 3])).tolist() == [3, 6]
    assert ds.can_reuse_epoch_itr_across_epochs


def test_language_modeling_trains_on_numbered_shards(tiny_data_bin, tmp_path):
    """fairseq's train, train1, ...: the training split is their concatenation (combine=True)."""
    import shutil

    from conftest import tiny_lm_overrides

    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.registry import TASK_REGISTRY

    data = tmp_path / "data"
    shutil.copytree(tiny_data_bin, data)
    for suffix in ("bin", "idx"):
        shutil.copy(data / f"train.{suffix}", data / f"train1.{suffix}")
    task = TASK_REGISTRY.build(compose_config(tiny_lm_overrides(data, tmp_path / "ck")).task)
    task.load_dataset("train")
    single = len(task.dataset("train"))
    task.load_dataset("train", combine=True)
    assert len(task.dataset("train")) == 2 * single
