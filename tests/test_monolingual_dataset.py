"""MonolingualDataset: LM samples, collation and ordering."""

import numpy as np
import pytest
import torch

from fairseq_lite.data.data_utils import numpy_seed
from fairseq_lite.data.monolingual_dataset import MonolingualDataset
from fairseq_lite.data.token_block_dataset import TokenBlockDataset
from fairseq_lite.errors import ConfigError

SENTENCES = [[10, 11, 2], [12, 13, 14, 2], [2], [15, 2], [16, 17, 18, 19, 20, 2], [2], [21, 22, 2]]


class Vocab:
    """Just what the dataset needs from a Dictionary (bos=0, pad=1, eos=2, unk=3)."""

    def __init__(self, size=30):
        self.size = size

    def bos(self):
        return 0

    def pad(self):
        return 1

    def eos(self):
        return 2

    def unk(self):
        return 3

    def __len__(self):
        return self.size


def sentence_list():
    return [torch.tensor(s, dtype=torch.long) for s in SENTENCES]


def sizes():
    return np.array([len(s) for s in SENTENCES])


def blocks(mode, block_size):
    return TokenBlockDataset(sentence_list(), sizes(), block_size, 1, 2, break_mode=mode, include_targets=True)


# Expected batches below were produced by fairseq 0.12.2 on the same inputs.


def test_future_target_batch_matches_fairseq():
    tb = blocks("complete", 4)
    ds = MonolingualDataset(tb, tb.sizes, Vocab(), targets=["future"])
    batch = ds.collater([ds[i] for i in [0, 2, 3]])
    assert batch["id"].tolist() == [0, 2, 3]
    assert batch["nsentences"] == 3
    assert batch["ntokens"] == 12
    assert batch["net_input"]["src_tokens"].tolist() == [
        [2, 10, 11, 1, 1, 1],
        [2, 2, 15, 1, 1, 1],
        [2, 16, 17, 18, 19, 20],
    ]
    assert batch["net_input"]["src_lengths"].tolist() == [3, 3, 6]
    assert batch["target"].tolist() == [[10, 11, 2, 1, 1, 1], [2, 15, 2, 1, 1, 1], [16, 17, 18, 19, 20, 2]]
    assert batch["id"].dtype == torch.long
    assert batch["net_input"]["src_tokens"].dtype == torch.long


def test_several_targets_with_added_eos_match_fairseq():
    tb = blocks("none", 5)
    ds = MonolingualDataset(tb, tb.sizes, Vocab(), targets=["self", "future", "past"], add_eos_for_other_targets=True)
    batch = ds.collater([ds[i] for i in range(len(ds))])
    source = [[2, 10, 11, 2, 12, 2], [13, 14, 2, 2, 15, 2], [2, 16, 17, 18, 19, 2], [20, 2, 2, 21, 22, 2]]
    assert batch["ntokens"] == 24
    assert batch["net_input"]["src_tokens"].tolist() == source
    self_t, future_t, past_t = (t.tolist() for t in batch["target"])
    assert self_t == source
    assert future_t == [[10, 11, 2, 12, 13, 1], [14, 2, 2, 15, 2, 1], [16, 17, 18, 19, 20, 1], [2, 2, 21, 22, 2, 1]]
    assert past_t == [[1, 2, 10, 11, 2, 12], [1, 13, 14, 2, 2, 15], [1, 2, 16, 17, 18, 19], [1, 20, 2, 2, 21, 22]]


def test_bos_fixed_pad_length_and_pad_to_bsz_match_fairseq():
    tb = blocks("none", 5)
    ds = MonolingualDataset(
        tb,
        tb.sizes,
        Vocab(),
        targets=["future"],
        add_bos_token=True,
        fixed_pad_length=8,
        pad_to_bsz=4,
    )
    batch = ds.collater([ds[1], ds[2]])
    assert batch["ntokens"] == 12
    assert batch["net_input"]["src_tokens"].tolist() == [
        [0, 13, 14, 2, 2, 15, 1, 1],
        [0, 2, 16, 17, 18, 19, 1, 1],
        [1] * 8,
        [1] * 8,
    ]
    assert batch["net_input"]["src_lengths"].tolist() == [6, 6]
    assert batch["target"].tolist() == [[0, 14, 2, 2, 15, 2, 1, 1], [0, 16, 17, 18, 19, 20, 1, 1], [1] * 8, [1] * 8]


def test_without_targets_the_target_is_the_source():
    ds = MonolingualDataset(sentence_list(), sizes(), Vocab())
    sample = ds[1]
    assert sample["target"] is None
    batch = ds.collater([ds[0], ds[1]])
    assert batch["target"] is batch["net_input"]["src_tokens"]


def test_empty_batch_collates_to_empty_dict():
    ds = MonolingualDataset(sentence_list(), sizes(), Vocab())
    assert ds.collater([]) == {}


def test_smaller_target_vocab_maps_to_unk_without_touching_inputs():
    tb = blocks("complete", 4)
    ds = MonolingualDataset(tb, tb.sizes, Vocab(30), tgt_vocab=Vocab(20), targets=["future"])
    sample = ds[4]
    assert sample["source"].tolist() == [2, 2, 21, 22]
    assert sample["target"].tolist() == [2, 3, 3, 2]
    # the underlying data still has the original ids
    assert tb[4][1].tolist() == [2, 21, 22, 2]


def test_invalid_target_kind():
    with pytest.raises(ConfigError):
        MonolingualDataset(sentence_list(), sizes(), Vocab(), targets=["future", "sideways"])


def test_ordered_indices_sort_by_size():
    ds = MonolingualDataset(sentence_list(), sizes(), Vocab())
    assert ds.ordered_indices().tolist() == [2, 5, 3, 0, 6, 1, 4]


def test_shuffled_order_depends_only_on_seed_and_matches_fairseq():
    ds = MonolingualDataset(sentence_list(), sizes(), Vocab(), shuffle=True)
    with numpy_seed(1, 2):
        first = ds.ordered_indices().tolist()
    with numpy_seed(1, 2):
        again = ds.ordered_indices().tolist()
    assert first == again == [5, 2, 3, 6, 0, 1, 4]  # fairseq 0.12.2's order
    assert sorted(sizes()[first]) == list(sizes()[first])


def test_batching_and_filtering_through_the_dataset():
    tb = blocks("complete", 4)
    ds = MonolingualDataset(tb, tb.sizes, Vocab(), targets=["future"])
    indices = ds.ordered_indices()
    kept, ignored = ds.filter_indices_by_size(indices, 4)
    assert ignored == [3]
    batches = ds.batch_by_size(kept, max_tokens=8, required_batch_size_multiple=1)
    assert [b.tolist() for b in batches] == [[0, 2], [1, 4]]
    assert ds.num_tokens(3) == ds.size(3) == 6
    assert ds.num_tokens_vec(np.array([3, 0])).tolist() == [6, 3]
