"""Give every scored token at least `context_window` tokens of history at evaluation time.

Blocks are read in corpus order; each is prefixed with the last `context_window` tokens that came
before it, and those prefix positions get padding as target, so they are context but not scored.
The collater is stateful (it remembers the previous block), so batches must be collated in order
in this process: use it with shuffle off and no data-loader workers.
"""

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.fairseq_dataset import FairseqDataset


class LMContextWindowDataset(FairseqDataset):
    def __init__(self, dataset: FairseqDataset, tokens_per_sample: int, context_window: int, pad_idx: int):
        assert context_window > 0
        self.dataset = dataset
        self.tokens_per_sample = tokens_per_sample
        self.context_window = context_window
        self.pad_idx = pad_idx
        self.prev_tokens = np.empty(0, dtype=np.int64)
        self.sizes = dataset.sizes

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    def collater(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        sample = self.dataset.collater(samples)
        if not sample:
            return sample
        pad = self.pad_idx
        tokens = sample["net_input"]["src_tokens"]
        target = sample["target"]
        bsz, tsz = tokens.shape
        width = tsz + self.context_window
        new_tokens = np.full((bsz, width), pad, dtype=np.int64)
        new_target = np.full((bsz, width), pad, dtype=np.int64)
        lengths = sample["net_input"]["src_lengths"].clone()
        start_indices = []
        for i in range(bsz):
            row = tokens[i][tokens[i] != pad].numpy()
            # Keep the history short enough that history + block fits the model's positions.
            overflow = len(self.prev_tokens) + len(row) - (self.tokens_per_sample + self.context_window)
            if overflow > 0:
                self.prev_tokens = self.prev_tokens[overflow:]
            start = len(self.prev_tokens)
            new_tokens[i, :start] = self.prev_tokens
            new_tokens[i, start : start + len(row)] = row
            tgt = target[i].numpy()
            new_target[i, start : start + len(tgt)] = tgt
            lengths[i] = start + len(row)
            start_indices.append(start)
            self.prev_tokens = new_tokens[i, : start + len(row)][-self.context_window :]
        sample["net_input"]["src_tokens"] = torch.from_numpy(new_tokens)
        sample["net_input"]["src_lengths"] = lengths
        sample["target"] = torch.from_numpy(new_target)
        sample["start_indices"] = start_indices
        return sample

    def num_tokens(self, index: int) -> int:
        return self.tokens_per_sample

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return np.full(len(indices), self.tokens_per_sample, dtype=np.int64)

    def size(self, index: int) -> int:
        return self.tokens_per_sample

    def ordered_indices(self) -> np.ndarray:
        return np.arange(len(self.dataset))  # corpus order: each block's history is the previous block
