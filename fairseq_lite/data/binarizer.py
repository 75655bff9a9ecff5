"""Text file -> mmap indexed dataset, in parallel byte-range chunks, byte-identical to fairseq.

How fairseq reads text decides the ids, so we reproduce it: UTF-8, universal newlines ("\\r\\n"
and a lone "\\r" end a line too), one item per line (blank lines give an item holding only eos),
tokens = `str.split()` of the line.

Instead of fairseq's per-line, per-token Python loop, a chunk is read in large blocks that end
on a line break, each block is split and looked up in one pass, and its ids go to the `.bin` as
one array. Chunks are cut just after a b"\\n", so whatever the number of workers the items are the
same and come out in file order: `--workers N` writes the same bytes as `--workers 1`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing import Pool
from typing import TYPE_CHECKING

import numpy as np

from fairseq_lite.data.indexed_dataset import (
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
    data_file_path,
    index_file_path,
)
from fairseq_lite.errors import DataError

if TYPE_CHECKING:
    from fairseq_lite.data.dictionary import Dictionary

Tokenizer = Callable[[str], list[str]]

# Large enough that per-block overhead vanishes, small enough that a block's token list stays a
# few hundred MB at most.
BLOCK_BYTES = 8 << 20


@dataclass
class BinarizeSummary:
    """Counts for fairseq's log line: "N sents, M tokens, X% replaced"."""

    num_seq: int = 0
    num_tok: int = 0
    replaced: Counter = field(default_factory=Counter)  # unknown word -> times it became <unk>

    @property
    def num_replaced(self) -> int:
        return sum(self.replaced.values())

    @property
    def replaced_percent(self) -> float:
        return 100 * self.num_replaced / self.num_tok if self.num_tok else 0.0

    def __str__(self) -> str:
        base = f"{self.num_seq} sents, {self.num_tok} tokens"
        # fairseq only reports replacements once it has binarized a line; its odd-looking
        # format spec (3 significant digits, e.g. "1.27", "0.0", "1e+02") is kept on purpose.
        if self.num_seq == 0:
            return base
        return f"{base}, {self.replaced_percent:.3}% replaced"

    def merge(self, other: BinarizeSummary) -> None:
        self.num_seq += other.num_seq
        self.num_tok += other.num_tok
        self.replaced.update(other.replaced)


# ---------------------------------------------------------------- reading text in chunks


def find_offsets(path: str, num_chunks: int) -> list[int]:
    """`num_chunks + 1` byte offsets splitting the file into chunks that start on a line."""
    size = _file_size(path)
    chunk_size = size // num_chunks
    offsets = [0] * (num_chunks + 1)
    offsets[-1] = size
    with open(path, "rb") as f:
        for i in range(1, num_chunks):
            # Like fairseq: the chunk boundary goes after the line holding byte chunk_size * i.
            offsets[i] = max(offsets[i - 1], _next_line_start(f, chunk_size * i, size))
    return offsets


def _next_line_start(f, pos: int, size: int) -> int:
    f.seek(pos)
    while pos < size:
        block = f.read(1 << 16)
        if not block:
            break
        newline = block.find(b"\n")
        if newline >= 0:
            return pos + newline + 1
        pos += len(block)
    return size


def read_text_blocks(
    path: str, start: int = 0, end: int | None = None, block_bytes: int = BLOCK_BYTES
) -> Iterator[str]:
    """Decoded text of bytes [start, end) of a file, in blocks that each end on a line break.

    Line breaks are normalized to "\\n" as Python's universal newlines (and so fairseq) read them.
    """
    if end is None:
        end = _file_size(path)
    with open(path, "rb") as f:
        f.seek(start)
        pos = block_start = start
        pending = b""
        while pos < end:
            buf = f.read(min(block_bytes, end - pos))
            if not buf:  # the file shrank under us; use what we have
                break
            pos += len(buf)
            pending += buf
            if pos < end:
                # Cut after the last "\n": it never splits a UTF-8 character nor a "\r\n".
                cut = pending.rfind(b"\n") + 1
                if cut == 0:
                    continue  # a line longer than a block: keep reading
                block, pending = pending[:cut], pending[cut:]
            else:
                block, pending = pending, b""
            yield _decode(block, path, block_start)
            block_start += len(block)
        if pending:
            yield _decode(pending, path, block_start)


