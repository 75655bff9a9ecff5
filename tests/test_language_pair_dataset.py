"""LanguagePairDataset: collation, padding sides, decoder inputs, ordering and filtering.

The expected values are literals printed by fairseq 0.12.2's LanguagePairDataset on the same input.
"""

import numpy as np
import pytest
import torch

from fairseq_lite.data.data_utils import numpy_seed
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.errors import DataError

SRC = [[5, 6, 2], [7, 2], [8, 9, 10, 11, 2], [5, 2], [6, 7, 8, 2]]
TGT = [[12, 13, 2], [14, 15, 16, 2], [17, 2], [12, 14, 2], [13, 2]]


@pytest.fixture
def vocab():
    d = Dictionary()  # bos 0, pad 1, eos 2, unk 3
    for i in range(20):
        d.add_symbol(f"w{i}")
    return d


def make(vocab, src=SRC, tgt=TGT, **kwargs):
    s = [torch.LongTensor(x) for x in src]
    t = [torch.LongTensor(x) for x in tgt] if tgt is not None else None
    return LanguagePairDataset(
        s, [len(x) for x in s], vocab, t, [len(x) for x in t] if t else None, vocab if t else None, **kwargs
    )


def test_collater_left_pads_source_sorts_by_source_length_and_shifts_target(vocab):
    ds = make(vocab)
    batch = ds.collater([ds[i] for i in range(len(ds))])
    assert batch["id"].tolist() == [2, 4, 0, 1, 3]
    assert batch["nsentences"] == 5
    assert batch["ntokens"] == 14  # target tokens, eos included
    net = batch["net_input"]
    assert net["src_tokens"].tolist() == [
        [8, 9, 10, 11, 2],
        [1, 6, 7, 8, 2],
        [1, 1, 5, 6, 2],
        [1, 1, 1, 7, 2],
        [1, 1, 1, 5, 2],
    ]
    assert net["src_lengths"].tolist() == [5, 4, 3, 2, 2]
    assert net["prev_output_tokens"].tolist() == [
        [2, 17, 1, 1],
        [2, 13, 1, 1],
        [2, 12, 13, 1],
        [2, 14, 15, 16],
        [2, 12, 14, 1],
    ]
    assert batch["target"].tolist() == [[17, 2, 1, 1], [13, 2, 1, 1], [12, 13, 2, 1], [14, 15, 16, 2], [12, 14, 2, 1]]


def test_collater_right_pad_source_left_pad_target_and_pad_to_multiple(vocab):
    ds = make(vocab, left_pad_source=False, left_pad_target=True, pad_to_multiple=4)
    batch = ds.collater([ds[i] for i in (3, 1, 0)])
    assert batch["id"].tolist() == [0, 3, 1]  # equal source lengths keep their order
    assert batch["net_input"]["src_tokens"].tolist() == [[5, 6, 2, 1], [5, 2, 1, 1], [7, 2, 1, 1]]
    assert batch["net_input"]["prev_output_tokens"].tolist() == [[1, 2, 12, 13], [1, 2, 12, 14], [2, 14, 15, 16]]
    assert batch["target"].tolist() == [[1, 12, 13, 2], [1, 12, 14, 2], [14, 15, 16, 2]]


def test_source_only_and_no_input_feeding(vocab):
    ds = make(vocab, tgt=None)
    batch = ds.collater([ds[i] for i in range(3)])
    assert batch["target"] is None and "prev_output_tokens" not in batch["net_input"]
    assert batch["ntokens"] == 3 + 2 + 5
    ds = make(vocab, input_feeding=False)
    assert "prev_output_tokens" not in ds.collater([ds[0]])["net_input"]
    assert ds.collater([]) == {}


def test_item_options(vocab):
    ds = make(vocab, src=[[5, 6, 2]], tgt=[[12, 13]], remove_eos_from_source=True, append_eos_to_target=True)
    assert ds[0]["source"].tolist() == [5, 6] and ds[0]["target"].tolist() == [12, 13, 2]
    ds = make(vocab, src=[[5, 2]], tgt=[[12, 2]], append_bos=True)
    assert ds[0]["source"].tolist() == [0, 5, 2] and ds[0]["target"].tolist() == [0, 12, 2]


def test_sizes_num_tokens_and_filtering(vocab):
    ds = make(vocab)
    assert ds.size(1) == (2, 4)
    assert ds.num_tokens(1) == 4 and ds.num_tokens(2) == 5
    assert ds.num_tokens_vec(np.array([0, 1, 2])).tolist() == [3, 4, 5]
    assert ds.sizes.tolist() == [[3, 3], [2, 4], [5, 2], [2, 3], [4, 2]]
    kept, ignored = ds.filter_indices_by_size(np.arange(5), (4, 3))
    assert kept.tolist() == [0, 3, 4] and ignored == [1, 2]


def test_ordered_indices_match_fairseq(vocab):
    src_sizes = [1, 4, 2, 1, 4, 4, 4, 4, 2, 4, 2, 3]
    tgt_sizes = [1, 4, 3, 1, 1, 1, 3, 2, 3, 4, 4, 3]
    ds = make(vocab, src=[[4] * n for n in src_sizes], tgt=[[4] * n for n in tgt_sizes])
    with numpy_seed(7):
        assert ds.ordered_indices().tolist() == [0, 3, 2, 8, 10, 11, 5, 4, 7, 6, 1, 9]
    ds.shuffle = False
    assert ds.ordered_indices().tolist() == [0, 3, 2, 8, 10, 11, 4, 5, 7, 6, 1, 9]


def test_num_buckets_pads_items_to_bucket_lengths_like_fairseq(vocab):
    ds = make(vocab, num_buckets=2)
    assert ds.src_sizes.tolist() == [3, 3, 5, 3, 5] and ds.tgt_sizes.tolist() == [3, 4, 3, 3, 3]
    assert ds.get_batch_shapes() == [(None, 3), (None, 4), (None, 5)]
    assert ds[1]["source"].tolist() == [1, 7, 2]  # padded on the source's padding side
    batch = ds.collater([ds[i] for i in range(5)])
    assert batch["net_input"]["src_lengths"].tolist() == [5, 4, 3, 2, 2]
    assert batch["ntokens"] == 14
    with numpy_seed(3):
        assert ds.ordered_indices().tolist() == [3, 0, 1, 4, 2]


def test_mismatched_inputs_are_data_errors(vocab):
    with pytest.raises(DataError, match="same number"):
        make(vocab, tgt=TGT[:3])
