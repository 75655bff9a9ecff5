"""fairseq's `load_langpair_dataset` (also importable from `fairseq_lite.tasks.translation`, fairseq's path):
one split of a language pair read from a data directory as a LanguagePairDataset, its numbered shards
(train1, train2, ...) combined, with the split's word alignments when asked; for the translation tasks.

Layout (fairseq's): {split}.{src}-{tgt}.{lang}.bin/.idx (or the raw text {split}.{src}-{tgt}.{lang}), the
pair possibly named {tgt}-{src} (binarized for the other direction); alignments {split}.align.{src}-{tgt}.
"""

import logging
import os
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairseq_lite.data.concat_dataset import ConcatDataset
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.indexed_dataset_loading import load_indexed_dataset
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.data.raw_text_dataset import IndexedRawTextDataset
from fairseq_lite.errors import ConfigError, DataError, key

logger = logging.getLogger(__name__)


class TruncatedSource(torch.utils.data.Dataset):
    """Source sentences cut to `max_len` tokens, keeping their final eos (--truncate-source)."""

    def __init__(self, dataset: Any, max_len: int, eos: int):
        self.dataset = dataset
        self.max_len = max_len
        self.eos = eos
        # Every binarized sentence ends with one eos, so this is each item's exact length.
        self.sizes = np.minimum(np.asarray(dataset.sizes), max_len)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        item = self.dataset[index]
        if item.numel() <= self.max_len:
            return item
        body = item[:-1] if item[-1] == self.eos else item
        return torch.cat([body[: self.max_len - 1], body.new_tensor([self.eos])])


def pair_prefix(data_dir: str, split: str, src: str, tgt: str) -> str:
    """`{data_dir}/{split}.{src}-{tgt}.` (or `.{tgt}-{src}.`: the pair binarized the other way)."""
    for a, b in ((src, tgt), (tgt, src)):
        candidate = os.path.join(data_dir, f"{split}.{a}-{b}.")
        if MMapIndexedDataset.exists(candidate + src) or IndexedRawTextDataset.exists(candidate + src):
            return candidate
    raise DataError(f"dataset not found: split '{split}' ({split}.{src}-{tgt}.{src}.bin/.idx) in {data_dir}")


def alignment_prefix(data_dir: str, split: str, src: str, tgt: str) -> str:
    # Always named for the task's direction: SRC-TGT pairs index the source, then the target.
    return os.path.join(data_dir, f"{split}.align.{src}-{tgt}")


def split_shards(data_dir: str, split: str, src: str, tgt: str, combine: bool) -> list[tuple[str, str]]:
    """(name, prefix) of `split` and, with combine, of its numbered shards split1, split2, ... that exist."""
    shards = [(split, pair_prefix(data_dir, split, src, tgt))]
    k = 1
    while combine:
        try:
            shards.append((f"{split}{k}", pair_prefix(data_dir, f"{split}{k}", src, tgt)))
        except DataError:
            break
        k += 1
    return shards


def load_split_alignments(data_path: str, split: str, src: str, tgt: str, num_shards: int) -> Any:
    """The split's alignments, or None where it has none (fairseq's rule: only a split may lack them)."""
    prefix = alignment_prefix(data_path, split, src, tgt)
    if not MMapIndexedDataset.exists(prefix):
        logger.info(f"{data_path}: no alignments for {split} ({os.path.basename(prefix)}.bin/.idx)")
        return None
    if num_shards > 1:
        # fairseq reads {split}.align for the first shard only, which would misalign the others.
        raise DataError(
            f"{key('task.load_alignments')}: {split} has {num_shards} shards in {data_path} ({split}, "
            f"{split}1, ...); alignments work with one"
        )
    return load_indexed_dataset(prefix, None)  # mmap, or fairseq's lazy/cached (ids less one, as fairseq reads them)


def load_langpair_dataset(
    data_path: str,
    split: str,
    src: str,
    src_dict: Dictionary,
    tgt: str,
    tgt_dict: Dictionary,
    combine: bool,
    dataset_impl: str | None = None,
    upsample_primary: int = 1,
    left_pad_source: bool = True,
    left_pad_target: bool = False,
    max_source_positions: int = 1024,
    max_target_positions: int = 1024,
    prepend_bos: bool = False,
    load_alignments: bool = False,
    truncate_source: bool = False,
    append_source_id: bool = False,
    num_buckets: int = 0,
    shuffle: bool = True,
    pad_to_multiple: int = 1,
    prepend_bos_src: int | None = None,
) -> LanguagePairDataset:
    """fairseq's signature. `dataset_impl` is read from the files (mmap .bin/.idx, or raw text)."""
    unsupported = [
        name
        for name, on in (
            ("prepend_bos", prepend_bos),
            ("append_source_id", append_source_id),
            ("prepend_bos_src", prepend_bos_src is not None),
        )
        if on
    ]
    if unsupported:
        raise ConfigError(f"load_langpair_dataset: {', '.join(unsupported)} is not supported yet")
    sources, targets = [], []
    for name, prefix in split_shards(data_path, split, src, tgt, combine):
        shard: Any = load_indexed_dataset(prefix + src, src_dict)  # binarized, or raw text
        if truncate_source:
            shard = TruncatedSource(shard, max_source_positions, src_dict.eos())
        sources.append(shard)
        targets.append(load_indexed_dataset(prefix + tgt, tgt_dict))  # None: no target side
        logger.info(f"{data_path} {name} {src}-{tgt} {len(shard)} examples")
    if any(t is None for t in targets) and not all(t is None for t in targets):
        raise DataError(f"{data_path}: some shards of '{split}' have the {tgt} side and some do not")
    src_dataset, tgt_dataset = sources[0], targets[0]
    if len(sources) > 1:
        # the first shard repeated upsample_primary times (e.g. real data next to back-translations)
        ratios = [max(1, upsample_primary)] + [1] * (len(sources) - 1)
        src_dataset = ConcatDataset(sources, ratios)
        tgt_dataset = ConcatDataset(targets, ratios) if targets[0] is not None else None
    align_dataset = load_split_alignments(data_path, split, src, tgt, len(sources)) if load_alignments else None
    return LanguagePairDataset(
        src_dataset,
        src_dataset.sizes,
        src_dict,
        tgt_dataset,
        tgt_dataset.sizes if tgt_dataset is not None else None,
        tgt_dict,
        left_pad_source=left_pad_source,
        left_pad_target=left_pad_target,
        align_dataset=align_dataset,
        num_buckets=num_buckets,
        shuffle=shuffle,
        pad_to_multiple=pad_to_multiple,
    )
