"""mmap indexed dataset: fairseq's exact file layout, faithful reads, atomic writes, clear errors."""

import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from fairseq_lite.data import Dictionary, MMapIndexedDataset, MMapIndexedDatasetBuilder, best_fitting_int_dtype
from fairseq_lite.data.indexed_dataset import DTYPE_CODES, MAGIC, data_file_path, index_file_path
from fairseq_lite.errors import DataError

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq_0.12.2"


def build(prefix, items, dtype=np.uint16):
    builder = MMapIndexedDatasetBuilder(data_file_path(str(prefix)), dtype)
    for item in items:
        builder.add_item(torch.tensor(item))
    builder.finalize(index_file_path(str(prefix)))
    return str(prefix)


def test_best_fitting_int_dtype():
    assert best_fitting_int_dtype(None) == np.uint32
    assert best_fitting_int_dtype(736) == np.uint16
    assert best_fitting_int_dtype(65499) == np.uint16
    assert best_fitting_int_dtype(65500) == np.uint32
    assert best_fitting_int_dtype(2**32) == np.int64


def test_paths():
    assert data_file_path("d/train") == "d/train.bin" and index_file_path("d/train") == "d/train.idx"


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.uint32, np.int64])
def test_round_trip(dtype, tmp_path):
    items = [[5, 6, 2], [2], [9, 8, 7, 6, 5, 4, 2], []]
    ds = MMapIndexedDataset(build(tmp_path / "d", items, dtype))
    assert len(ds) == 4 and ds.dtype == np.dtype(dtype)
    assert ds.sizes.tolist() == [3, 1, 7, 0]
    for i, item in enumerate(items):
        assert ds[i].dtype == torch.int64 and ds[i].tolist() == item
    assert ds[-2].tolist() == items[-2]
    with pytest.raises(IndexError):
        ds[4]
    ds[0][0] = 99  # items are copies, never views of the read-only mapping
    assert ds[0][0] == 5
    assert MMapIndexedDataset.exists(str(tmp_path / "d")) and not MMapIndexedDataset.exists(str(tmp_path / "x"))


def test_index_layout_is_fairseqs(tmp_path):
    prefix = build(tmp_path / "d", [[1, 2, 3], [4, 5]], np.uint16)
    raw = Path(index_file_path(prefix)).read_bytes()
    assert raw[:9] == MAGIC == b"MMIDIDX\x00\x00"
    assert struct.unpack_from("<QBQ", raw, 9) == (1, 8, 2)  # version, uint16 code, 2 items
    assert np.frombuffer(raw, np.int32, 2, 26).tolist() == [3, 2]
    assert np.frombuffer(raw, np.int64, 2, 34).tolist() == [0, 6]  # byte offsets
    assert len(raw) == 26 + 2 * 12
    assert Path(data_file_path(prefix)).read_bytes() == np.array([1, 2, 3, 4, 5], np.uint16).tobytes()
    assert {code: np.dtype(t).name for code, t in DTYPE_CODES.items()}[4] == "int32"


def test_reads_fairseq_fixture():
    d = Dictionary.load(str(FIXTURES / "mono" / "dict.txt"))
    ds = MMapIndexedDataset(str(FIXTURES / "mono" / "train"))
    lines = (FIXTURES / "inputs" / "train.txt").read_text(encoding="utf-8").splitlines()
    assert len(ds) == len(lines) == 300 and ds.dtype == np.uint16
    for i in (0, 1, 150, 299):
        assert ds[i].tolist() == d.encode_line(lines[i], add_if_not_exist=False).tolist()
    assert ds.sizes.sum() == 1602
    assert ds.doc_idx.tolist() == list(range(301))


def test_add_items_and_merge(tmp_path):
    first = build(tmp_path / "a", [[1, 2], [3]])
    builder = MMapIndexedDatasetBuilder(data_file_path(str(tmp_path / "m")), np.uint16)
    builder.add_items(np.array([7, 8, 9]), np.array([2, 1]))
    builder.end_document()
    builder.merge_file_(first)
    builder.finalize(index_file_path(str(tmp_path / "m")))
    ds = MMapIndexedDataset(str(tmp_path / "m"))
    assert [ds[i].tolist() for i in range(len(ds))] == [[7, 8], [9], [1, 2], [3]]
    assert builder.doc_idx == [0, 2, 3, 4]
    with pytest.raises(ValueError):
        MMapIndexedDatasetBuilder(str(tmp_path / "z.bin"), np.uint16).add_items(np.array([1]), np.array([2]))


def test_merge_rejects_other_dtype(tmp_path):
    other = build(tmp_path / "a", [[1]], np.int32)
    builder = MMapIndexedDatasetBuilder(data_file_path(str(tmp_path / "m")), np.uint16)
    with pytest.raises(DataError, match="dtype"):
        builder.merge_file_(other)
    builder.abort()


