"""A language-pair dataset whose batches carry language tokens (fairseq's TransformEosLangPairDataset): the
source's final eos becomes `new_src_eos`, the target's leading bos in prev_output_tokens `new_tgt_bos`."""

from typing import Any

import numpy as np
import torch

from fairseq_lite.data.fairseq_dataset import FairseqDataset


class TransformEosLangPairDataset(FairseqDataset):
    def __init__(
        self,
        dataset: Any,
        src_eos: int,
        new_src_eos: int | None = None,
        tgt_bos: int | None = None,
        new_tgt_bos: int | None = None,
    ):
        self.dataset = dataset
        self.src_eos = src_eos
        self.new_src_eos = new_src_eos
        self.tgt_bos = tgt_bos
        self.new_tgt_bos = new_tgt_bos

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index]

    def __len__(self) -> int:
        return len(self.dataset)

    def collater(self, samples: list[Any], **extra: Any) -> dict[str, Any]:
        batch = self.dataset.collater(samples, **extra)
        if len(batch) == 0 or "net_input" not in batch:
            return batch
        net_input = batch["net_input"]
        if self.new_src_eos is not None:
            src = net_input["src_tokens"]
            if self.dataset.left_pad_source:
                last = torch.full((src.size(0),), src.size(1) - 1, dtype=torch.long, device=src.device)
            else:
                last = net_input["src_lengths"].long() - 1
            rows = torch.arange(src.size(0), device=src.device)
            if src[rows, last].ne(self.src_eos).any():
                raise ValueError(f"a source sentence of the batch does not end in eos ({self.src_eos})")
            src[rows, last] = self.new_src_eos
        if self.new_tgt_bos is not None and "prev_output_tokens" in net_input:
            if self.dataset.left_pad_target:
                raise ValueError("language tokens on the target side need --left-pad-target False")
            prev = net_input["prev_output_tokens"]
            if self.tgt_bos is not None and prev[:, 0].ne(self.tgt_bos).any():
                raise ValueError(f"a target sentence of the batch does not start with {self.tgt_bos}")
            prev[:, 0] = self.new_tgt_bos
        return batch

    def num_tokens(self, index: int) -> int:
        return self.dataset.num_tokens(index)

    def num_tokens_vec(self, indices: np.ndarray) -> np.ndarray:
        return self.dataset.num_tokens_vec(indices)

    def size(self, index: int) -> Any:
        return self.dataset.size(index)

    @property
    def sizes(self) -> Any:
        return self.dataset.sizes

    def ordered_indices(self) -> np.ndarray:
        return self.dataset.ordered_indices()

    def filter_indices_by_size(self, indices: np.ndarray, max_sizes: Any) -> tuple[np.ndarray, list[int]]:
        return self.dataset.filter_indices_by_size(indices, max_sizes)

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    @property
    def left_pad_source(self) -> bool:
        return self.dataset.left_pad_source

    @property
    def left_pad_target(self) -> bool:
        return self.dataset.left_pad_target

    @property
    def supports_prefetch(self) -> bool:
        return getattr(self.dataset, "supports_prefetch", False)

    def prefetch(self, indices: np.ndarray) -> None:
        self.dataset.prefetch(indices)
