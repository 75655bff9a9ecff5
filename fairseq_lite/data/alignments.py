"""Word alignments as fairseq-preprocess --align-suffix binarizes them, and as training reads them.

A text file has one line per sentence pair: `SRC-TGT` pairs of 0-based word indices separated by spaces
(fast_align's and Giza++'s "Pharaoh" format, e.g. `0-0 1-2 2-1`); an empty line is a pair without
alignment. Binarized, each line is one item of an mmap indexed dataset (`{split}.align.{src}-{tgt}.bin/.idx`)
holding the flat indices [s0, t0, s1, t1, ...] as uint32 (fairseq's dtype when there is no vocabulary).
"""

import numpy as np
import torch

from fairseq_lite.data.indexed_dataset import (
    MMapIndexedDatasetBuilder,
    best_fitting_int_dtype,
    data_file_path,
    index_file_path,
)
from fairseq_lite.data.text_chunks import read_text_blocks, split_lines
from fairseq_lite.errors import DataError

# fairseq parses into an IntTensor: larger indices cannot be stored.
MAX_INDEX = 2**31 - 1


def _parse_pairs(line: str) -> list[int]:
    """Flat indices of one line; ValueError (naming the bad token) for anything but `int-int` pairs."""
    flat: list[int] = []
    for pair in line.split():
        parts = pair.split("-")
        if len(parts) != 2:
            raise ValueError(f"{pair!r} is not a SRC-TGT pair")
        try:
            src, tgt = int(parts[0]), int(parts[1])
        except ValueError:
            raise ValueError(f"{pair!r} is not a SRC-TGT pair of word indices") from None
        if src > MAX_INDEX or tgt > MAX_INDEX:
            raise ValueError(f"{pair!r} has an index above {MAX_INDEX}")
        flat += (src, tgt)
    return flat


def parse_alignment(line: str) -> torch.IntTensor:
    """fairseq's utils.parse_alignment: "0-0 1-2" -> IntTensor([0, 0, 1, 2]) (shape 2 * pairs)."""
    return torch.tensor(_parse_pairs(line), dtype=torch.int32)


def binarize_alignments(input_file: str, output_prefix: str) -> int:
    """Write `output_prefix.bin/.idx`, one item per line of `input_file`; return the number of lines.

    Read as fairseq reads text (UTF-8, universal newlines). The files appear only once complete. A malformed
    line is a DataError naming the file and line.
    """
    builder = MMapIndexedDatasetBuilder(data_file_path(output_prefix), best_fitting_int_dtype(None))
    num_lines = 0
    try:
        for text in read_text_blocks(input_file):
            flat: list[int] = []
            sizes: list[int] = []
            for line in split_lines(text):
                num_lines += 1
                try:
                    pairs = _parse_pairs(line)
                except ValueError as e:
                    raise DataError(f"{input_file}:{num_lines}: {e} (alignments are 0-based SRC-TGT pairs)") from None
                flat += pairs
                sizes.append(len(pairs))
            builder.add_items(np.asarray(flat, dtype=np.int64), np.asarray(sizes, dtype=np.int32))
        builder.finalize(index_file_path(output_prefix))
    except BaseException as e:
        builder.abort()
        translated = builder.translate(e)  # a full disk: one line saying so
        if translated is e:
            raise
        raise translated from e
    return num_lines
