"""Cut a stream of sentences into the fixed-size blocks a language model trains on.

The block boundaries are computed once per dataset by the compiled operator
``fairseq_lite::token_block_slices`` (fairseq_lite/csrc/data_utils.cpp) when the extension is built,
and otherwise by the numpy reference :func:`_build_blocks_reference`; both give the same blocks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import ConfigError, DataError, key
from fairseq_lite.kernels import compiled_op

__all__ = ["TokenBlockDataset", "BREAK_MODES"]

BREAK_MODES = ("none", "complete", "complete_doc", "eos")


def _next_index_at_or_after(mask: np.ndarray) -> np.ndarray:
    """For each position i, the first j >= i where ``mask[j]`` holds (``len(mask)`` if none)."""
    n = len(mask)
    candidates = np.where(mask, np.arange(n, dtype=np.int64), n)
    return np.minimum.accumulate(candidates[::-1])[::-1]


def _follow_chain(nxt: np.ndarray, n: int) -> np.ndarray:
    """Positions visited by ``i -> nxt[i]`` starting from 0 until ``n`` is reached.

    Each step depends on the previous one, so this part is a plain loop, but it runs once per
    block rather than once per sentence or token.
    """
    jumps = nxt.tolist()
    visited = []
    pos = 0
    while pos < n:
        visited.append(pos)
        pos = jumps[pos]
    return np.asarray(visited, dtype=np.int64)


def _pack_sentences(
    sizes: np.ndarray, offsets: np.ndarray, block_size: int, doc_end: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedily pack whole sentences into blocks of at most ``block_size`` tokens.

    A block starting at sentence i takes sentences while the total fits; its first non-empty
    sentence is always taken, even when it alone exceeds ``block_size``. With ``doc_end`` a block
    also stops before the next document separator. Returns (first sentence, end sentence) pairs.
    """
    n = len(sizes)
    positions = np.arange(n, dtype=np.int64)
    fits_until = np.searchsorted(offsets, offsets[:-1] + block_size, side="right") - 1
    first_nonempty = _next_index_at_or_after(sizes > 0)
    nxt = np.minimum(np.maximum(fits_until, first_nonempty + 1), n)
    if doc_end is not None:
        nxt = np.minimum(nxt, doc_end)
        # a separator is skipped on its own; the caller drops these one-sentence "blocks"
        separators = doc_end == positions
        nxt[separators] = positions[separators] + 1
    first = _follow_chain(nxt, n)
    return first, nxt[first]


