"""Task `language_modeling`: predict the next token of fixed-size blocks of a binarized corpus."""

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

from omegaconf import II, MISSING

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.indexed_dataset_loading import check_indexed_dataset, load_indexed_dataset
from fairseq_lite.data.monolingual_dataset import MonolingualDataset
from fairseq_lite.data.token_block_dataset import TokenBlockDataset
from fairseq_lite.dataclass import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError, key, setting
from fairseq_lite.registry import register_task
from fairseq_lite.tasks.fairseq_task import FairseqTask
from fairseq_lite.utils import split_paths

logger = logging.getLogger(__name__)

SAMPLE_BREAK_MODE_CHOICES = ChoiceEnum(["none", "complete", "complete_doc", "eos"])


@dataclass
class LanguageModelingConfig(FairseqDataclass):
    data: str | None = cfg_field(
        MISSING, "path to data directory (several joined by ':' are used one per epoch, round robin)"
    )
    sample_break_mode: SAMPLE_BREAK_MODE_CHOICES = cfg_field(
        "none",
        'If omitted or "none", fills each sample with tokens-per-sample tokens. If set to "complete", splits '
        'samples only at the end of sentence, but may include multiple sentences per sample. "complete_doc" is '
        'similar but respects doc boundaries. If set to "eos", includes only one sentence per sample.',
    )
    tokens_per_sample: int = cfg_field(1024, "max number of tokens per sample for LM dataset")
    self_target: bool = cfg_field(False, "include self target")
    future_target: bool = cfg_field(False, "include future target")
    past_target: bool = cfg_field(False, "include past target")
    add_bos_token: bool = cfg_field(False, "prepend beginning of sentence token (<s>)")
    max_target_positions: int | None = cfg_field(None, "max number of tokens in the target sequence")
    seed: int = II("common.seed")


def data_paths(data: str) -> list[str]:
    """task.data's directories (several joined by ':'), empty parts dropped."""
    return [p for p in split_paths(str(data)) if p]


def data_dirs(cfg) -> list[str]:
    """task.data's directories (several joined by ':'), each checked to exist."""
    paths = data_paths(cfg.data)
    if not paths:
        raise DataError(f"{key('task.data')} is empty: give the directory fairseq-preprocess wrote (--destdir)")
    for path in paths:
        if not os.path.isdir(path):
            raise DataError(
                f"{key('task.data')}: data directory '{path}' does not exist "
                f"(make it with fairseq-preprocess --only-source ... --destdir {path})"
            )
    return paths


def dictionary_path(data_dir: str) -> str:
    path = os.path.join(data_dir, "dict.txt")
    if not os.path.isfile(path):
        raise DataError(
            f"{key('task.data')}: no dictionary at '{path}'; is '{data_dir}' a fairseq-preprocess "
            f"--only-source output directory?"
        )
    return path


def split_prefix(data_dir: str, split: str) -> str:
    prefix = os.path.join(data_dir, split)
    if not MMapIndexedDataset.exists(prefix):
        raise DataError(f"dataset not found: split '{split}' ({prefix}.bin/.idx) in {key('task.data')}")
    return prefix


@register_task("language_modeling", dataclass=LanguageModelingConfig)
class LanguageModelingTask(FairseqTask):
    def __init__(self, cfg, dictionary: Dictionary, output_dictionary: Dictionary | None = None, targets=None):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.output_dictionary = output_dictionary or dictionary
        self.targets = targets or ["future"]

    @classmethod
    def check_config(cls, cfg) -> None:
        if cfg.tokens_per_sample < 1:
            raise ConfigError(
                f"{setting('task.tokens_per_sample', cfg.tokens_per_sample)} is invalid: a block holds at least "
                f"one token"
            )

    @classmethod
    def check_data(cls, cfg, train_subset: str | None, valid_subsets: Sequence[str] = ()) -> None:
        paths = data_dirs(cfg)
        Dictionary.load(dictionary_path(paths[0]))
        # Training reads one directory per epoch, round robin; validation the first one.
        wanted = [(path, train_subset) for path in paths if train_subset] + [(paths[0], s) for s in valid_subsets]
        for path, split in wanted:
            check_indexed_dataset(split_prefix(path, split))  # reads and checks the index, maps the data

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        cls.check_config(cfg)
        paths = data_dirs(cfg)
        dictionary = Dictionary.load(dictionary_path(paths[0]))
        logger.info(f"dictionary: {len(dictionary)} types")
        targets = [
            name
            for name, on in (("self", cfg.self_target), ("future", cfg.future_target), ("past", cfg.past_target))
            if on
        ] or ["future"]
        return cls(cfg, dictionary, targets=targets)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        paths = data_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        # with combine (the training split): split, split1, split2, ... as one dataset, as fairseq
        dataset = load_indexed_dataset(split_prefix(data_path, split), self.dictionary, combine=combine)
        break_mode = str(self.cfg.sample_break_mode)
        blocks = TokenBlockDataset(
            dataset,
            dataset.sizes,
            self.cfg.tokens_per_sample,
            pad=self.dictionary.pad(),
            eos=self.dictionary.eos(),
            break_mode=break_mode,
            include_targets=True,
        )
        self.datasets[split] = MonolingualDataset(
            blocks,
            blocks.sizes,
            self.dictionary,
            self.output_dictionary,
            add_eos_for_other_targets=break_mode != "none",
            shuffle=True,
            targets=self.targets,
            add_bos_token=self.cfg.add_bos_token,
        )
        logger.info(f"{data_path} {split} {len(dataset)} examples -> {len(blocks)} blocks")

    @property
    def source_dictionary(self):
        return self.dictionary

    @property
    def target_dictionary(self):
        return self.output_dictionary

    def max_positions(self) -> int | None:
        return self.cfg.max_target_positions
