"""Source/target sentence pairs and their collation into translation batches (fairseq semantics).

A batch is
    {"id", "nsentences", "ntokens" (target tokens),
     "net_input": {"src_tokens" (left-padded by default), "src_lengths",
                   "prev_output_tokens" (the target with its eos moved to the front)},
     "target"}
with the rows sorted by descending source length, as fairseq sorts them. With an `align_dataset` (word
alignments, data/alignments.py) it also has fairseq's "alignments" (pairs of flat indices: the source
column in src_tokens, the row * target width + the target column in target) and "align_weights" (1 / how
many pairs share that target position).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fairseq_lite.data.data_utils import collate_tokens, filter_paired_dataset_indices_by_size
from fairseq_lite.data.fairseq_dataset import FairseqDataset
from fairseq_lite.errors import DataError

__all__ = ["LanguagePairDataset", "collate", "get_buckets", "get_bucketed_sizes"]

logger = logging.getLogger(__name__)


def collate(
    samples: list[dict[str, Any]],
    pad_idx: int,
    eos_idx: int,
    left_pad_source: bool = True,
    left_pad_target: bool = False,
    input_feeding: bool = True,
    pad_to_length: dict[str, int] | None = None,
    pad_to_multiple: int = 1,
) -> dict[str, Any]:
    if len(samples) == 0:
        return {}

    def merge(key: str, left_pad: bool, move_eos_to_beginning: bool = False) -> torch.Tensor:
        return collate_tokens(
            [s[key] for s in samples],
            pad_idx,
            eos_idx,
            left_pad=left_pad,
            move_eos_to_beginning=move_eos_to_beginning,
            pad_to_length=pad_to_length.get(key) if pad_to_length else None,
            pad_to_multiple=pad_to_multiple,
        )

    ids = torch.LongTensor([int(s["id"]) for s in samples])
    src_tokens = merge("source", left_pad=left_pad_source)
    # Lengths count non-pad tokens: bucketed items arrive already padded.
    src_lengths = torch.LongTensor([int(s["source"].ne(pad_idx).sum()) for s in samples])
    # fairseq orders a batch by descending source length; a stable sort keeps equal lengths in
    # sample order on every device.
    src_lengths, sort_order = src_lengths.sort(descending=True, stable=True)
    ids = ids.index_select(0, sort_order)
    src_tokens = src_tokens.index_select(0, sort_order)

    target = prev_output_tokens = None
    if samples[0].get("target") is not None:
        target = merge("target", left_pad=left_pad_target).index_select(0, sort_order)
        tgt_lengths = torch.LongTensor([int(s["target"].ne(pad_idx).sum()) for s in samples]).index_select(
            0, sort_order
        )
        ntokens = int(tgt_lengths.sum())
        if input_feeding:
            # Teacher forcing: the decoder sees eos as "start", then the target shifted right.
            prev_output_tokens = merge("target", left_pad=left_pad_target, move_eos_to_beginning=True)
            prev_output_tokens = prev_output_tokens.index_select(0, sort_order)
    else:
        ntokens = int(src_lengths.sum())

    batch: dict[str, Any] = {
        "id": ids,
        "nsentences": len(samples),
        "ntokens": ntokens,
        "net_input": {"src_tokens": src_tokens, "src_lengths": src_lengths},
        "target": target,
    }
    if prev_output_tokens is not None:
        batch["net_input"]["prev_output_tokens"] = prev_output_tokens
    if samples[0].get("alignment") is not None:
        if target is None:
            raise DataError("alignments need the target side: a batch with alignments has no target")
        alignments = _collate_alignments(
            [samples[i]["alignment"] for i in sort_order.tolist()],
            src_lengths,
            tgt_lengths,
            src_tokens.size(1),
            target.size(1),
            left_pad_source,
            left_pad_target,
        )
        if alignments is not None:
            batch["alignments"], batch["align_weights"] = alignments
    return batch


def _collate_alignments(
    alignments: list[torch.Tensor],
    src_lengths: torch.Tensor,
    tgt_lengths: torch.Tensor,
    src_width: int,
    tgt_width: int,
    left_pad_source: bool,
    left_pad_target: bool,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """fairseq's batch alignments, rows in batch order: (N x 2 indices into src_tokens' columns and the
    flattened (bsz * tgt_width) target, N weights), or None when no sentence has a usable alignment."""
    kept = []
    for row, (alignment, src_len, tgt_len) in enumerate(zip(alignments, src_lengths.tolist(), tgt_lengths.tolist())):
        pairs = alignment.long().view(-1, 2)
        if len(pairs) == 0:
            continue
        # fairseq's check: indices are word positions, below the eos that ends each side.
        if int(pairs[:, 0].max()) >= src_len - 1 or int(pairs[:, 1].max()) >= tgt_len - 1:
            logger.warning("alignment size mismatch found, skipping alignment!")
            continue
        offset = torch.tensor(
            [
                src_width - src_len if left_pad_source else 0,
                row * tgt_width + (tgt_width - tgt_len if left_pad_target else 0),
            ]
        )
        kept.append(pairs + offset)
    if not kept:
        return None
    pairs = torch.cat(kept)
    # Each target position's pairs share its unit of alignment loss.
    _, which, counts = torch.unique(pairs[:, 1], return_inverse=True, return_counts=True)
    return pairs, 1.0 / counts[which].float()


def get_buckets(sizes: np.ndarray, num_buckets: int) -> np.ndarray:
    """Bucket boundaries: the sizes at num_buckets evenly spaced percentiles (fairseq's choice)."""
    return np.unique(np.percentile(sizes, np.linspace(0, 100, num_buckets + 1), method="lower")[1:])


def get_bucketed_sizes(sizes: np.ndarray, buckets: np.ndarray) -> np.ndarray:
    """Each size rounded up to the smallest bucket boundary that holds it."""
    return np.asarray(buckets)[np.searchsorted(buckets, sizes, side="left")].astype(np.asarray(sizes).dtype)


class LanguagePairDataset(FairseqDataset):
    """Pairs a source token dataset with an optional target one (same length, same order).

    `num_buckets > 0` pads every sentence up to one of that many lengths so batches come in few
    shapes (useful for compiled models); `pad_to_multiple` rounds batch widths up instead.
    """

    def __init__(
        self,
        src: Any,
        src_sizes: Sequence[int] | np.ndarray,
        src_dict: Any,
        tgt: Any | None = None,
        tgt_sizes: Sequence[int] | np.ndarray | None = None,
        tgt_dict: Any | None = None,
        left_pad_source: bool = True,
        left_pad_target: bool = False,
        shuffle: bool = True,
        input_feeding: bool = True,
        remove_eos_from_source: bool = False,
        append_eos_to_target: bool = False,
        align_dataset: Any | None = None,
        append_bos: bool = False,
        eos: int | None = None,
        num_buckets: int = 0,
        pad_to_multiple: int = 1,
    ):
        if tgt_dict is not None:
            for name in ("pad", "eos", "unk"):
                if getattr(src_dict, name)() != getattr(tgt_dict, name)():
                    raise DataError(
                        f"source and target dictionaries disagree on the {name} index "
                        f"({getattr(src_dict, name)()} vs {getattr(tgt_dict, name)()})"
                    )
        if tgt is not None and len(src) != len(tgt):
            raise DataError(f"source and target must contain the same number of examples ({len(src)} vs {len(tgt)})")
        if align_dataset is not None:
            if tgt_sizes is None:
                raise DataError("both source and target are needed when alignments are given")
            if len(align_dataset) != len(src):
                raise DataError(
                    f"the alignments must have one item per sentence pair ({len(align_dataset)} vs {len(src)})"
                )
        self.src = src
        self.tgt = tgt
        self.src_sizes = np.array(src_sizes)
        self.tgt_sizes = np.array(tgt_sizes) if tgt_sizes is not None else None
        self.src_dict = src_dict
        self.tgt_dict = tgt_dict
        self.left_pad_source = left_pad_source
        self.left_pad_target = left_pad_target
        self.shuffle = shuffle
        self.input_feeding = input_feeding
        self.remove_eos_from_source = remove_eos_from_source
        self.append_eos_to_target = append_eos_to_target
        self.align_dataset = align_dataset
        self.append_bos = append_bos
        self.eos = eos if eos is not None else src_dict.eos()
        self.pad_to_multiple = pad_to_multiple

        self.buckets = None
        self._src_bucketed: np.ndarray | None = None
        self._tgt_bucketed: np.ndarray | None = None
        if num_buckets > 0:
            self._src_bucketed = get_bucketed_sizes(self.src_sizes, get_buckets(self.src_sizes, num_buckets))
            self.src_sizes = self._src_bucketed
            if self.tgt_sizes is not None:
                self._tgt_bucketed = get_bucketed_sizes(self.tgt_sizes, get_buckets(self.tgt_sizes, num_buckets))
                self.tgt_sizes = self._tgt_bucketed
            self.bucketed_num_tokens = self.num_tokens_vec(np.arange(len(self.src)))
            # (None, n): as many sentences as --max-tokens allows at padded length n.
            self.buckets = [(None, int(n)) for n in np.unique(self.bucketed_num_tokens)]
        self.sizes = np.vstack((self.src_sizes, self.tgt_sizes)).T if self.tgt_sizes is not None else self.src_sizes

    def get_batch_shapes(self) -> list[tuple[int | None, int]] | None:
        return self.buckets

    @staticmethod
    def _pad_to(tensor: torch.Tensor, size: int, pad_idx: int, left: bool) -> torch.Tensor:
        missing = int(size) - tensor.size(0)
        if missing <= 0:
            return tensor
        return F.pad(tensor, (missing, 0) if left else (0, missing), value=pad_idx)

    def __getitem__(self, index: int) -> dict[str, Any]:
        src_item = self.src[index]
        tgt_item = self.tgt[index] if self.tgt is not None else None
        if self._src_bucketed is not None:
            src_item = self._pad_to(src_item, self._src_bucketed[index], self.src_dict.pad(), self.left_pad_source)
            if tgt_item is not None and self._tgt_bucketed is not None:
                tgt_item = self._pad_to(tgt_item, self._tgt_bucketed[index], self.tgt_dict.pad(), self.left_pad_target)
        tgt_vocab = self.tgt_dict if self.tgt_dict is not None else self.src_dict
        if self.append_eos_to_target and tgt_item is not None and tgt_item[-1] != tgt_vocab.eos():
            tgt_item = torch.cat([tgt_item, torch.LongTensor([tgt_vocab.eos()])])
        if self.append_bos:
            # (fairseq names it "append", but the bos goes in front.)
            if tgt_item is not None and tgt_item[0] != tgt_vocab.bos():
                tgt_item = torch.cat([torch.LongTensor([tgt_vocab.bos()]), tgt_item])
            if src_item[0] != self.src_dict.bos():
                src_item = torch.cat([torch.LongTensor([self.src_dict.bos()]), src_item])
        if self.remove_eos_from_source and src_item[-1] == self.src_dict.eos():
            src_item = src_item[:-1]
        example = {"id": index, "source": src_item, "target": tgt_item}
        if self.align_dataset is not None:
            example["alignment"] = self.align_dataset[index]
        return example

    def __len__(self) -> int:
        return len(self.src)

    def collater(self, samples: list[dict[str, Any]], pad_to_length: dict[str, int] | None = None) -> dict[str, Any]:
        return collate(
            samples,
            pad_idx=self.src_dict.pad(),
            eos_idx=self.eos,
            left_pad_source=self.left_pad_source,
            left_pad_target=self.left_pad_target,
            input_feeding=self.input_feeding,
            pad_to_length=pad_to_length,
            pad_to_multiple=self.pad_to_multiple,
        )

    def num_tokens(self, index: int) -> int:
        """The longer side of the pair: what --max-tokens bounds."""
        return int(max(self.src_sizes[index], self.tgt_sizes[index] if self.tgt_sizes is not None else 0))

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        sizes = self.src_sizes[indices]
        if self.tgt_sizes is not None:
            sizes = np.maximum(sizes, self.tgt_sizes[indices])
        return sizes

    def size(self, index: int) -> tuple[int, int]:
        return (int(self.src_sizes[index]), int(self.tgt_sizes[index]) if self.tgt_sizes is not None else 0)

    def ordered_indices(self) -> np.ndarray:
        """Sorted by target then (stably) source length, so batches hold similar lengths; with
        `shuffle` the order among equal lengths is random (numpy's global RNG, which the
        caller seeds per epoch)."""
        if self.shuffle:
            indices = np.random.permutation(len(self)).astype(np.int64)
        else:
            indices = np.arange(len(self), dtype=np.int64)
        if self.buckets is not None:
            return indices[np.argsort(self.bucketed_num_tokens[indices], kind="mergesort")]
        if self.tgt_sizes is not None:
            indices = indices[np.argsort(self.tgt_sizes[indices], kind="mergesort")]
        return indices[np.argsort(self.src_sizes[indices], kind="mergesort")]

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        """Drop pairs whose source exceeds max_sizes[0] or target exceeds max_sizes[1] (an int
        bounds both)."""
        return filter_paired_dataset_indices_by_size(
            self.src_sizes, self.tgt_sizes, np.asarray(indices, dtype=np.int64), max_sizes
        )
