"""fairseq's `data_utils`: padding (collate_tokens), seeding (numpy_seed), and, from the modules that
hold them, batching and size filtering (batching.py), loading datasets by path prefix
(indexed_dataset_loading.py), masks from lengths and post_process."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from fairseq_lite.data.batching import (
    batch_by_size,
    filter_indices_by_size,
    filter_paired_dataset_indices_by_size,
    size_exceeds,
)
from fairseq_lite.data.dictionary import post_process
from fairseq_lite.data.indexed_dataset_loading import infer_dataset_impl, load_indexed_dataset
from fairseq_lite.data.masks import lengths_to_mask, lengths_to_padding_mask

logger = logging.getLogger(__name__)

__all__ = [
    "collate_tokens",
    "numpy_seed",
    "batch_by_size",
    "filter_indices_by_size",
    "size_exceeds",
    "filter_paired_dataset_indices_by_size",
    "infer_dataset_impl",
    "load_indexed_dataset",
    "lengths_to_mask",
    "lengths_to_padding_mask",
    "post_process",
]


def collate_tokens(
    values: Sequence[torch.Tensor],
    pad_idx: int,
    eos_idx: int | None = None,
    left_pad: bool = False,
    move_eos_to_beginning: bool = False,
    pad_to_length: int | None = None,
    pad_to_multiple: int = 1,
    pad_to_bsz: int | None = None,
) -> torch.Tensor:
    """Stack 1-D token tensors into a padded ``B x T`` tensor.

    With ``move_eos_to_beginning`` every row is rotated right by one with ``eos_idx`` (or, when
    it is None, the row's last token) in front, which is how decoder inputs are built.
    """
    if len(values) == 0:
        raise ValueError("collate_tokens needs at least one tensor")
    size = max(v.size(0) for v in values)
    if pad_to_length is not None:
        size = max(size, pad_to_length)
    if pad_to_multiple > 1 and size % pad_to_multiple != 0:
        size = (size // pad_to_multiple + 1) * pad_to_multiple

    batch_size = len(values) if pad_to_bsz is None else max(len(values), pad_to_bsz)
    res = values[0].new_full((batch_size, size), pad_idx)
    for i, v in enumerate(values):
        n = v.size(0)
        dst = res[i, size - n :] if left_pad else res[i, :n]
        if move_eos_to_beginning:
            if n == 0:
                continue
            dst[0] = v[-1] if eos_idx is None else eos_idx
            dst[1:] = v[:-1]
        else:
            dst.copy_(v)
    return res


@contextlib.contextmanager
def numpy_seed(seed: int | None, *addl_seeds: int) -> Iterator[None]:
    """Seed numpy's global RNG for the duration of the block, then restore its previous state.

    Several seeds are combined the way fairseq combines them (hash of the tuple, mod 1e6), so that
    shuffles seeded with e.g. ``(seed, epoch)`` reproduce fairseq's orders. Python's hash of a
    tuple of ints does not depend on PYTHONHASHSEED, so this is stable across runs.
    """
    if seed is None:
        yield
        return
    if addl_seeds:
        seed = int(hash((seed, *addl_seeds)) % 1e6)
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


# --------------------------------------------------------------------------------------------
# batching
# --------------------------------------------------------------------------------------------
