"""fairseq's `data_utils.lengths_to_padding_mask` / `lengths_to_mask`: masks from sequence lengths.

They live outside ``data_utils`` so that it can re-export them (they depend on torch only).
"""

from __future__ import annotations

import torch

__all__ = ["lengths_to_padding_mask", "lengths_to_mask"]


def lengths_to_padding_mask(lens: torch.Tensor) -> torch.Tensor:
    """``B x max(lens)`` bool mask, True at padding: position ``t`` of row ``b`` is ``t >= lens[b]``."""
    max_len = int(lens.max().item())
    positions = torch.arange(max_len, device=lens.device).view(1, max_len)
    return positions.expand(lens.size(0), -1) >= lens.view(-1, 1)


def lengths_to_mask(lens: torch.Tensor) -> torch.Tensor:
    """The opposite of :func:`lengths_to_padding_mask`: True at the real positions."""
    return ~lengths_to_padding_mask(lens)