def test_empty_dataset(tmp_path):
    ds = MMapIndexedDataset(build(tmp_path / "e", []))
    assert len(ds) == 0 and ds.sizes.tolist() == []
    assert os.path.getsize(index_file_path(str(tmp_path / "e"))) == 26
    assert len(MMapIndexedDataset(str(FIXTURES / "blank" / "valid"))) == 0


def test_pickles_by_path(tmp_path):
    ds = MMapIndexedDataset(build(tmp_path / "d", [[1, 2], [3]]))
    clone = pickle.loads(pickle.dumps(ds))
    assert clone[1].tolist() == [3] and len(pickle.dumps(ds)) < 500


def test_reads_megatron_layout(tmp_path):
    # Same magic and version, plus a document count and a trailing doc_idx array.
    sizes = np.array([2, 1], np.int32)
    with open(tmp_path / "m.idx", "wb") as f:
        f.write(MAGIC + struct.pack("<QBQQ", 1, 8, 2, 3))
        f.write(sizes.tobytes() + np.array([0, 4], np.int64).tobytes() + np.array([0, 1, 2], np.int64).tobytes())
    (tmp_path / "m.bin").write_bytes(np.array([5, 6, 7], np.uint16).tobytes())
    ds = MMapIndexedDataset(str(tmp_path / "m"))
    assert [ds[0].tolist(), ds[1].tolist()] == [[5, 6], [7]] and ds.doc_idx.tolist() == [0, 1, 2]


# ---------------------------------------------------------------- damaged or missing files


def corrupt(tmp_path, how):
    prefix = build(tmp_path / "d", [[1, 2, 3], [4, 5]])
    idx, bin_ = Path(index_file_path(prefix)), Path(data_file_path(prefix))
    raw = bytearray(idx.read_bytes())
    if how == "missing idx":
        idx.unlink()
    elif how == "missing bin":
        bin_.unlink()
    elif how == "bad magic":
        raw[:9] = b"TNTIDX\x00\x00\x00"
        idx.write_bytes(raw)
    elif how == "version":
        raw[9:17] = struct.pack("<Q", 2)
        idx.write_bytes(raw)
    elif how == "dtype":
        raw[17] = 42
        idx.write_bytes(raw)
    elif how == "truncated idx":
        idx.write_bytes(raw[:-3])
    elif how == "truncated bin":
        bin_.write_bytes(bin_.read_bytes()[:-2])
    return prefix


@pytest.mark.parametrize(
    "how,words",
    [
        ("missing idx", r"index file not found: .*d\.idx"),
        ("missing bin", r"data file not found: .*d\.bin"),
        ("bad magic", r"d\.idx is not an mmap indexed dataset"),
        ("version", r"d\.idx: unsupported index version 2"),
        ("dtype", r"d\.idx: unknown dtype code 42"),
        ("truncated idx", r"d\.idx: index is truncated"),
        ("truncated bin", r"d\.bin is truncated"),
    ],
)
def test_damaged_files_raise_data_error(how, words, tmp_path):
    prefix = corrupt(tmp_path, how)
    with pytest.raises(DataError, match=words):
        MMapIndexedDataset(prefix)


def test_nothing_under_final_names_until_finalize(tmp_path):
    prefix = str(tmp_path / "d")
    builder = MMapIndexedDatasetBuilder(data_file_path(prefix), np.uint16)
    builder.add_item(torch.tensor([1, 2, 3]))
    assert not os.path.exists(data_file_path(prefix)) and not os.path.exists(index_file_path(prefix))
    builder.finalize(index_file_path(prefix))
    assert sorted(os.listdir(tmp_path)) == ["d.bin", "d.idx"]


def test_interrupted_build_leaves_nothing(tmp_path):
    prefix = str(tmp_path / "d")
    with pytest.raises(KeyboardInterrupt):
        with MMapIndexedDatasetBuilder(data_file_path(prefix), np.uint16) as builder:
            builder.add_item(torch.tensor([1, 2, 3]))
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_failed_finalize_keeps_previous_dataset(tmp_path, monkeypatch):
    prefix = build(tmp_path / "d", [[1, 2]])
    old = (Path(data_file_path(prefix)).read_bytes(), Path(index_file_path(prefix)).read_bytes())
    builder = MMapIndexedDatasetBuilder(data_file_path(prefix), np.uint16)
    builder.add_item(torch.tensor([3, 4, 5]))
    import fairseq_lite.data.indexed_dataset as mod

    def broken(f, sizes, dtype):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(mod, "write_index", broken)
    with pytest.raises(OSError):
        builder.finalize(index_file_path(prefix))
    assert (Path(data_file_path(prefix)).read_bytes(), Path(index_file_path(prefix)).read_bytes()) == old
    assert sorted(os.listdir(tmp_path)) == ["d.bin", "d.idx"]
