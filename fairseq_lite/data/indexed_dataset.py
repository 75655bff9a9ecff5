"""fairseq's "mmap" indexed dataset: token arrays in `X.bin`, their lengths and offsets in `X.idx`.

`X.idx` layout (all little-endian), byte-identical to what fairseq 0.12.2 writes:

    9 bytes  magic b"MMIDIDX\\x00\\x00"
    u64      version (1)
    u8       dtype code (see DTYPE_CODES)
    u64      number of items N
    N x i32  item sizes (in tokens)
    N x i64  item byte offsets into X.bin

Megatron-LM uses the same magic and version but inserts a u64 document count after N and appends
an i64 `doc_idx` array; we read that variant too (told apart by the file size) but always write
fairseq's, so that files stay interchangeable with fairseq.

`X.bin` is the items' tokens, concatenated, in the dtype of the header.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Sequence

import numpy as np
import torch

from fairseq_lite.errors import DataError
from fairseq_lite.file_io import AtomicFile

MAGIC = b"MMIDIDX\x00\x00"
VERSION = 1
_HEADER = struct.Struct("<9sQBQ")  # magic, version, dtype code, number of items

# fairseq's codes. Code 7 (np.double) is the same type as 6, so a writer always picks 6.
DTYPE_CODES = {
    1: np.uint8,
    2: np.int8,
    3: np.int16,
    4: np.int32,
    5: np.int64,
    6: np.float64,
    7: np.double,
    8: np.uint16,
    9: np.uint32,
    10: np.uint64,
}


def _dtype_code(dtype) -> int:
    dtype = np.dtype(dtype)
    for code, candidate in DTYPE_CODES.items():
        if np.dtype(candidate) == dtype:
            return code
    raise ValueError(f"dtype {dtype} cannot be stored in an mmap indexed dataset")


def best_fitting_int_dtype(max_int_to_represent: int | None) -> type[np.integer]:
    """The smallest dtype fairseq uses for ids below `max_int_to_represent` (a vocabulary size)."""
    if max_int_to_represent is None:
        return np.uint32  # fairseq's "safe guess"
    if max_int_to_represent < 65500:
        return np.uint16
    if max_int_to_represent < 4294967295:
        return np.uint32
    return np.int64  # not uint64: its type promotion rules surprise (numpy issue 5745)


def data_file_path(prefix_path: str) -> str:
    return prefix_path + ".bin"


def index_file_path(prefix_path: str) -> str:
    return prefix_path + ".idx"


class MMapIndex:
    """The parsed `.idx` file: dtype, per-item sizes and byte pointers (memory-mapped)."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            file_size = os.path.getsize(path)
            with open(path, "rb") as f:
                header = f.read(_HEADER.size + 8)
        except FileNotFoundError:
            raise DataError(f"index file not found: {path}") from None
        except OSError as e:
            raise DataError(f"cannot read index file {path}: {e.strerror}") from None

        if len(header) < _HEADER.size or header[:9] != MAGIC:
            raise DataError(
                f"{path} is not an mmap indexed dataset index (bad magic); was it written with another --dataset-impl?"
            )
        _, version, code, n = _HEADER.unpack_from(header)
        if version != VERSION:
            raise DataError(f"{path}: unsupported index version {version} (expected {VERSION})")
        if code not in DTYPE_CODES:
            raise DataError(f"{path}: unknown dtype code {code}")
        self.dtype = np.dtype(DTYPE_CODES[code])

        offset = _HEADER.size
        ndocs = None
        if file_size != offset + 12 * n:
            # Not fairseq's layout; maybe Megatron's (document count, then doc_idx at the end).
            if len(header) == offset + 8:
                (ndocs,) = struct.unpack_from("<Q", header, offset)
            if ndocs is None or file_size != offset + 8 + 12 * n + 8 * ndocs:
                raise DataError(f"{path}: index is truncated or corrupt ({file_size} bytes for {n} items)")
            offset += 8

        self._len = n
        if n == 0 and ndocs is None:
            self.sizes = np.empty(0, dtype=np.int32)
            self.pointers = np.empty(0, dtype=np.int64)
        else:
            buffer = np.memmap(path, mode="r", dtype=np.uint8)
            self.sizes = np.frombuffer(buffer, dtype=np.int32, count=n, offset=offset)
            self.pointers = np.frombuffer(buffer, dtype=np.int64, count=n, offset=offset + 4 * n)
        if ndocs is not None:
            self.doc_idx = np.frombuffer(buffer, dtype=np.int64, count=ndocs, offset=offset + 12 * n)
        else:
            # fairseq's format has no document boundaries: every item stands alone.
            self.doc_idx = np.arange(n + 1, dtype=np.int64)

    def __len__(self) -> int:
        return self._len

    @property
    def data_nbytes(self) -> int:
        """How many bytes the matching `.bin` must hold."""
        if self._len == 0:
            return 0
        return int(self.pointers[-1]) + int(self.sizes[-1]) * self.dtype.itemsize


