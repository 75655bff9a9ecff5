"""The dataset names fairseq plugins import from `fairseq.data`, behaving as fairseq 0.12.2's do.

Every expected value below that is not obvious from the definition was computed by running the real
fairseq 0.12.2 (fairseq.data) on the same inputs; the comments say so where it applies.
"""

import importlib

import numpy as np
import pytest
import torch

import fairseq_lite.data as fdata
from fairseq_lite.data import data_utils
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.data.indexed_dataset import MMapIndexedDatasetBuilder
from fairseq_lite.data.indexed_dataset_loading import load_indexed_dataset
from fairseq_lite.data.masks import lengths_to_mask, lengths_to_padding_mask
from fairseq_lite.data.nested_dictionary_dataset import _flatten, _unflatten
from fairseq_lite.data.shorten_dataset import maybe_shorten_dataset
from fairseq_lite.errors import DataError, FairseqLiteError

SENTS = [[4, 5, 6, 2], [7, 2], [8, 9, 10, 11, 12, 2], [13, 2], [14, 15, 2]]
PAD = 1


class Toks(FairseqDataset):
    """A small token dataset; the same class (on fairseq's FairseqDataset) made the expected values."""

    def __init__(self, sents=SENTS):
        self.items = [torch.tensor(s) for s in sents]
        self._sizes = np.array([len(s) for s in sents])

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)

    @property
    def sizes(self):
        return self._sizes

    def num_tokens(self, i):
        return int(self._sizes[i])

    def size(self, i):
        return int(self._sizes[i])

    def collater(self, samples):
        return data_utils.collate_tokens(samples, PAD)


class Pairs(Toks):
    """2-D (source, target) sizes, as a LanguagePairDataset has."""

    @property
    def sizes(self):
        return np.stack([self._sizes, self._sizes[::-1]], axis=1)


