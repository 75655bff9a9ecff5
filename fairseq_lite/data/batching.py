"""Batching and size filtering: fairseq's batch_by_size and filter_indices_by_size.

fairseq implements batching in Cython. Here :func:`batch_by_size` runs the compiled operators
``fairseq_lite::batch_by_size`` / ``batch_fixed_shapes`` (fairseq_lite/csrc/data_utils.cpp) when
the extension is built, and otherwise the numpy reference below, which is vectorized for the common
(length-sorted) case and gives identical batches (tests/test_compiled_data_utils.py checks both).
`data_utils` re-exports these under fairseq's module name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from fairseq_lite.errors import ConfigError, DataError, key
from fairseq_lite.kernels import compiled_op

logger = logging.getLogger(__name__)


def _as_int64_array(values: Iterable[int] | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False).reshape(-1)
    if isinstance(values, torch.Tensor):
        return values.numpy().astype(np.int64, copy=False).reshape(-1)
    return np.fromiter(values, dtype=np.int64, count=-1)


def _longest_prefixes_sorted(ntok: np.ndarray, max_tokens: int, max_sentences: int) -> np.ndarray:
    """For every start position s, the longest valid batch ``[s, s+L)`` when ``ntok`` is sorted.

    With non-decreasing lengths the padded size of ``[s, j]`` is ``(j - s + 1) * ntok[j]``, which
    is within budget iff ``s >= j + 1 - max_tokens // ntok[j]``. That bound is strictly increasing
    in j, so one searchsorted finds, for all starts at once, the first j that breaks it.
    """
    n = len(ntok)
    positions = np.arange(n, dtype=np.int64)
    if max_tokens > 0:
        per_len = np.full(n, n + 1, dtype=np.int64)
        nonzero = ntok > 0
        per_len[nonzero] = np.minimum(max_tokens // ntok[nonzero], n + 1)
        min_start = positions + 1 - per_len
        first_bad = np.searchsorted(min_start, positions, side="right")
    else:
        first_bad = np.full(n, n, dtype=np.int64)
    longest = first_bad - positions
    if max_sentences > 0:
        np.minimum(longest, max_sentences, out=longest)
    return longest


def _longest_prefix_at(ntok: np.ndarray, ntok_list: list[int], start: int, max_tokens: int, max_sentences: int) -> int:
    """Longest valid batch starting at ``start`` when lengths are not sorted.

    Small batches are found with a plain scan (cheaper than numpy's per-call overhead); larger
    ones with a doubling window of vectorized running maxima.
    """
    limit = len(ntok_list) - start
    if max_sentences > 0:
        limit = min(limit, max_sentences)
    if max_tokens <= 0:
        return limit

    scan_end = start + min(limit, 32)
    longest = 0
    pos = start
    while pos < scan_end:
        if ntok_list[pos] > longest:
            longest = ntok_list[pos]
        if (pos - start + 1) * longest > max_tokens:
            return pos - start
        pos += 1
    if pos - start == limit:
        return limit

    width = min(limit, 128)
    while True:
        padded = np.maximum.accumulate(ntok[start : start + width]) * np.arange(1, width + 1, dtype=np.int64)
        # padded size only grows with the batch, so the valid batches form a prefix
        over = np.flatnonzero(padded > max_tokens)
        if len(over) > 0:
            return int(over[0])
        if width == limit:
            return width
        width = min(limit, width * 2)


def _round_to_multiple(count: int, multiple: int) -> int:
    # fairseq keeps batches smaller than the multiple whole, and trims larger ones down to it
    return count - count % multiple if count > multiple else count


def _batch_ends(ntok: np.ndarray, max_tokens: int, max_sentences: int, bsz_mult: int) -> list[int]:
    n = len(ntok)
    ends: list[int] = []
    if n > 1 and bool(np.all(ntok[1:] >= ntok[:-1])):
        longest = _longest_prefixes_sorted(ntok, max_tokens, max_sentences)
        if bsz_mult > 1:
            big = longest > bsz_mult
            longest[big] -= longest[big] % bsz_mult
        nxt = (np.arange(n, dtype=np.int64) + longest).tolist()
        pos = 0
        while pos < n:
            pos = nxt[pos]
            ends.append(pos)
        return ends

    ntok_list = ntok.tolist()
    pos = 0
    while pos < n:
        count = _longest_prefix_at(ntok, ntok_list, pos, max_tokens, max_sentences)
        pos += _round_to_multiple(count, bsz_mult)
        ends.append(pos)
    return ends


def _batch_fixed_shapes(ntok: np.ndarray, shapes: np.ndarray) -> list[int]:
    """Greedy batching where every batch must fit one of the given ``(bsz, max_len)`` shapes.

    Returns the batch end positions. Unlike fairseq's batch_fixed_shapes_fast, the longest item
    of a batch that was just started is remembered (fairseq forgets it and can overfill a shape
    when lengths are unsorted) and no empty batch is emitted for an item no shape accepts.
    """
    largest_bsz = int(shapes[:, 0].max()) if len(shapes) else 0
    # allowed_len[c]: the longest padded length any shape accepts for a batch of c items
    allowed_len = np.full(largest_bsz + 2, -1, dtype=np.int64)
    for bsz, length in shapes.tolist():
        allowed_len[1 : bsz + 1] = np.maximum(allowed_len[1 : bsz + 1], length)
    allowed = allowed_len.tolist()

    ends: list[int] = []
    start, batch_len = 0, 0
    for pos, length in enumerate(ntok.tolist()):
        count = pos - start + 1
        grown_len = max(batch_len, length)
        if count <= largest_bsz and grown_len <= allowed[count]:
            batch_len = grown_len
            continue
        if pos > start:
            ends.append(pos)
        start, batch_len = pos, length
    if start < len(ntok):
        ends.append(len(ntok))
    return ends


def _split_at(indices: np.ndarray, ends: Sequence[int] | np.ndarray) -> list[np.ndarray]:
    """``indices`` cut into consecutive views ending at ``ends`` (the last end is ``len(indices)``).

    Slicing from Python ints is several times faster than ``np.split``, which matters with
    hundreds of thousands of batches.
    """
    bounds = [0, *(ends.tolist() if isinstance(ends, np.ndarray) else ends)]
    return [indices[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def _cpu_tensor(array: np.ndarray) -> torch.Tensor:
    """An int64 CPU tensor sharing ``array``'s memory (copied only if it is read-only or strided,
    e.g. memory-mapped sizes, which torch.from_numpy would warn about)."""
    return torch.from_numpy(np.require(array, dtype=np.int64, requirements=("C", "W")))


def batch_by_size(
    indices: Iterable[int] | np.ndarray,
    num_tokens_fn: Callable[[int], int] | None = None,
    num_tokens_vec: Iterable[int] | np.ndarray | None = None,
    max_tokens: int | None = None,
    max_sentences: int | None = None,
    required_batch_size_multiple: int = 1,
    fixed_shapes: Sequence[tuple[int, int]] | np.ndarray | None = None,
) -> list[np.ndarray]:
    """Split ordered ``indices`` into consecutive batches.

    A batch is grown greedily while its padded size (items x longest item) stays within
    ``max_tokens`` and its item count within ``max_sentences`` (None or <= 0 means no limit).
    When a batch closes with more than ``required_batch_size_multiple`` items it is trimmed down to
    a multiple of it and the trimmed items start the next batch; the final batch is trimmed the
    same way. These are the semantics of fairseq's vectorized ``batch_by_size_vec`` (which
    fairseq's datasets with ``num_tokens_vec`` use), so the padded-size limit always holds.

    ``num_tokens_vec[i]`` is the size of ``indices[i]``; when it is not given it is computed with
    ``num_tokens_fn``. Returns a list of int64 arrays (views into the index array).
    """
    idx = _as_int64_array(indices)
    if len(idx) == 0:
        return []
    if num_tokens_vec is not None:
        ntok = _as_int64_array(num_tokens_vec)
    elif num_tokens_fn is not None:
        ntok = np.fromiter((num_tokens_fn(i) for i in idx.tolist()), dtype=np.int64, count=len(idx))
    else:
        raise ValueError("batch_by_size needs num_tokens_fn or num_tokens_vec")
    if len(ntok) != len(idx):
        raise ValueError(f"num_tokens_vec has {len(ntok)} entries but there are {len(idx)} indices")

    if int(ntok.min()) < 0:
        raise DataError(f"sample sizes must be non-negative, got {int(ntok.min())}")

    if fixed_shapes is not None:
        shapes = np.asarray(fixed_shapes, dtype=np.int64).reshape(-1, 2)
        if len(shapes) > 0 and int(shapes.min()) < 0:
            raise ConfigError(f"fixed_shapes must be non-negative (bsz, length) pairs, got {shapes.tolist()}")
        op = compiled_op("batch_fixed_shapes", torch.device("cpu"))
        if op is not None:
            return _split_at(idx, op(_cpu_tensor(ntok), _cpu_tensor(shapes)).numpy())
        return _split_at(idx, _batch_fixed_shapes(ntok, shapes))

    bsz_mult = int(required_batch_size_multiple)
    if bsz_mult < 1:
        raise ConfigError(
            f"{key('dataset.required_batch_size_multiple')} must be >= 1, got {required_batch_size_multiple}"
        )
    max_tokens_i = int(max_tokens) if max_tokens is not None else -1
    max_sentences_i = int(max_sentences) if max_sentences is not None else -1

    if max_tokens_i > 0:
        too_long = np.flatnonzero(ntok > max_tokens_i)
        if len(too_long) > 0:
            first = int(too_long[0])
            raise DataError(
                f"sample #{int(idx[first])} has {int(ntok[first])} tokens, which exceeds the "
                f"{key('dataset.max_tokens')} limit of {max_tokens_i} ({len(too_long)} sample(s) in total are "
                f"too long); raise {key('dataset.max_tokens')} or filter long samples with "
                f"{key('task.max_target_positions')} / {key('task.tokens_per_sample')}"
            )

    op = compiled_op("batch_by_size", torch.device("cpu"))
    if op is not None:
        ends = op(_cpu_tensor(ntok), max_tokens_i, max_sentences_i, bsz_mult).numpy()
    else:
        ends = _batch_ends(ntok, max_tokens_i, max_sentences_i, bsz_mult)
    return _split_at(idx, ends)


# --------------------------------------------------------------------------------------------
# filtering
# --------------------------------------------------------------------------------------------


def _exceeds(sizes: np.ndarray, max_positions: Any) -> np.ndarray:
    """Boolean mask of the rows of ``sizes`` (1-D, or 2-D with one column per side) too long."""
    if isinstance(max_positions, (int, float, np.integer, np.floating)):
        over = sizes > max_positions
        return over if over.ndim == 1 else over.any(axis=1)
    limits = list(max_positions)
    if sizes.ndim == 1:
        # a single size must fit every limit (fairseq's rule for scalar sizes vs tuple limits)
        bounds = [b for b in limits if b is not None]
        return sizes > min(bounds) if bounds else np.zeros(len(sizes), dtype=bool)
    over = np.zeros(len(sizes), dtype=bool)
    for col, bound in enumerate(limits[: sizes.shape[1]]):
        if bound is not None:
            over |= sizes[:, col] > bound
    return over


def size_exceeds(size: Any, max_positions: Any) -> bool:
    """Whether one sample's size (int or tuple) exceeds ``max_positions`` (int or tuple)."""
    if max_positions is None:
        return False
    if isinstance(size, (tuple, list)):
        size_arr = np.asarray([[np.inf if s is None else s for s in size]], dtype=np.float64)
        if isinstance(max_positions, (int, float, np.integer, np.floating)):
            return bool(size_arr.max() > max_positions)
        return bool(_exceeds(size_arr, max_positions)[0])
    return bool(_exceeds(np.asarray([size]), max_positions)[0])