class MMapIndexedDataset(torch.utils.data.Dataset):
    """Read-only, memory-mapped access to the items of `prefix.bin` / `prefix.idx`."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._do_init(path)

    def _do_init(self, path: str) -> None:
        self._path = path
        self._index = MMapIndex(index_file_path(path))
        bin_path = data_file_path(path)
        try:
            bin_size = os.path.getsize(bin_path)
        except FileNotFoundError:
            raise DataError(f"data file not found: {bin_path} (its index {index_file_path(path)} exists)") from None
        if bin_size < self._index.data_nbytes:
            raise DataError(f"{bin_path} is truncated: {bin_size} bytes, its index needs {self._index.data_nbytes}")
        # numpy cannot map an empty file, and an empty dataset is legitimate (an empty input text).
        if bin_size == 0:
            self._data = np.empty(0, dtype=np.uint8)
        else:
            self._data = np.memmap(bin_path, mode="r", dtype=np.uint8)

    # A dataset crosses to DataLoader workers by path; each worker maps the files itself.
    def __getstate__(self) -> str:
        return self._path

    def __setstate__(self, state: str) -> None:
        self._do_init(state)

    def __len__(self) -> int:
        return len(self._index)

    def __getitem__(self, i: int) -> torch.LongTensor:
        n = len(self._index)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for dataset of size {n}")
        ptr = int(self._index.pointers[i])
        size = int(self._index.sizes[i])
        itemsize = self._index.dtype.itemsize
        raw = self._data[ptr : ptr + size * itemsize]
        # astype copies, so the tensor does not pin the mapping and may be modified freely.
        return torch.from_numpy(raw.view(self._index.dtype).astype(np.int64))

    @property
    def sizes(self) -> np.ndarray:
        return self._index.sizes

    @property
    def dtype(self) -> np.dtype:
        return self._index.dtype

    @property
    def doc_idx(self) -> np.ndarray:
        return self._index.doc_idx

    @property
    def supports_prefetch(self) -> bool:
        return False

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.exists(index_file_path(path)) and os.path.exists(data_file_path(path))


class MMapIndexedDatasetBuilder:
    """Writes an mmap indexed dataset; nothing appears under the final names before `finalize`.

    Tokens go to a temporary file next to `out_file`; `finalize` writes the index the same way and
    renames both into place, so an interrupted run never leaves a half-written `.bin`/`.idx`.
    Call `abort()` (or use the builder as a context manager) to remove the temporaries on failure.
    """

    def __init__(self, out_file: str, dtype=np.int64) -> None:
        self._bin_path = out_file
        self._dtype = np.dtype(dtype)
        _dtype_code(self._dtype)  # fail now, not at finalize, on an unstorable dtype
        self._data_file = AtomicFile(out_file, "wb")
        self._sizes: list[np.ndarray] = []
        self._num_items = 0
        self._doc_idx = [0]

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    def add_item(self, tensor: torch.Tensor | np.ndarray | Sequence[int]) -> None:
        if torch.is_tensor(tensor):
            tensor = tensor.numpy()
        array = np.asarray(tensor, dtype=self._dtype)
        self._data_file.write(array.tobytes(order="C"))
        self._sizes.append(np.array([array.size], dtype=np.int32))
        self._num_items += 1

    def add_items(self, tokens: np.ndarray, sizes: np.ndarray) -> None:
        """Add many items at once: `tokens` is their concatenation, `sizes` their lengths."""
        sizes = np.asarray(sizes, dtype=np.int32)
        if int(sizes.sum(dtype=np.int64)) != len(tokens):
            raise ValueError(f"sizes add up to {int(sizes.sum())} tokens but {len(tokens)} were given")
        self._data_file.write(np.asarray(tokens, dtype=self._dtype).tobytes(order="C"))
        self._sizes.append(sizes)
        self._num_items += len(sizes)

    def end_document(self) -> None:
        """Mark a document boundary (kept in memory only: fairseq's `.idx` format has no field for it)."""
        self._doc_idx.append(self._num_items)

    @property
    def doc_idx(self) -> list[int]:
        return list(self._doc_idx)

    def merge_file_(self, another_file: str) -> None:
        """Append all items of the dataset at prefix `another_file` (which must share our dtype)."""
        index = MMapIndex(index_file_path(another_file))
        if index.dtype != self._dtype:
            raise DataError(f"cannot merge {another_file}: dtype {index.dtype} differs from {self._dtype}")
        self._doc_idx.extend(int(d) + self._num_items for d in index.doc_idx[1:])
        self._sizes.append(np.array(index.sizes, dtype=np.int32))
        self._num_items += len(index)
        with open(data_file_path(another_file), "rb") as f:
            shutil.copyfileobj(f, self._data_file, length=16 << 20)

    def finalize(self, index_file: str) -> None:
        """Write the index and move both files to their final names: both are synced first (a full disk
        shows there), and only then is the old index dropped and the new files renamed into place."""
        sizes = np.concatenate(self._sizes) if self._sizes else np.empty(0, dtype=np.int32)
        index = AtomicFile(index_file, "wb")
        try:
            self._write_index(index, sizes)
            index.sync()
            self._data_file.sync()
            # Drop a stale index first: a crash between the renames below must not leave an old
            # index next to the new data.
            if os.path.exists(index_file):
                os.remove(index_file)
            self._data_file.replace()
            index.replace()
        except BaseException as e:
            index.abort()
            self.abort()
            translated = index.translate(self.translate(e))
            if translated is e:
                raise
            raise translated from e

    def _write_index(self, f, sizes: np.ndarray) -> None:
        write_index(f, sizes, self._dtype)

    def translate(self, error: BaseException) -> BaseException:
        """A failed write as the error to show: DiskFullError when the disk filled up."""
        return self._data_file.translate(error)

    def abort(self) -> None:
        """Discard everything written so far."""
        self._data_file.abort()

    def __enter__(self) -> MMapIndexedDatasetBuilder:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def write_index(f, sizes: np.ndarray, dtype) -> None:
    """Write fairseq's `.idx` bytes for items of the given sizes to the binary stream `f`."""
    sizes = np.asarray(sizes, dtype=np.int32)
    itemsize = np.dtype(dtype).itemsize
    pointers = np.zeros(len(sizes), dtype=np.int64)
    if len(sizes) > 1:
        np.cumsum(sizes[:-1], dtype=np.int64, out=pointers[1:])
    pointers *= itemsize
    f.write(_HEADER.pack(MAGIC, VERSION, _dtype_code(dtype), len(sizes)))
    f.write(sizes.tobytes(order="C"))
    f.write(pointers.tobytes(order="C"))
