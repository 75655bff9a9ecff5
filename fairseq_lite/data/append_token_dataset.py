"""fairseq's `AppendTokenDataset`: put a token (an eos) after every sample."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.base_wrapper_dataset import BaseWrapperDataset

__all__ = ["AppendTokenDataset"]


class AppendTokenDataset(BaseWrapperDataset):
    """``dataset[i] + [token]``; with ``token=None`` the samples pass through unchanged.

    ``sizes``, ``num_tokens`` and ``size`` count the extra token.
    """

    def __init__(self, dataset: Any, token: int | None = None) -> None:
        super().__init__(dataset)
        self.token = token
        self._sizes = np.array(dataset.sizes) + 1 if token is not None else dataset.sizes

    def __getitem__(self, idx: int) -> torch.Tensor:
        item = self.dataset[idx]
        if self.token is not None:
            item = torch.cat([item, item.new([self.token])])
        return item

    @property
    def sizes(self) -> Any:
        return self._sizes

    def num_tokens(self, index: int) -> Any:
        n = self.dataset.num_tokens(index)
        return n + 1 if self.token is not None else n

    def size(self, index: int) -> Any:
        n = self.dataset.size(index)
        return n + 1 if self.token is not None else n
