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
from collections import Counter
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
from fairseq_lite.data.legacy_indexed_dataset import IndexedDatasetBuilder
from fairseq_lite.data.text_chunks import Tokenizer, fast_tokenizer, file_chunks, read_text_blocks, split_lines
from fairseq_lite.file_io import scratch_dir

if TYPE_CHECKING:
    from fairseq_lite.data.dictionary import Dictionary


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
    split = fast_tokenizer(tokenize) or str.split
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


def _builder(path: str, dtype, legacy_format: bool) -> MMapIndexedDatasetBuilder:
    """fairseq's mmap builder, or (--dataset-impl lazy/cached) its older format's."""
    return (IndexedDatasetBuilder if legacy_format else MMapIndexedDatasetBuilder)(path, dtype)


def _binarize_chunk_to_dataset(
    output_prefix: str, dtype, legacy_format: bool, path: str, start: int, end: int, *encode_args
) -> BinarizeSummary:
    builder = _builder(data_file_path(output_prefix), dtype, legacy_format)
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
    legacy_format: bool = False,
) -> BinarizeSummary:
    """Write `output_prefix.bin/.idx` with one item per line of `input_file`; return the counts.

    dtype defaults to fairseq's choice for the dictionary size (uint16 below 65500 symbols); `legacy_format`:
    fairseq's lazy/cached format instead of mmap (int32 ids plus one, whatever dtype says).
    The final files appear only once complete; on any failure nothing is left behind.
    """
    if dtype is None:
        dtype = best_fitting_int_dtype(len(dictionary))
    chunks = file_chunks(input_file, num_workers)
    encode_args = (dictionary, append_eos, reverse_order, tokenize)
    summary = BinarizeSummary()
    builder = _builder(data_file_path(output_prefix), dtype, legacy_format)
    pool = None
    scratch = None
    try:
        pending = []
        if len(chunks) > 1:
            # Other chunks go to worker processes (each writing its own small dataset) while
            # this process encodes the first one straight into the final builder.
            scratch = scratch_dir(os.path.dirname(output_prefix), "binarize")
            pool = Pool(processes=min(num_workers - 1, len(chunks) - 1))
            for i, (start, end) in enumerate(chunks[1:], start=1):
                prefix = os.path.join(scratch, f"chunk{i}")
                result = pool.apply_async(
                    _binarize_chunk_to_dataset, (prefix, dtype, legacy_format, input_file, start, end, *encode_args)
                )
                pending.append((prefix, result))
            pool.close()
        start, end = chunks[0]
        summary.merge(_binarize_chunk(builder, input_file, start, end, *encode_args))
        for prefix, result in pending:
            summary.merge(result.get())
            builder.merge_file_(prefix)
        builder.finalize(index_file_path(output_prefix))
    except BaseException as e:
        builder.abort()
        if pool is not None:
            pool.terminate()
        translated = builder.translate(e)  # a full disk: one line saying so, not an OSError's traceback
        if translated is e:
            raise
        raise translated from e
    finally:
        if pool is not None:
            pool.join()
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    return summary
