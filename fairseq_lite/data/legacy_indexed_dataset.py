"""fairseq's older binarized format, `--dataset-impl lazy` / `cached` (TorchNet's IndexedDataset): an index that
starts `TNTIDX\\0\\0` and token ids stored plus one (Lua's 1-based indexing), int32 as fairseq writes them.

Old data-bin directories hold it; fairseq reads it with `fix_lua_indexing=True`, as `IndexedDataset` here does
by default. "lazy" and "cached" differ only in when fairseq reads the bytes; both are one memory map here.
"""

import os
import shutil
import struct

import numpy as np
import torch

from fairseq_lite.data.indexed_dataset import MMapIndexedDatasetBuilder, data_file_path, index_file_path
from fairseq_lite.errors import DataError

MAGIC = b"TNTIDX\x00\x00"
DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64, 6: np.float64, 7: np.double, 8: np.uint16}
DTYPES.update({9: np.uint32, 10: np.uint64})
CODES = {np.dtype(v): k for k, v in reversed(list(DTYPES.items()))}


def read_index(path: str) -> tuple[np.dtype, np.ndarray, np.ndarray, np.ndarray]:
    """(dtype, dim_offsets, data_offsets, sizes) of the index at prefix `path`."""
    with open(index_file_path(path), "rb") as f:
        raw = f.read()
    if raw[:8] != MAGIC:
        raise DataError(f"{index_file_path(path)} is not a fairseq 'lazy'/'cached' index (no TNTIDX magic)")
    if len(raw) < 48:
        raise DataError(f"{index_file_path(path)} is truncated")
    version, code, _, count, num_sizes = struct.unpack("<QQQQQ", raw[8:48])
    if version != 1 or code not in DTYPES:
        raise DataError(f"{index_file_path(path)}: index version {version}, dtype code {code}: not fairseq's")
    if len(raw) != 48 + 8 * (2 * (count + 1) + num_sizes):
        raise DataError(f"{index_file_path(path)} is truncated (or has bytes after its sizes)")
    longs = np.frombuffer(raw, dtype=np.int64, offset=48)
    dim_offsets, data_offsets, sizes = longs[: count + 1], longs[count + 1 : 2 * count + 2], longs[2 * count + 2 :]
    return np.dtype(DTYPES[code]), dim_offsets, data_offsets, sizes


class IndexedDataset(torch.utils.data.Dataset):
    """A `lazy`/`cached` dataset of 1-D token sequences, read through a memory map."""

    def __init__(self, path: str, fix_lua_indexing: bool = True):
        self._open(path, fix_lua_indexing)

    def _open(self, path: str, fix_lua_indexing: bool) -> None:
        self.path = path
        self.fix_lua_indexing = fix_lua_indexing
        self.dtype, dim_offsets, self.data_offsets, sizes = read_index(path)
        if not np.array_equal(dim_offsets, np.arange(len(dim_offsets))):
            raise DataError(f"{index_file_path(path)}: items of more than one dimension are not token sequences")
        self.sizes = sizes
        size = os.path.getsize(data_file_path(path))
        if size < self.data_offsets[-1] * self.dtype.itemsize:
            raise DataError(f"{data_file_path(path)} is shorter than its index says")
        # an empty split has an empty .bin, which cannot be memory-mapped
        self._data = np.memmap(data_file_path(path), dtype=self.dtype, mode="r") if size else np.empty(0, self.dtype)

    def __getstate__(self) -> tuple[str, bool]:
        return self.path, self.fix_lua_indexing  # data loader workers map the files again, not a copy

    def __setstate__(self, state: tuple[str, bool]) -> None:
        self._open(*state)

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        item = torch.from_numpy(np.array(self._data[self.data_offsets[i] : self.data_offsets[i + 1]], dtype=np.int64))
        return item - 1 if self.fix_lua_indexing else item

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(index_file_path(path)) and os.path.exists(data_file_path(path))


class IndexedDatasetBuilder(MMapIndexedDatasetBuilder):
    """Writes the format fairseq-preprocess --dataset-impl lazy/cached writes: int32 ids plus one, fairseq's
    index; atomically, as the mmap builder (nothing under the final names before finalize)."""

    def __init__(self, out_file: str, dtype=np.int32) -> None:
        super().__init__(out_file, np.int32)  # fairseq's IndexedDatasetBuilder writes int32 whatever it is given

    def add_item(self, tensor) -> None:
        super().add_item(np.asarray(tensor.numpy() if torch.is_tensor(tensor) else tensor, dtype=np.int64) + 1)

    def add_items(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        super().add_items(np.asarray(tokens, dtype=np.int64) + 1, sizes)

    def merge_file_(self, another_file: str) -> None:
        dtype, _, _, sizes = read_index(another_file)
        if dtype != self.dtype:
            raise DataError(f"cannot merge {another_file}: dtype {dtype} differs from {self.dtype}")
        self._sizes.append(np.asarray(sizes, dtype=np.int32))
        self._num_items += len(sizes)
        with open(data_file_path(another_file), "rb") as f:
            shutil.copyfileobj(f, self._data_file, length=16 << 20)

    def _write_index(self, f, sizes: np.ndarray) -> None:
        sizes = np.asarray(sizes, dtype=np.int64)
        data_offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=data_offsets[1:])
        f.write(MAGIC + struct.pack("<Q", 1) + struct.pack("<QQ", CODES[self.dtype], self.dtype.itemsize))
        f.write(struct.pack("<QQ", len(sizes), len(sizes)))
        f.write(np.arange(len(sizes) + 1, dtype=np.int64).tobytes())  # dim_offsets: one dimension per item
        f.write(data_offsets.tobytes())
        f.write(sizes.tobytes())