def _build_blocks(
    sizes: np.ndarray, break_mode: str, block_size: int | None, document_sep_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return (start token offset, length) of every block, matching fairseq's slicing.

    ``sizes`` are the (non-negative, int64) sentence lengths; ``block_size`` is ignored in ``eos``
    mode. Runs the compiled operator when available, else the numpy reference.
    """
    if break_mode != "eos" and (block_size is None or block_size < 1):
        raise ConfigError(
            f"break_mode={break_mode!r} needs a block size >= 1 ({key('task.tokens_per_sample')}), got {block_size}"
        )
    op = compiled_op("token_block_slices", torch.device("cpu"))
    if op is None:
        return _build_blocks_reference(sizes, break_mode, block_size, document_sep_len)
    # a read-only (memory-mapped) sizes array is copied rather than shared: torch warns on those
    sizes_t = torch.from_numpy(np.require(sizes, dtype=np.int64, requirements=("C", "W")))
    starts, lengths = op(sizes_t, break_mode, int(block_size or 0), int(document_sep_len))
    return starts.numpy(), lengths.numpy()


def _build_blocks_reference(
    sizes: np.ndarray, break_mode: str, block_size: int | None, document_sep_len: int
) -> tuple[np.ndarray, np.ndarray]:
    """numpy version of :func:`_build_blocks` (the compiled operator must agree with it)."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    total = int(offsets[-1])

    if break_mode == "eos":
        return offsets[:-1].copy(), sizes.copy()

    assert block_size is not None and block_size >= 1, "checked by _build_blocks"
    if break_mode == "none":
        num_blocks = -(-total // block_size)
        starts = np.arange(num_blocks, dtype=np.int64) * block_size
        return starts, np.minimum(block_size, total - starts)

    if break_mode == "complete":
        first, end = _pack_sentences(sizes, offsets, block_size, doc_end=None)
        starts, lengths = offsets[first], offsets[end] - offsets[first]
        keep = lengths > 0
        return starts[keep], lengths[keep]

    # complete_doc: a sentence of exactly document_sep_len tokens (an empty line plus eos)
    # separates documents; blocks never straddle documents and 1-token blocks are dropped
    is_sep = sizes == document_sep_len
    first, end = _pack_sentences(sizes, offsets, block_size, _next_index_at_or_after(is_sep))
    starts, lengths = offsets[first], offsets[end] - offsets[first]
    keep = ~is_sep[first] & (lengths > 1)
    return starts[keep], lengths[keep]


class TokenBlockDataset(FairseqDataset):
    """Break a dataset of token sequences (sentences) into blocks.

    Args:
        dataset: indexable dataset of 1-D LongTensors (one per sentence).
        sizes: length of every sentence in ``dataset``.
        block_size: maximum block size (ignored in ``eos`` mode).
        pad, eos: pad and end-of-sentence symbol ids (None when include_targets is off: unused then).
        break_mode: ``none``/None: the token stream is cut into equal blocks of ``block_size``
            (the last may be shorter), crossing sentence boundaries; ``complete``: blocks of
            whole sentences up to ``block_size`` (a longer sentence makes a block of its own);
            ``complete_doc``: like ``complete`` but never crossing a document boundary (a
            sentence of ``document_sep_len`` tokens); ``eos``: one sentence per block.
        include_targets: items are ``(source, target, past_target)``: *target* is the block,
            *source* the block shifted right by one and *past_target* shifted right by two
            (with eos/pad filling in before the start of a sentence), as in fairseq.
        document_sep_len: size of a document separator sentence (``complete_doc`` only).

    Only block boundaries are stored (two int64 per block); tokens are read lazily from
    ``dataset`` when a block is requested.
    """

    def __init__(
        self,
        dataset: Any,
        sizes: Any,
        block_size: int | None,
        pad: int | None,
        eos: int | None,
        break_mode: str | None = None,
        include_targets: bool = False,
        document_sep_len: int = 1,
    ) -> None:
        super().__init__()
        mode = "none" if break_mode is None else str(break_mode)
        if mode not in BREAK_MODES:
            raise ConfigError(
                f"unknown break mode {break_mode!r} (--sample-break-mode); allowed values: {', '.join(BREAK_MODES)}"
            )
        if torch.is_tensor(sizes):
            sizes = sizes.numpy()
        sizes_arr = np.asarray(sizes, dtype=np.int64).reshape(-1)
        if len(dataset) == 0:
            raise DataError("cannot build token blocks from an empty dataset")
        if len(dataset) != len(sizes_arr):
            raise DataError(f"dataset has {len(dataset)} sentences but {len(sizes_arr)} sizes were given")
        if (sizes_arr < 0).any():
            raise DataError("sentence sizes must be non-negative")

        self.dataset = dataset
        self.pad = pad
        self.eos = eos
        self.include_targets = include_targets
        self.break_mode = mode
        self._starts, self._sizes = _build_blocks(sizes_arr, mode, block_size, document_sep_len)
        # token offset at which each sentence starts, plus the total at the end
        self._offsets = np.zeros(len(sizes_arr) + 1, dtype=np.int64)
        np.cumsum(sizes_arr, out=self._offsets[1:])
        self._sentence_starts = self._offsets[:-1]
        self._sentence_ends = self._offsets[1:]
        if include_targets and (pad is None or eos is None):
            raise ConfigError(
                "TokenBlockDataset(include_targets=True) needs pad and eos: the shifted sources start with them"
            )
        # pad/eos only start the shifted copies of include_targets; without it they may be None (fairseq's).
        self._eos_tensor = torch.tensor([eos if eos is not None else 0], dtype=torch.long)
        self._pad_eos_tensor = torch.tensor(
            [pad if pad is not None else 0, eos if eos is not None else 0], dtype=torch.long
        )

    # -- block geometry ----------------------------------------------------------------------

    @property
    def sizes(self) -> np.ndarray:
        return self._sizes

    @property
    def slice_indices(self) -> np.ndarray:
        """``(num_blocks, 2)`` array of [start, end) token offsets of each block."""
        return np.stack([self._starts, self._starts + self._sizes], axis=1)

    @property
    def block_to_dataset_index(self) -> np.ndarray:
        """``(num_blocks, 3)`` array: first sentence, offset within it, last sentence."""
        return np.stack(self._locate(self._starts, self._sizes, np.arange(len(self))), axis=1)

    def _locate(
        self, starts: np.ndarray, lengths: np.ndarray, block_ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """First sentence, offset into it, and last sentence of each given block."""
        if self.break_mode == "eos":
            ids = np.asarray(block_ids, dtype=np.int64)
            return ids, np.zeros_like(ids), ids
        sentence_starts, sentence_ends = self._sentence_starts, self._sentence_ends
        last_sentence = len(sentence_starts) - 1
        # like fairseq's DatasetSearcher, a block starting exactly where an empty sentence
        # starts begins at that empty sentence
        first = np.minimum(
            np.searchsorted(sentence_ends, starts, side="right"),
            np.searchsorted(sentence_starts, starts, side="left"),
        )
        first = np.minimum(first, last_sentence)
        # the last sentence is the one holding the block's last token; fairseq may stop at an
        # empty sentence before it and then drop that token, so here the two differ on purpose
        last_token = starts + np.maximum(lengths - 1, 0)
        last = np.minimum(np.searchsorted(sentence_ends, last_token, side="right"), last_sentence)
        last = np.where(lengths > 0, np.maximum(last, first), first)
        return first, starts - self._offsets[first], last

    # -- items -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._starts)

    def _locate_one(self, index: int) -> tuple[int, int, int, int]:
        """Scalar version of :meth:`_locate`: (first sentence, offset, last sentence, length)."""
        start = int(self._starts[index])
        length = int(self._sizes[index])
        if self.break_mode == "eos":
            return index, 0, index, length
        last_sentence = len(self._offsets) - 2
        first = min(
            int(self._sentence_ends.searchsorted(start, side="right")),
            int(self._sentence_starts.searchsorted(start, side="left")),
            last_sentence,
        )
        last = first
        if length > 0:
            last_token = start + length - 1
            holder = int(self._sentence_ends.searchsorted(last_token, side="right"))
            last = min(holder, last_sentence)
            last = max(last, first)
        return first, start - int(self._offsets[first]), last, length

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, ...]:
        index = int(index)
        if index < 0:
            index += len(self)
        first, s, last, length = self._locate_one(index)
        e = s + length
        if first == last:
            buffer = self.dataset[first]
        else:
            buffer = torch.cat([self.dataset[i] for i in range(first, last + 1)])
        item = buffer[s:e]
        if not self.include_targets:
            return item

        eos = self._eos_tensor.to(buffer.dtype)
        # before the first token of the block's first sentence there is no history, so the
        # shifted copies are filled with eos (then pad) as in fairseq. The slices are clamped and
        # trimmed so all three tensors have the block's length even for blocks under 2 tokens,
        # where fairseq's unsigned index arithmetic wraps around and returns longer tensors.
        if s == 0:
            source = torch.cat([eos, buffer[0 : max(e - 1, 0)]])[:length]
            pad_eos = self._pad_eos_tensor.to(buffer.dtype)
            past_target = torch.cat([pad_eos, buffer[0 : max(e - 2, 0)]])[:length]
        else:
            source = buffer[s - 1 : e - 1]
            if s == 1:
                past_target = torch.cat([eos, buffer[0 : max(e - 2, 0)]])[:length]
            else:
                past_target = buffer[s - 2 : e - 2]
        return source, item, past_target

    # -- FairseqDataset API ------------------------------------------------------------------

    def num_tokens(self, index: int) -> int:
        return int(self._sizes[index])

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self._sizes[indices]

    def size(self, index: int) -> int:
        return int(self._sizes[index])

    def attr(self, attr: str, index: int) -> Any:
        return self.dataset.attr(attr, self._locate_one(int(index))[0])

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.dataset, "supports_prefetch", False)

    def prefetch(self, indices: np.ndarray) -> None:
        indices = np.asarray(indices, dtype=np.int64)
        first, _, last = self._locate(self._starts[indices], self._sizes[indices], indices)
        needed = {i for a, b in zip(first.tolist(), last.tolist()) for i in range(a, b + 1)}
        self.dataset.prefetch(sorted(needed))