def filter_indices_by_size(
    indices: np.ndarray | Sequence[int],
    sizes: np.ndarray | Sequence[int],
    max_positions: Any,
    raise_exception: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """Drop the indices whose size exceeds ``max_positions``; return ``(kept, ignored)``.

    ``sizes`` is indexed by dataset index (1-D, or 2-D ``N x k`` for k-sided samples compared
    component-wise against a ``max_positions`` tuple; None entries mean no limit). With
    ``raise_exception`` any oversized sample is an error (fairseq's behaviour for validation
    sets unless --skip-invalid-size-inputs-valid-test); otherwise a warning lists a few of them.
    """
    idx = _as_int64_array(indices)
    if max_positions is None or len(idx) == 0:
        return idx, []
    size_arr = np.asarray(sizes)
    over = _exceeds(size_arr[idx], max_positions)
    if not over.any():
        return idx, []
    ignored = idx[over].tolist()
    kept = idx[~over]
    if raise_exception:
        first = ignored[0]
        first_size = size_arr[first].tolist()
        raise DataError(
            f"Size of sample #{first} is invalid (={first_size}) since "
            f"max_positions={max_positions}, skip this example with "
            f"--skip-invalid-size-inputs-valid-test ({len(ignored)} invalid sample(s), "
            f"first few sample ids={ignored[:10]})"
        )
    logger.warning(
        "%d samples have invalid sizes and will be skipped, max_positions=%s, first few sample ids=%s",
        len(ignored),
        max_positions,
        ignored[:10],
    )
    return kept, ignored


def filter_paired_dataset_indices_by_size(
    src_sizes: np.ndarray,
    tgt_sizes: np.ndarray | None,
    indices: np.ndarray,
    max_sizes: Any,
) -> tuple[np.ndarray, list[int]]:
    """fairseq's pair filter: drop indices whose source or target exceeds its limit."""
    if max_sizes is None:
        return indices, []
    if isinstance(max_sizes, (int, float, np.integer, np.floating)):
        max_src, max_tgt = max_sizes, max_sizes
    else:
        max_src, max_tgt = max_sizes
    over = np.asarray(src_sizes)[indices] > max_src
    if tgt_sizes is not None:
        over |= np.asarray(tgt_sizes)[indices] > max_tgt
    if not over.any():
        return indices, []
    return indices[~over], indices[over].tolist()
