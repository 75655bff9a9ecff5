"""Base class of the map-style datasets the tasks hand to the batch iterator."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch.utils.data

from fairseq_lite.data import batching
from fairseq_lite.errors import ConfigError

__all__ = ["EpochListening", "FairseqDataset"]


class EpochListening:
    """Mixin for datasets that want to hear when a new epoch starts."""

    @property
    def can_reuse_epoch_itr_across_epochs(self) -> bool:
        """Whether batches built for one epoch stay valid for the next.

        Datasets whose samples or sizes change with ``set_epoch`` must return False so that the
        batches are rebuilt every epoch.
        """
        return True

    def set_epoch(self, epoch: int) -> None:
        """Called with the (1-based) epoch number before the epoch's batches are produced."""


class FairseqDataset(torch.utils.data.Dataset, EpochListening):
    """A dataset that knows its sample sizes and how to batch and collate its samples."""

    def __getitem__(self, index: int) -> Any:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def collater(self, samples: list[Any]) -> dict[str, Any]:
        """Merge a list of samples into a mini-batch."""
        raise NotImplementedError

    def num_tokens(self, index: int) -> int:
        """Number of tokens in a sample, used to enforce ``--max-tokens``."""
        raise NotImplementedError

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        """``num_tokens`` for many indices at once; enables fast batching.

        Not derived from ``sizes`` by default: a subclass may count tokens differently (e.g. the
        longer side of a pair) and would silently batch wrong.
        """
        raise NotImplementedError

    def size(self, index: int) -> Any:
        """A sample's size (int or tuple), compared against ``--max-positions`` when filtering."""
        raise NotImplementedError

    @property
    def sizes(self) -> np.ndarray:
        """Sizes of all samples, indexed by sample index (subclasses assign or override it)."""
        value = self.__dict__.get("_fairseq_sizes")
        if value is None:
            raise NotImplementedError(f"{type(self).__name__} does not define sizes")
        return value

    @sizes.setter
    def sizes(self, value: np.ndarray) -> None:
        self.__dict__["_fairseq_sizes"] = value

    def ordered_indices(self) -> np.ndarray:
        """Indices in the order batches are built from."""
        return np.arange(len(self), dtype=np.int64)

    @property
    def supports_prefetch(self) -> bool:
        return False

    def prefetch(self, indices: np.ndarray) -> None:
        raise NotImplementedError

    def attr(self, attr: str, index: int) -> Any:
        return getattr(self, attr, None)

    def get_batch_shapes(self) -> list[tuple[int | None, int]] | None:
        """Allowed ``(batch size, max length)`` shapes, or None for any shape.

        A None batch size means "as many as ``--max-tokens`` allows at that length".
        """
        return None

    @property
    def supports_fetch_outside_dataloader(self) -> bool:
        return True

    def batch_by_size(
        self,
        indices: np.ndarray,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        required_batch_size_multiple: int = 1,
    ) -> list[np.ndarray]:
        """Group ordered ``indices`` into batches; see :func:`batching.batch_by_size`."""
        fixed_shapes = self.get_batch_shapes()
        shapes_arr = None
        if fixed_shapes is not None:
            shapes_arr = np.array(
                [
                    [
                        self._adjust_bsz(bsz, length, max_tokens, max_sentences, required_batch_size_multiple),
                        length,
                    ]
                    for bsz, length in fixed_shapes
                ],
                dtype=np.int64,
            )
        try:
            num_tokens_vec = np.asarray(self.num_tokens_vec(indices)).astype(np.int64)
        except NotImplementedError:
            num_tokens_vec = None
        return batching.batch_by_size(
            indices,
            num_tokens_fn=self.num_tokens,
            num_tokens_vec=num_tokens_vec,
            max_tokens=max_tokens,
            max_sentences=max_sentences,
            required_batch_size_multiple=required_batch_size_multiple,
            fixed_shapes=shapes_arr,
        )

    @staticmethod
    def _adjust_bsz(
        bsz: int | None,
        length: int,
        max_tokens: int | None,
        max_sentences: int | None,
        multiple: int,
    ) -> int:
        if bsz is None:
            if max_tokens is None:
                raise ConfigError("batch shapes without a batch size need --max-tokens")
            bsz = max_tokens // length
        if max_sentences is not None:
            return min(bsz, max_sentences)
        if bsz >= multiple and bsz % multiple != 0:
            bsz -= bsz % multiple
        return bsz

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        """Remove the indices whose size exceeds ``max_sizes``; return ``(kept, ignored)``."""
        indices = np.asarray(indices, dtype=np.int64)
        if max_sizes is None:
            return indices, []
        try:
            sizes = self.sizes
        except NotImplementedError:
            sizes = None
        if isinstance(sizes, list) and len(sizes) == 1:
            sizes = sizes[0]
        if isinstance(sizes, np.ndarray) and (sizes.ndim == 1 or sizes.ndim == 2):
            over = batching._exceeds(sizes[indices], max_sizes)
        else:
            over = np.fromiter(
                (batching.size_exceeds(self.size(i), max_sizes) for i in indices.tolist()),
                dtype=bool,
                count=len(indices),
            )
        return indices[~over], indices[over].tolist()