def _decode(data: bytes, path: str, offset: int) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        position = offset + e.start
        raise DataError(
            f"{path}:{_line_number(path, position)}: invalid UTF-8 (byte {position}); input text must be UTF-8"
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _line_number(path: str, position: int) -> int:
    """1-based number of the line holding byte `position` (only computed for error messages)."""
    newlines = 0
    with open(path, "rb") as f:
        while position > 0:
            block = f.read(min(position, 1 << 20))
            if not block:
                break
            newlines += block.count(b"\n")
            position -= len(block)
    return newlines + 1


def split_lines(text: str) -> list[str]:
    """Lines of a normalized block, without their "\\n" (not str.splitlines: that also breaks
    on characters such as \\x1c or \\u2028, which fairseq treats as spaces inside a line)."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        raise DataError(f"input file not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None


def _chunks(path: str, num_workers: int) -> list[tuple[int, int]]:
    offsets = find_offsets(path, max(1, num_workers))
    chunks = [(s, e) for s, e in zip(offsets, offsets[1:]) if e > s]
    return chunks or [(0, 0)]


# ---------------------------------------------------------------- counting words


def count_words(path: str, eos_word: str, num_workers: int = 1, tokenize: Tokenizer | None = None) -> list[Counter]:
    """Word counts (plus `eos_word` once per line) of a text file, one Counter per chunk, in order."""
    chunks = _chunks(path, num_workers)
    args = [(path, eos_word, start, end, tokenize) for start, end in chunks]
    if len(chunks) == 1:
        return [_count_chunk(*args[0])]
    with Pool(processes=min(num_workers, len(chunks))) as pool:
        return pool.starmap(_count_chunk, args)


def _count_chunk(path: str, eos_word: str, start: int, end: int, tokenize: Tokenizer | None) -> Counter:
    tokenize = _fast_tokenizer(tokenize)
    counter: Counter = Counter()
    num_lines = 0
    for text in read_text_blocks(path, start, end):
        if tokenize is None:
            counter.update(text.split())  # line breaks are whitespace too
            num_lines += text.count("\n") + (0 if not text or text.endswith("\n") else 1)
        else:
            for line in split_lines(text):
                counter.update(tokenize(line))
                num_lines += 1
    if num_lines:
        counter[eos_word] += num_lines
    return counter


def _fast_tokenizer(tokenize: Tokenizer | None) -> Tokenizer | None:
    """None when `tokenize` is the default whitespace split, which has a faster batched path."""
    from fairseq_lite.data.dictionary import tokenize_line

    return None if tokenize in (None, tokenize_line) else tokenize


# ---------------------------------------------------------------- encoding


def encode_lines(
    lines: list[str],
    dictionary: Dictionary,
    append_eos: bool = True,
    reverse_order: bool = False,
    tokenize: Tokenizer | None = None,
) -> tuple[np.ndarray, np.ndarray, Counter]:
    """Ids of many lines at once: (all ids concatenated (int64), ids per line (int32), replaced).

    Gives exactly what `dictionary.encode_line(line, add_if_not_exist=False)` gives per line.
    """
    split = _fast_tokenizer(tokenize) or str.split
    words: list[str] = []
    lengths: list[int] = []
    extend, record = words.extend, lengths.append
    for line in lines:
        tokens = split(line)
        if reverse_order:
            tokens = tokens[::-1]
        extend(tokens)
        record(len(tokens))

    unk = dictionary.unk_index
    ids = np.fromiter(map(dictionary.indices.get, words, repeat(unk)), dtype=np.int64, count=len(words))

    replaced: Counter = Counter()
    unk_positions = np.flatnonzero(ids == unk)
    if len(unk_positions):
        unk_word = dictionary.unk_word
        replaced.update(w for w in map(words.__getitem__, unk_positions.tolist()) if w != unk_word)

    sizes = np.asarray(lengths, dtype=np.int32)
    if not append_eos:
        return ids, sizes, replaced
    sizes += 1
    out = np.full(len(ids) + len(sizes), dictionary.eos_index, dtype=np.int64)
    # Each line's words shift right by one slot per eos written before them.
    line_of_word = np.repeat(np.arange(len(sizes)), sizes - 1)
    out[np.arange(len(ids)) + line_of_word] = ids
    return out, sizes, replaced


def _binarize_chunk(
    builder: MMapIndexedDatasetBuilder,
    path: str,
    start: int,
    end: int,
    dictionary: Dictionary,
    append_eos: bool,
    reverse_order: bool,
    tokenize: Tokenizer | None,
) -> BinarizeSummary:
    summary = BinarizeSummary()
    for text in read_text_blocks(path, start, end):
        lines = split_lines(text)
        tokens, sizes, replaced = encode_lines(lines, dictionary, append_eos, reverse_order, tokenize)
        builder.add_items(tokens, sizes)
        summary.num_seq += len(sizes)
        summary.num_tok += len(tokens)
        summary.replaced.update(replaced)
    return summary


def _binarize_chunk_to_dataset(
    output_prefix: str, dtype, path: str, start: int, end: int, *encode_args
) -> BinarizeSummary:
    builder = MMapIndexedDatasetBuilder(data_file_path(output_prefix), dtype)
    with builder:
        summary = _binarize_chunk(builder, path, start, end, *encode_args)
        builder.finalize(index_file_path(output_prefix))
    return summary


def binarize_file(
    input_file: str,
    dictionary: Dictionary,
    output_prefix: str,
    *,
    num_workers: int = 1,
    append_eos: bool = True,
    reverse_order: bool = False,
    tokenize: Tokenizer | None = None,
    dtype=None,
) -> BinarizeSummary:
    """Write `output_prefix.bin/.idx` with one item per line of `input_file`; return the counts.

    dtype defaults to fairseq's choice for the dictionary size (uint16 below 65500 symbols).
    The final files appear only once complete; on any failure nothing is left behind.
    """
    if dtype is None:
        dtype = best_fitting_int_dtype(len(dictionary))
    chunks = _chunks(input_file, num_workers)
    encode_args = (dictionary, append_eos, reverse_order, tokenize)
    summary = BinarizeSummary()
    builder = MMapIndexedDatasetBuilder(data_file_path(output_prefix), dtype)
    pool = None
    scratch = None
    try:
        pending = []
        if len(chunks) > 1:
            # Other chunks go to worker processes (each writing its own small dataset) while
            # this process encodes the first one straight into the final builder.
            scratch = tempfile.mkdtemp(prefix=".binarize-", dir=os.path.dirname(output_prefix) or ".")
            pool = Pool(processes=min(num_workers - 1, len(chunks) - 1))
            for i, (start, end) in enumerate(chunks[1:], start=1):
                prefix = os.path.join(scratch, f"chunk{i}")
                result = pool.apply_async(
                    _binarize_chunk_to_dataset, (prefix, dtype, input_file, start, end, *encode_args)
                )
                pending.append((prefix, result))
            pool.close()
        start, end = chunks[0]
        summary.merge(_binarize_chunk(builder, input_file, start, end, *encode_args))
        for prefix, result in pending:
            summary.merge(result.get())
            builder.merge_file_(prefix)
        builder.finalize(index_file_path(output_prefix))
    except BaseException:
        builder.abort()
        if pool is not None:
            pool.terminate()
        raise
    finally:
        if pool is not None:
            pool.join()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return summary