def rows(x):
    """Tensors (also inside dicts and lists) as nested lists, for comparing with literals."""
    if torch.is_tensor(x):
        return x.tolist()
    if isinstance(x, dict):
        return {k: rows(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [rows(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


# --- names -----------------------------------------------------------------------------------------

# (fairseq submodule, name): each importable from fairseq_lite.data and from the submodule of fairseq's name.
NAMES = [
    ("fairseq_dataset", "FairseqDataset"),
    ("token_block_dataset", "TokenBlockDataset"),
    ("monolingual_dataset", "MonolingualDataset"),
    ("language_pair_dataset", "LanguagePairDataset"),
    ("lm_context_window_dataset", "LMContextWindowDataset"),
    ("dictionary", "Dictionary"),
    ("indexed_dataset", "MMapIndexedDataset"),
    ("iterators", "EpochBatchIterator"),
    ("iterators", "CountingIterator"),
    ("iterators", "GroupedIterator"),
    ("iterators", "ShardedIterator"),
    ("base_wrapper_dataset", "BaseWrapperDataset"),
    ("concat_dataset", "ConcatDataset"),
    ("id_dataset", "IdDataset"),
    ("nested_dictionary_dataset", "NestedDictionaryDataset"),
    ("num_samples_dataset", "NumSamplesDataset"),
    ("numel_dataset", "NumelDataset"),
    ("sort_dataset", "SortDataset"),
    ("list_dataset", "ListDataset"),
    ("raw_label_dataset", "RawLabelDataset"),
    ("pad_dataset", "PadDataset"),
    ("pad_dataset", "LeftPadDataset"),
    ("pad_dataset", "RightPadDataset"),
    ("prepend_token_dataset", "PrependTokenDataset"),
    ("append_token_dataset", "AppendTokenDataset"),
    ("strip_token_dataset", "StripTokenDataset"),
    ("shorten_dataset", "TruncateDataset"),
    ("shorten_dataset", "RandomCropDataset"),
    ("resampling_dataset", "ResamplingDataset"),
    ("subsample_dataset", "SubsampleDataset"),
]


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[n for _, n in NAMES])
def test_name_imports_from_the_package_and_its_fairseq_module(module, name):
    from_package = getattr(fdata, name)
    assert name in fdata.__all__
    assert getattr(importlib.import_module(f"fairseq_lite.data.{module}"), name) is from_package


def test_modules_and_iterable_base_are_exported():
    for module in ("data_utils", "iterators", "indexed_dataset"):
        assert getattr(fdata, module) is importlib.import_module(f"fairseq_lite.data.{module}")
    assert issubclass(fdata.FairseqIterableDataset, torch.utils.data.IterableDataset)
    assert hasattr(fdata.FairseqIterableDataset(), "set_epoch")


# --- the small datasets ----------------------------------------------------------------------------


def test_id_num_samples_numel_and_raw_labels():
    ids = fdata.IdDataset()
    assert ids[7] == 7 and len(ids) == 0
    batch = ids.collater([0, 3, 1])
    assert batch.dtype == torch.int64 and batch.tolist() == [0, 3, 1]

    counts = fdata.NumSamplesDataset()
    assert counts[4] == 1 and len(counts) == 0 and counts.collater([1, 1, 1]) == 3

    ds = Toks()
    numel = fdata.NumelDataset(ds)
    lengths = [numel[i] for i in range(5)]
    assert numel.collater(lengths).tolist() == [4, 2, 6, 2, 3]  # fairseq 0.12.2
    assert fdata.NumelDataset(ds, reduce=True).collater(lengths) == 17  # fairseq 0.12.2
    assert fdata.NumelDataset([np.zeros((2, 3))])[0] == 6  # np.size for non-tensors

    labels = fdata.RawLabelDataset([1, 0, 2])
    assert len(labels) == 3 and labels[2] == 2
    assert labels.collater([1, 0, 2]).dtype == torch.int64
    assert fdata.RawLabelDataset([0.5]).collater([0.5, 1.5]).dtype == torch.float32  # fairseq 0.12.2


def test_list_dataset_batches_samples_as_a_list():
    raw = ["a b", "c", "d e f"]
    ds = fdata.ListDataset(raw, sizes=np.array([2, 1, 3]))
    assert ds.collater([ds[0], ds[2]]) == ["a b", "d e f"]
    assert list(ds) == raw and ds.num_tokens(2) == 3 and ds.size(1) == 1
    assert fdata.ListDataset(raw).sizes is None


def test_sort_dataset_lexsorts_its_keys_last_key_first():
    ds = Toks()
    with data_utils.numpy_seed(3):
        shuffle = np.random.permutation(5)
    assert shuffle.tolist() == [3, 4, 1, 0, 2]  # fairseq 0.12.2's numpy_seed(3) permutation
    assert fdata.SortDataset(ds, sort_order=[shuffle, ds.sizes]).ordered_indices().tolist() == [3, 1, 4, 0, 2]
    assert fdata.SortDataset(ds, sort_order=ds.sizes).ordered_indices().tolist() == [1, 3, 4, 0, 2]
    with pytest.raises(DataError):
        fdata.SortDataset(ds, sort_order=[np.arange(4)])


def test_pad_datasets_collate_with_collate_tokens():
    ds = Toks()
    # fairseq 0.12.2
    assert fdata.LeftPadDataset(ds, PAD).collater([ds[0], ds[1]]).tolist() == [[4, 5, 6, 2], [1, 1, 7, 2]]
    assert fdata.RightPadDataset(ds, PAD).collater([ds[0], ds[1]]).tolist() == [[4, 5, 6, 2], [7, 2, 1, 1]]
    padded = fdata.PadDataset(ds, 0, left_pad=False, pad_length=7).collater([ds[1], ds[3]])
    assert padded.tolist() == [[7, 2, 0, 0, 0, 0, 0], [13, 2, 0, 0, 0, 0, 0]]
    assert fdata.RightPadDataset(ds, PAD)[2] is ds[2]


def test_prepend_append_and_strip_tokens():
    ds = Toks()
    pre, app = fdata.PrependTokenDataset(ds, 0), fdata.AppendTokenDataset(ds, 3)
    # fairseq 0.12.2
    assert pre[1].tolist() == [0, 7, 2] and pre.sizes.tolist() == [5, 3, 7, 3, 4]
    assert pre.num_tokens(2) == 7 and pre.size(2) == 7
    assert app[1].tolist() == [7, 2, 3] and app.sizes.tolist() == [5, 3, 7, 3, 4]
    assert app.num_tokens(2) == 7 and app.size(2) == 7
    assert fdata.PrependTokenDataset(ds, None)[1].tolist() == [7, 2]
    assert fdata.AppendTokenDataset(ds, None).sizes is ds.sizes

    items = fdata.ListDataset([torch.tensor(x) for x in [[2, 5, 6, 2, 2], [2, 2], [7], [2, 7, 2, 8]]])
    strip = fdata.StripTokenDataset(items, 2)
    assert [strip[i].tolist() for i in range(4)] == [[5, 6], [], [7], [7, 2, 8]]  # fairseq 0.12.2


def test_truncate_random_crop_and_maybe_shorten():
    ds = Toks()
    trunc = fdata.TruncateDataset(ds, 3)
    # fairseq 0.12.2: sizes are capped, num_tokens/size stay the wrapped dataset's
    assert [trunc[i].tolist() for i in range(5)] == [[4, 5, 6], [7, 2], [8, 9, 10], [13, 2], [14, 15, 2]]
    assert trunc.sizes.tolist() == [3, 2, 3, 2, 3] and trunc.num_tokens(2) == 6 and trunc.size(2) == 6

    crop = fdata.RandomCropDataset(ds, 2, seed=7)
    crops = [[crop[i].tolist() for i in range(5)]]
    for epoch in (1, 2):
        crop.set_epoch(epoch)
        crops.append([crop[i].tolist() for i in range(5)])
    # fairseq 0.12.2, epochs 0 (before set_epoch), 1 and 2
    assert crops == [
        [[4, 5], [7, 2], [8, 9], [13, 2], [14, 15]],
        [[5, 6], [7, 2], [10, 11], [13, 2], [14, 15]],
        [[4, 5], [7, 2], [10, 11], [13, 2], [14, 15]],
    ]
    assert crop.can_reuse_epoch_itr_across_epochs

    kinds = [
        type(maybe_shorten_dataset(ds, split, splits, method, 3, 1)).__name__
        for split, splits, method in [
            ("train", "", "truncate"),
            ("valid", "train", "truncate"),
            ("train", "train,valid", "random_crop"),
            ("train", "", "none"),
        ]
    ]
    assert kinds == ["TruncateDataset", "Toks", "RandomCropDataset", "Toks"]  # fairseq 0.12.2


# --- wrappers that remap indices -------------------------------------------------------------------


def test_resampling_draws_fairseqs_samples_and_redraws_each_epoch():
    ds = Toks()
    res = fdata.ResamplingDataset(ds, weights=[1, 2, 3, 4, 5], replace=True, size_ratio=1.6, seed=11, epoch=1)
    assert len(res) == 8 and not res.can_reuse_epoch_itr_across_epochs
    # fairseq 0.12.2, epoch 1
    assert [res[i].tolist() for i in range(8)][:3] == [[14, 15, 2], [7, 2], [7, 2]]
    assert res.sizes.tolist() == [3, 2, 2, 3, 2, 4, 6, 3]
    assert res.ordered_indices().tolist() == [1, 2, 4, 0, 3, 7, 5, 6]
    assert res.num_tokens(0) == 3 and res.size(1) == 2
    res.set_epoch(2)
    # fairseq 0.12.2, epoch 2
    assert res.sizes.tolist() == [3, 2, 2, 6, 6, 2, 2, 2]
    assert res.ordered_indices().tolist() == [1, 2, 5, 6, 7, 0, 3, 4]
    assert res[3].tolist() == [8, 9, 10, 11, 12, 2]

    without = fdata.ResamplingDataset(ds, replace=False, size_ratio=0.5, seed=3, epoch=4, batch_by_size=False)
    # fairseq 0.12.2
    assert [without[i].tolist() for i in range(len(without))] == [[13, 2], [8, 9, 10, 11, 12, 2], [7, 2]]
    assert without.ordered_indices().tolist() == [0, 1, 2]
    with pytest.raises(FairseqLiteError):
        fdata.ResamplingDataset(ds, replace=False, size_ratio=1.0)


def test_resampling_batches_by_its_own_sizes():
    res = fdata.ResamplingDataset(Toks(), weights=[1, 2, 3, 4, 5], size_ratio=1.6, seed=11, epoch=2)
    sizes = res.sizes
    for batch in res.batch_by_size(res.ordered_indices(), max_tokens=6):
        assert len(batch) * sizes[batch].max() <= 6
    kept, ignored = res.filter_indices_by_size(np.arange(len(res)), 3)
    assert sorted(ignored) == [3, 4]


def test_subsample_dataset_under_a_seed():
    ds = Toks()
    with data_utils.numpy_seed(5):
        sub = fdata.SubsampleDataset(ds, 0.5)
        shuffled = fdata.SubsampleDataset(ds, 0.7, shuffle=True)
        shuffled_order = shuffled.ordered_indices().tolist()
    # fairseq 0.12.2
    assert sub.indices.tolist() == [4, 0, 1] and sub.sizes.tolist() == [3, 4, 2]
    assert sub.ordered_indices().tolist() == [2, 0, 1]
    assert sub.collater([sub[0], sub[1]]).tolist() == [[14, 15, 2, 1], [4, 5, 6, 2]]
    assert shuffled.indices.tolist() == [3, 2, 4, 1] and shuffled_order == [0, 3, 2, 1]


# --- ConcatDataset ---------------------------------------------------------------------------------


def test_concat_dataset_with_sample_ratios():
    ds, ds2 = Toks(), Toks([[20, 2], [21, 22, 23, 24, 25, 26, 27, 2]])
    cat = fdata.ConcatDataset([ds, ds2], sample_ratios=[1, 2])
    # fairseq 0.12.2
    assert len(cat) == 9 and cat.cumulative_sizes == [5, 9]
    assert [cat[i].tolist() for i in range(5, 9)] == [[20, 2], [21, 22, 23, 24, 25, 26, 27, 2]] * 2
    assert cat.sizes.tolist() == [4, 2, 6, 2, 3, 2, 8, 2, 8]
    assert cat.ordered_indices().tolist() == [1, 3, 7, 5, 4, 0, 2, 6, 8]
    assert cat.size(8) == 8 and cat.num_tokens(6) == 8
    assert cat.collater([cat[0], cat[6]]).tolist() == [[4, 5, 6, 2, 1, 1, 1, 1], [21, 22, 23, 24, 25, 26, 27, 2]]
    assert cat.attr("_sizes", 6).tolist() == [2, 8]

    plain = fdata.ConcatDataset([ds, ds2])
    assert len(plain) == 7 and plain.ordered_indices().tolist() == [1, 3, 5, 4, 0, 2, 6]  # fairseq 0.12.2

    pairs = fdata.ConcatDataset([Pairs(), Pairs([[1, 2, 3], [4]])])
    # fairseq 0.12.2: by target, then stably by source
    assert pairs.sizes.tolist() == [[4, 3], [2, 2], [6, 6], [2, 2], [3, 4], [3, 1], [1, 3]]
    assert pairs.ordered_indices().tolist() == [6, 1, 3, 5, 4, 0, 2]


def test_concat_dataset_forwards_epochs_and_rejects_nothing_to_concat():
    seen = []

    class Listening(Toks):
        def set_epoch(self, epoch):
            seen.append(epoch)

    fdata.ConcatDataset([Listening(), Listening()]).set_epoch(3)
    assert seen == [3, 3]
    with pytest.raises(ValueError):
        fdata.ConcatDataset([])


# --- NestedDictionaryDataset -----------------------------------------------------------------------


def lm_batch_dataset():
    ds = Toks()
    defn = {
        "id": fdata.IdDataset(),
        "net_input": {
            "src_tokens": fdata.RightPadDataset(ds, PAD),
            "src_lengths": fdata.NumelDataset(ds, reduce=False),
        },
        "target": fdata.RightPadDataset(fdata.AppendTokenDataset(ds, 3), PAD),
        "nsentences": fdata.NumSamplesDataset(),
        "ntokens": fdata.NumelDataset(ds, reduce=True),
        "skipped": None,
    }
    return fdata.NestedDictionaryDataset(defn, sizes=[ds.sizes])


def test_nested_dictionary_dataset_items_and_batches():
    nested = lm_batch_dataset()
    keys = ["id", "net_input.src_tokens", "net_input.src_lengths", "target", "nsentences", "ntokens"]
    assert list(nested.defn) == keys and len(nested) == 5  # fairseq 0.12.2
    item = nested[2]
    assert rows(item) == {
        "id": 2,
        "net_input.src_tokens": [8, 9, 10, 11, 12, 2],
        "net_input.src_lengths": 6,
        "target": [8, 9, 10, 11, 12, 2, 3],
        "nsentences": 1,
        "ntokens": 6,
    }
    batch = nested.collater([nested[i] for i in (0, 2, 3)])
    # fairseq 0.12.2
    assert rows(batch) == {
        "id": [0, 2, 3],
        "net_input": {
            "src_tokens": [[4, 5, 6, 2, 1, 1], [8, 9, 10, 11, 12, 2], [13, 2, 1, 1, 1, 1]],
            "src_lengths": [4, 6, 2],
        },
        "target": [[4, 5, 6, 2, 3, 1, 1], [8, 9, 10, 11, 12, 2, 3], [13, 2, 3, 1, 1, 1, 1]],
        "nsentences": 3,
        "ntokens": 12,
    }
    assert list(batch) == ["id", "net_input", "target", "nsentences", "ntokens"]
    assert nested.collater([]) == {}


def test_nested_dictionary_dataset_batching_and_filtering():
    nested = lm_batch_dataset()
    # fairseq 0.12.2
    assert rows(nested.batch_by_size(np.array([1, 3, 4, 0, 2]), max_tokens=8)) == [[1, 3], [4, 0], [2]]
    assert rows(nested.batch_by_size(np.arange(5), max_sentences=2)) == [[0, 1], [2, 3], [4]]
    kept, ignored = nested.filter_indices_by_size(np.arange(5), 3)
    assert kept.tolist() == [1, 3, 4] and ignored == [0, 2]


def test_nested_dictionary_dataset_lists_and_several_sizes():
    ds = Toks()
    nested = fdata.NestedDictionaryDataset(
        {"target": [fdata.RightPadDataset(ds, PAD), fdata.NumelDataset(ds)], "x": {"y": {"z": fdata.IdDataset()}}},
        sizes=[ds.sizes, ds.sizes + 2],
    )
    assert list(nested.defn) == ["target.[0]", "target.[1]", "x.y.z"]  # fairseq 0.12.2
    batch = nested.collater([nested[0], nested[1]])
    # fairseq 0.12.2: a list comes back as a dict keyed by the strings "[0]", "[1]"
    assert rows(batch) == {"target": {"[0]": [[4, 5, 6, 2], [7, 2, 1, 1]], "[1]": [4, 2]}, "x": {"y": {"z": [0, 1]}}}
    assert nested.num_tokens(1) == 4 and tuple(nested.size(1)) == (2, 4)
    assert nested.num_tokens_vec(np.arange(5)).tolist() == [nested.num_tokens(i) for i in range(5)]


def test_nested_flatten_roundtrip_matches_fairseq():
    flat = _flatten({"a": {"b": 1, "c": None}, "l": [2, {"m": 3}]})
    assert list(flat.items()) == [("a.b", 1), ("l.[0]", 2), ("l.[1].m", 3)]
    assert _unflatten(flat) == {"a": {"b": 1}, "l": {"[0]": 2, 1: {"m": 3}}}


def test_nested_dictionary_dataset_checks_its_members():
    with pytest.raises(ValueError, match="Expected Dataset"):
        fdata.NestedDictionaryDataset({"x": [1, 2, 3]})
    with pytest.raises(ValueError, match="lengths must match"):
        fdata.NestedDictionaryDataset({"a": Toks(), "b": Toks(SENTS[:3])})


# --- BaseWrapperDataset ----------------------------------------------------------------------------


def test_base_wrapper_forwards_to_the_wrapped_dataset():
    seen = []

    class Listening(Toks):
        def set_epoch(self, epoch):
            seen.append(epoch)

        @property
        def can_reuse_epoch_itr_across_epochs(self):
            return False

    inner = Listening()
    wrapper = fdata.BaseWrapperDataset(inner)
    wrapper.set_epoch(2)
    assert seen == [2] and not wrapper.can_reuse_epoch_itr_across_epochs
    assert wrapper.sizes is inner.sizes and wrapper.num_tokens(2) == 6 and wrapper.size(0) == 4
    assert wrapper.collater([inner[1]]).tolist() == [[7, 2]]
    assert rows(wrapper.batch_by_size(np.arange(5), max_sentences=2)) == [[0, 1], [2, 3], [4]]

    plain = fdata.BaseWrapperDataset([torch.tensor([1, 2]), torch.tensor([3, 4])])
    # fairseq 0.12.2: torch's default_collate when the wrapped dataset has no collater
    assert plain.collater([plain[0], plain[1]]).tolist() == [[1, 2], [3, 4]]
    assert plain.ordered_indices().tolist() == [0, 1]


# --- data_utils helpers ----------------------------------------------------------------------------


def write_dataset(prefix, sentences):
    builder = MMapIndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.uint16)
    for s in sentences:
        builder.add_item(torch.tensor(s))
    builder.finalize(str(prefix) + ".idx")


def test_load_indexed_dataset_single_combined_and_missing(tmp_path):
    write_dataset(tmp_path / "train", [[4, 5, 2], [6, 2]])
    write_dataset(tmp_path / "train1", [[7, 8, 9, 2]])
    write_dataset(tmp_path / "train3", [[10, 2]])  # after a gap: not combined, as in fairseq
    prefix = str(tmp_path / "train")

    single = load_indexed_dataset(prefix)
    assert isinstance(single, fdata.MMapIndexedDataset) and len(single) == 2
    assert isinstance(load_indexed_dataset(prefix, None, "mmap"), fdata.MMapIndexedDataset)
    combined = load_indexed_dataset(prefix, dataset_impl="lazy", combine=True)
    assert isinstance(combined, fdata.ConcatDataset) and len(combined) == 3
    assert [combined[i].tolist() for i in range(3)] == [[4, 5, 2], [6, 2], [7, 8, 9, 2]]
    assert combined.sizes.tolist() == [3, 2, 4]
    assert load_indexed_dataset(str(tmp_path / "valid")) is None
    assert load_indexed_dataset(str(tmp_path / "valid"), dataset_impl="mmap", combine=True) is None


def test_load_indexed_dataset_reads_raw_text_with_the_dictionary(tmp_path):
    """--dataset-impl raw: the text itself, encoded with the dictionary (unknown words unk, eos appended);
    found at the prefix itself when no .bin/.idx is there."""
    d = fdata.Dictionary()
    for word in ("a", "b"):
        d.add_symbol(word)
    (tmp_path / "train.en").write_text("a b\nb zz a\n", encoding="utf-8")
    for impl in ("raw", None):
        raw = load_indexed_dataset(str(tmp_path / "train.en"), d, dataset_impl=impl)
        assert [raw[i].tolist() for i in range(len(raw))] == [[4, 5, 2], [5, 3, 4, 2]]
        assert raw.sizes.tolist() == [3, 4] and raw.get_original_text(1) == "b zz a"
    assert load_indexed_dataset(str(tmp_path / "missing"), d, dataset_impl="raw") is None
    with pytest.raises(DataError, match="needs the dictionary"):
        load_indexed_dataset(str(tmp_path / "train.en"), None, dataset_impl="raw")


def test_load_indexed_dataset_refuses_other_formats(tmp_path):
    write_dataset(tmp_path / "train", [[4, 2]])
    prefix = str(tmp_path / "train")
    for impl in ("fasta", "huffman"):
        with pytest.raises(ValueError, match="reads 'mmap', 'lazy'/'cached' and 'raw' datasets") as info:
            load_indexed_dataset(prefix, dataset_impl=impl)
        assert "\n" not in str(info.value) and impl in str(info.value)

    # fairseq's older format is read (tests/test_preprocess.py); a broken index of it is a one-line error
    (tmp_path / "old.bin").write_bytes(b"")
    (tmp_path / "old.idx").write_bytes(b"TNTIDX\x00\x00" + bytes(32))
    with pytest.raises(DataError, match="old.idx is truncated"):
        load_indexed_dataset(str(tmp_path / "old"))
    (tmp_path / "junk.bin").write_bytes(b"")
    (tmp_path / "junk.idx").write_bytes(bytes(40))
    with pytest.raises(DataError, match="bad magic"):
        load_indexed_dataset(str(tmp_path / "junk"), dataset_impl="mmap")


def test_padding_masks():
    lens = torch.tensor([3, 1, 2])
    expected = [[False, False, False], [False, True, True], [False, False, True]]  # fairseq 0.12.2
    assert lengths_to_padding_mask(lens).tolist() == expected
    assert lengths_to_mask(lens).tolist() == [[not x for x in row] for row in expected]


@pytest.mark.skipif(
    not hasattr(data_utils, "load_indexed_dataset"), reason="data_utils does not re-export the helpers yet"
)
def test_data_utils_reexports_fairseqs_helpers():
    from fairseq_lite.data import indexed_dataset_loading, masks

    assert data_utils.load_indexed_dataset is indexed_dataset_loading.load_indexed_dataset
    assert data_utils.lengths_to_padding_mask is masks.lengths_to_padding_mask
    assert data_utils.lengths_to_mask is masks.lengths_to_mask
    # fairseq 0.12.2
    assert data_utils.post_process("\u2581he llo \u2581wor ld", "sentencepiece") == "hello world"
    assert data_utils.post_process("he@@ llo wor@@ ld", "subword_nmt") == "hello world"
