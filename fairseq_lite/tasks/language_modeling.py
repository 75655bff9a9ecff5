"""Task `language_modeling`: predict the next token of fixed-size blocks of a binarized corpus."""

import logging
import os
from dataclasses import dataclass

from omegaconf import II, MISSING

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.monolingual_dataset import MonolingualDataset
from fairseq_lite.data.token_block_dataset import TokenBlockDataset
from fairseq_lite.dataclass import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import DataError
from fairseq_lite.registry import register_task
from fairseq_lite.tasks.fairseq_task import FairseqTask

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


def split_paths(paths: str):
    return [p for p in str(paths).split(os.pathsep) if p]


@register_task("language_modeling", dataclass=LanguageModelingConfig)
class LanguageModelingTask(FairseqTask):
    def __init__(self, cfg, dictionary: Dictionary, output_dictionary: Dictionary | None = None, targets=None):
        super().__init__(cfg)
        self.dictionary = dictionary
        self.output_dictionary = output_dictionary or dictionary
        self.targets = targets or ["future"]

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        paths = split_paths(cfg.data)
        if not paths:
            raise DataError("task.data is empty: give the directory fairseq-preprocess wrote (--destdir)")
        for path in paths:
            if not os.path.isdir(path):
                raise DataError(
                    f"task.data: data directory '{path}' does not exist "
                    f"(make it with fairseq-preprocess --only-source ... --destdir {path})"
                )
        dict_path = os.path.join(paths[0], "dict.txt")
        if not os.path.isfile(dict_path):
            raise DataError(
                f"task.data: no dictionary at '{dict_path}'; is '{paths[0]}' a fairseq-preprocess "
                f"--only-source output directory?"
            )
        dictionary = Dictionary.load(dict_path)
        logger.info(f"dictionary: {len(dictionary)} types")
        targets = [
            name
            for name, on in (("self", cfg.self_target), ("future", cfg.future_target), ("past", cfg.past_target))
            if on
        ] or ["future"]
        return cls(cfg, dictionary, targets=targets)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        paths = split_paths(self.cfg.data)
        data_path = paths[(epoch - 1) % len(paths)]
        split_path = os.path.join(data_path, split)
        if not MMapIndexedDataset.exists(split_path):
            raise DataError(f"dataset not found: split '{split}' ({split_path}.bin/.idx) in task.data")
        dataset = MMapIndexedDataset(split_path)
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
