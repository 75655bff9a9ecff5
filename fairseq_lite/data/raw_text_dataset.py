"""fairseq's IndexedRawTextDataset: a text file read as a dataset (`--dataset-impl raw`), one line per
item, each encoded with the dictionary as fairseq-preprocess would binarize it (unknown words are unk,
eos appended). The original lines are kept: `get_original_text(i)` (for --replace-unk, which needs the
words the dictionary does not have)."""

import os
from typing import Any

import numpy as np
import torch

from fairseq_lite.errors import DataError


class IndexedRawTextDataset(torch.utils.data.Dataset):
    def __init__(self, path: str, dictionary: Any, append_eos: bool = True, reverse_order: bool = False):
        if dictionary is None:
            raise DataError(f"{path}: a raw text dataset needs the dictionary to encode it with")
        self.path = path
        self.lines: list[str] = []
        self.tokens_list: list[torch.Tensor] = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                self.lines.append(line.strip("\n"))
                tokens = dictionary.encode_line(
                    line, add_if_not_exist=False, append_eos=append_eos, reverse_order=reverse_order
                ).long()
                self.tokens_list.append(tokens)
        self.sizes = np.array([len(t) for t in self.tokens_list], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.tokens_list)

    def __getitem__(self, i: int) -> torch.Tensor:
        if not 0 <= i < len(self.tokens_list):
            raise IndexError(f"index {i} out of range for {self.path} ({len(self)} lines)")
        return self.tokens_list[i]

    def get_original_text(self, i: int) -> str:
        return self.lines[i]

    def num_tokens(self, index: int) -> int:
        return int(self.sizes[index])

    def size(self, index: int) -> int:
        return int(self.sizes[index])

    @staticmethod
    def exists(path: str) -> bool:
        return os.path.isfile(path)
