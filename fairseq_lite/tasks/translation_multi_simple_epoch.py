"""Task `translation_multi_simple_epoch` (fairseq's): one model, one shared dictionary, many translation
directions (`--lang-pairs en-cs,cs-en`), each batch mixing pairs drawn by --sampling-method (temperature:
pair i drawn with weight (n_i / n) ** (1 / T)); language tokens tell the model the languages
(--encoder-langtok src|tgt on the source, --decoder-langtok's target token, which the decoder predicts first).

Data: fairseq-preprocess'd pairs in one directory (data/multilingual/multilingual_data_manager.py says how
they are found); the dictionaries get one token per language of --lang-dict (or --langs), in its order, as
fairseq appends them, so fairseq-trained models load unchanged. Generation: --source-lang/--target-lang
with the training run's --lang-dict and langtok flags; the target language's token is forced first and
left out of the output (kept with --keep-inference-langtok).
"""

import argparse
import contextlib
import inspect
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II, MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fairseq_lite.data.data_utils import numpy_seed
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.indexed_dataset_loading import check_indexed_dataset
from fairseq_lite.data.iterators import EpochBatchIterator
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.data.list_dataset import ListDataset
from fairseq_lite.data.multilingual.multilingual_data_manager import MultilingualDatasetManager, split_paths
from fairseq_lite.data.multilingual.multilingual_settings import (
    eval_bool,
    file_contents,
    normalize_args,
)
from fairseq_lite.data.multilingual.sampling_method import SAMPLING_METHODS, SamplingMethod
from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError, key
from fairseq_lite.registry import register_task
from fairseq_lite.tasks.fairseq_task import FairseqTask
from fairseq_lite.tasks.translation import load_dictionary

logger = logging.getLogger(__name__)


def _as_given_if_invalid(parse: Any) -> Any:
    """A flag's parser for fairseq-train: a value it cannot read is kept as text, so that the config check
    names the flag in one line (argparse would print its usage instead)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError:
            return text

    convert.__name__ = parse.__name__
    return convert


@dataclass
class TranslationMultiSimpleEpochConfig(FairseqDataclass):
    data: str | None = cfg_field(
        MISSING,
        "colon separated path to data directories list, will be iterated upon during epochs in round-robin "
        "manner (or a file holding it)",
    )
    source_lang: str | None = cfg_field(None, "inference source language", argparse_alias="-s", metavar="SRC")
    target_lang: str | None = cfg_field(None, "inference target language", argparse_alias="-t", metavar="TARGET")
    lang_pairs: Any = cfg_field(
        None,
        "comma-separated list of language pairs (in training order): en-de,en-fr,de-fr (or a file holding it)",
        legacy_type=file_contents,
        metavar="PAIRS",
    )
    keep_inference_langtok: bool = cfg_field(
        False, "keep language tokens in inference output (e.g. for analysis or debugging)"
    )
    sampling_method: ChoiceEnum(list(SAMPLING_METHODS)) = cfg_field(  # type: ignore[valid-type]
        "concat", "The method to sample data per language pairs"
    )
    sampling_temperature: float = cfg_field(1.5, "only work with --sampling-method temperature")
    langs: Any = cfg_field(
        None,
        "a list of comma separated languages which can appear in lang-pairs; note that the ordering "
        "determines language token IDs",
    )
    lang_dict: str | None = cfg_field(
        None,
        "an external file which contains a list of languages which can appear in lang-pairs; note that the "
        "ordering determines language token IDs; --langs and --lang-dict are two exclusive options",
    )
    source_dict: str | None = cfg_field(
        None, "path to source dictionary; if specified it will override per language dictionary loading"
    )
    target_dict: str | None = cfg_field(
        None, "path to target dictionary; if specified it will override per language dictionary loading"
    )
    lang_tok_style: ChoiceEnum(["multilingual", "mbart"]) = cfg_field(  # type: ignore[valid-type]
        "multilingual", "language token styles: __en__ (multilingual) or [en_XX] (mbart, which adds <mask>)"
    )
    load_alignments: bool = cfg_field(False, "load the binarized alignments (not supported here)")
    left_pad_source: Any = cfg_field(
        True, "pad the source on the left", legacy_type=_as_given_if_invalid(eval_bool), metavar="BOOL"
    )
    left_pad_target: Any = cfg_field(
        False, "pad the target on the left", legacy_type=_as_given_if_invalid(eval_bool), metavar="BOOL"
    )
    max_source_positions: int = cfg_field(1024, "max number of tokens in the source sequence", metavar="N")
    max_target_positions: int = cfg_field(1024, "max number of tokens in the target sequence", metavar="N")
    upsample_primary: int = cfg_field(1, "amount to upsample primary dataset (train next to train1, train2, ...)")
    truncate_source: bool = cfg_field(False, "truncate source to max-source-positions")
    encoder_langtok: ChoiceEnum(["src", "tgt"]) | None = cfg_field(  # type: ignore[valid-type]
        None,
        "prepend to the beginning of source sentence the source or target language token. (src/tgt)",
        metavar="SRCTGT",
    )
    decoder_langtok: bool = cfg_field(False, "prepend to the beginning of target sentence the target language token")
    lang_tok_replacing_bos_eos: bool = cfg_field(
        False, "put the language tokens in place of the source's eos and of the decoder's first (eos) input"
    )
    enable_lang_ids: bool = cfg_field(False, "whether to include language IDs in samples")
    enable_reservsed_directions_shared_datasets: bool = cfg_field(
        False, "whether to allow datasets be used in reversed directions"
    )
    extra_data: Any = cfg_field(
        None,
        'a dictionary of data name to this path, e.g. {"mined": path_to_mined_data}',
    )
    extra_lang_pairs: Any = cfg_field(
        None,
        'a dictionary of data name to the language pairs they serve, e.g. {"mined": comma-separated-lang-pairs}',
    )
    fixed_dictionary: str | None = cfg_field(None, "Fixed dictionary to use with model path")
    langtoks_specs: Any = cfg_field(
        "main",
        "a list of comma separated data types that a set of language tokens to be specialized for, e.g. "
        '"main,dae,mined"; one set of language tokens per type is added to the vocabulary',
    )
    langtoks: Any = cfg_field(
        None,
        'a dictionary of how to add language tokens, e.g. {"mined": (None, "tgt"), "main": ("src", "tgt")}, '
        'or {"mined": ("src.mined", "tgt")}',
    )
    sampling_weights_from_file: str | None = cfg_field(
        None, 'a file contain a python dictionary of how to sample data sets, e.g. {"main:en_XX-es_XX": 0.2}'
    )
    sampling_weights: Any = cfg_field(
        None,
        'a dictionary of how to sample data sets, e.g. {"main:en_XX-es_XX": 0.2, "mined:en_XX-pt_XX": 0.5}',
    )
    virtual_epoch_size: int | None = cfg_field(None, "virtual epoch size to speed up data loading")
    virtual_data_size: int | None = cfg_field(
        None,
        "virtual data size of the whole joint dataset to speed up data loading and have specific dynamic "
        "sampling strategy interval",
    )
    seed: int = II("common.seed")
    dataset_impl: Any = II("dataset.dataset_impl")
    train_subset: str = II("dataset.train_subset")


@contextlib.contextmanager
def _quiet_info():
    names = (__name__, "fairseq_lite.data.multilingual")
    levels = [logging.getLogger(name).level for name in names]
    for name in names:
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        yield
    finally:
        for name, level in zip(names, levels):
            logging.getLogger(name).setLevel(level)


# What the interpolated fields mean when a config stands alone (no run config to resolve them in).
_STANDALONE = {"seed": 1, "dataset_impl": None, "train_subset": "train"}


def task_args(cfg: Any) -> argparse.Namespace:
    """fairseq's `args` for this task: the config's values as plain Python, parsed by normalize_args."""
    if isinstance(cfg, argparse.Namespace):
        values = dict(vars(cfg))
    else:
        values = {}
        for name in cfg.keys() if isinstance(cfg, DictConfig) else vars(cfg):
            try:
                value = cfg[name] if isinstance(cfg, DictConfig) else getattr(cfg, name)
            except OmegaConfBaseException:
                value = _STANDALONE.get(name)
            if isinstance(value, (DictConfig, list)) or OmegaConf.is_config(value):
                value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
            values[name] = getattr(value, "value", value)  # an Enum choice as its string
    for name, default in _STANDALONE.items():
        values.setdefault(name, default)
    return normalize_args(argparse.Namespace(**values))


@register_task("translation_multi_simple_epoch", dataclass=TranslationMultiSimpleEpochConfig)
class TranslationMultiSimpleEpochTask(FairseqTask):
    """fairseq's attributes: `langs`, `dicts`, `training`, `lang_pairs` (the pair of --source-lang and
    --target-lang at inference), `eval_lang_pairs`, `model_lang_pairs`, `source_langs`, `target_langs`,
    `sampling_method`, `data_manager`, and `args` (the parsed settings)."""

    def __init__(self, cfg: Any, langs: Sequence[str], dicts: dict, training: bool, args: Any = None):
        super().__init__(cfg)
        self.args = args if args is not None else task_args(cfg)
        self.langs = list(langs)
        self.dicts = dicts
        self.training = training
        if training:
            self.lang_pairs = list(self.args.lang_pairs)
        else:
            self.lang_pairs = [f"{self.args.source_lang}-{self.args.target_lang}"]
        self.eval_lang_pairs = self.lang_pairs
        self.model_lang_pairs = self.lang_pairs
        self.source_langs = [p.split("-")[0] for p in self.lang_pairs]
        self.target_langs = [p.split("-")[1] for p in self.lang_pairs]
        self.check_dicts(self.dicts, self.source_langs, self.target_langs)
        self.sampling_method = SamplingMethod.build_sampler(self.args, self)
        self.data_manager = MultilingualDatasetManager.setup_data_manager(
            self.args, self.lang_pairs, self.langs, self.dicts, self.sampling_method
        )

    def check_dicts(self, dicts: dict, source_langs: Sequence[str], target_langs: Sequence[str]) -> None:
        if self.args.source_dict is not None or self.args.target_dict is not None:
            return  # one dictionary per side, given explicitly
        for side, langs in (("source", source_langs), ("target", target_langs)):
            different = [lang for lang in langs if dicts[lang] != dicts[langs[0]]]
            if different:
                raise DataError(
                    f"dict.{different[0]}.txt differs from dict.{langs[0]}.txt: translation_multi_simple_epoch "
                    f"needs one {side} dictionary shared by all {side} languages (fairseq-preprocess "
                    "--joined-dictionary, or --srcdict/--tgtdict)"
                )

    # --- checks before a run -------------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        task_args(cfg)  # every setting parsed and checked; the files are check_data's

    @classmethod
    def check_data(cls, cfg: Any, train_subset: str | None, valid_subsets: Sequence[str] = ()) -> None:
        """The dictionaries load and every pair of every split has its files (headers read, not the data)."""
        with _quiet_info():  # the checks come before the run says anything
            task = cls.setup_task(cfg)
            manager = task.data_manager
            for split in [s for s in [train_subset] if s] + list(valid_subsets):
                for param in manager.get_split_data_param_list(split, epoch=1):
                    paths = [param["data_path"]]
                    if split == train_subset:  # every shard directory
                        category = param["data_category"]
                        paths = split_paths(task.args.data if category == "main" else task.args.extra_data[category])
                    for path in paths:
                        cls._check_pair_files(manager, path, split, param["src"], param["tgt"])

    @staticmethod
    def _check_pair_files(manager: MultilingualDatasetManager, path: str, split: str, src: str, tgt: str) -> None:
        if not os.path.isdir(path):
            raise DataError(f"{key('task.data')}: data directory '{path}' does not exist")
        for a, b in ((src, tgt), (tgt, src)):
            if manager.split_exists(split, a, b, src, path):
                for lang in (src, tgt):
                    prefix = os.path.join(path, f"{split}.{a}-{b}.{lang}")
                    if MMapIndexedDataset.exists(prefix):
                        check_indexed_dataset(prefix)  # reads and checks the index
                return
        # another shard directory may lack the pair: fairseq reads a pair's shards from the paths that have it

    @classmethod
    def setup_task(cls, cfg: Any, **kwargs: Any) -> "TranslationMultiSimpleEpochTask":
        args = task_args(cfg)
        langs, dicts, training = MultilingualDatasetManager.prepare(load_dictionary, args)
        return cls(cfg, langs, dicts, training, args=args)

    @classmethod
    def load_dictionary(cls, filename: str) -> Dictionary:
        return load_dictionary(filename)

    # --- data ----------------------------------------------------------------------------------
    def has_sharded_data(self, split: str) -> bool:
        return self.data_manager.has_sharded_data(split)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs: Any) -> None:
        """The split's dataset for `epoch`. Loaded once; data in several directories is loaded again each
        epoch from the next one (after the last virtual epoch with --virtual-epoch-size)."""
        if split in self.datasets:
            dataset = self.datasets[split]
            if not self.has_sharded_data(split):
                return  # its epochs are drawn by set_epoch
            if self.args.virtual_epoch_size is not None:
                if not dataset.load_next_shard:
                    return  # still inside this shard's virtual epochs
                shard_epoch = dataset.shard_epoch
            else:
                shard_epoch = epoch
        else:
            shard_epoch = self.data_manager.estimate_global_pass_epoch(epoch)
        logger.info(f"loading data for {split} epoch={epoch}/{shard_epoch}")
        self.datasets.pop(split, None)
        self.datasets[split] = self.data_manager.load_dataset(
            split, self.training, epoch=epoch, combine=combine, shard_epoch=shard_epoch, **kwargs
        )

    def build_dataset_for_inference(self, src_tokens, src_lengths, constraints=None) -> Any:
        """Sentences to translate from --source-lang, with its language tokens as in training."""
        if constraints is not None:
            raise ConfigError("constrained decoding is not supported by translation_multi_simple_epoch (as in fairseq)")
        dataset: Any = LanguagePairDataset(
            ListDataset(src_tokens, src_lengths), src_lengths, self.source_dictionary, tgt_dict=self.target_dictionary
        )
        src_langtok_spec, tgt_langtok_spec = self.args.langtoks["main"]
        if self.args.lang_tok_replacing_bos_eos:
            return self.data_manager.alter_dataset_langtok(
                dataset,
                src_eos=self.source_dictionary.eos(),
                src_lang=self.args.source_lang,
                tgt_eos=self.target_dictionary.eos(),
                tgt_lang=self.args.target_lang,
                src_langtok_spec=src_langtok_spec,
                tgt_langtok_spec=tgt_langtok_spec,
            )
        dataset.src = self.data_manager.src_dataset_tranform_func(
            self.args.source_lang, self.args.target_lang, dataset=dataset.src, spec=src_langtok_spec
        )
        return dataset

    def max_positions(self) -> tuple[int, int]:
        return (self.args.max_source_positions, self.args.max_target_positions)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.data_manager.get_source_dictionary(self.source_langs[0])

    @property
    def target_dictionary(self) -> Dictionary:
        return self.data_manager.get_target_dictionary(self.target_langs[0])

    def create_batch_sampler_func(
        self,
        max_positions: Any,
        ignore_invalid_inputs: bool,
        max_tokens: int | None,
        max_sentences: int | None,
        required_batch_size_multiple: int = 1,
        seed: int = 1,
    ):
        """The batches of an epoch, made when the epoch starts: its items are drawn anew (set_epoch), then
        ordered by size after a shuffle seeded by `seed` alone, filtered and batched, as fairseq does."""

        def construct_batch_sampler(dataset: Any, epoch: int | None) -> list:
            if epoch is not None:
                dataset.set_epoch(epoch)
            with numpy_seed(seed):
                indices = dataset.ordered_indices()
            if max_positions is not None:
                indices = self.filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)
            return dataset.batch_by_size(
                indices,
                max_tokens=max_tokens,
                max_sentences=max_sentences,
                required_batch_size_multiple=required_batch_size_multiple,
            )

        return construct_batch_sampler

    def get_batch_iterator(
        self,
        dataset: Any,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        max_positions: Any = None,
        ignore_invalid_inputs: bool = False,
        required_batch_size_multiple: int = 1,
        seed: int = 1,
        num_shards: int = 1,
        shard_id: int = 0,
        num_workers: int = 0,
        epoch: int = 1,
        disable_iterator_cache: bool = False,
        skip_remainder_batch: bool = False,
        data_buffer_size: int = 0,
        pin_memory: bool = False,
        **kwargs: Any,
    ) -> EpochBatchIterator:
        """An iterator whose batches are rebuilt every epoch (the sampled items change); RoundRobin keeps one
        set of batches, as fairseq's base task does."""
        if self.args.sampling_method == "RoundRobin":
            return super().get_batch_iterator(
                dataset,
                max_tokens=max_tokens,
                max_sentences=max_sentences,
                max_positions=max_positions,
                ignore_invalid_inputs=ignore_invalid_inputs,
                required_batch_size_multiple=required_batch_size_multiple,
                seed=seed,
                num_shards=num_shards,
                shard_id=shard_id,
                num_workers=num_workers,
                epoch=epoch,
                disable_iterator_cache=disable_iterator_cache,
                skip_remainder_batch=skip_remainder_batch,
                data_buffer_size=data_buffer_size,
                pin_memory=pin_memory,
            )
        if max_tokens is None and max_sentences is None:
            raise DataError(
                "set dataset.max_tokens (--max-tokens) or dataset.batch_size (--batch-size) "
                "to say how large a batch may be"
            )
        return EpochBatchIterator(
            dataset=dataset,
            collate_fn=dataset.collater,
            batch_sampler=self.create_batch_sampler_func(
                max_positions,
                ignore_invalid_inputs,
                max_tokens,
                max_sentences,
                required_batch_size_multiple=required_batch_size_multiple,
                seed=seed,
            ),
            seed=seed,
            num_shards=num_shards,
            shard_id=shard_id,
            num_workers=num_workers,
            epoch=epoch,
            buffer_size=data_buffer_size,
            pin_memory=pin_memory,
            skip_remainder_batch=skip_remainder_batch,
        )

    # --- model and generation ------------------------------------------------------------------
    def build_model(self, model_cfg: Any) -> Any:
        model = super().build_model(model_cfg)
        if self.args.enable_lang_ids and "src_lang_id" not in inspect.signature(model.forward).parameters:
            raise ConfigError(
                f"{key('task.enable_lang_ids')} puts src_lang_id into every batch's net_input, which "
                f"{type(model).__name__}.forward does not take (nor does fairseq's transformer): use a model "
                "that reads language ids"
            )
        return model

    def _decoder_langtok(self) -> int | None:
        _, tgt_langtok_spec = self.args.langtoks["main"]
        if not tgt_langtok_spec or self.args.target_lang is None:
            return None
        return self.data_manager.get_decoder_langtok(self.args.target_lang, tgt_langtok_spec)

    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs: Any):
        """The target language's token is forced first (inference_step); it is left out of the output
        unless --keep-inference-langtok (a task flag here, as fairseq declares it; fairseq-generate 0.12.2
        looked for it among the generation options, where it never is, so it had no effect there)."""
        keep = self.args.keep_inference_langtok or getattr(args, "keep_inference_langtok", False)
        if isinstance(args, dict):
            keep = keep or bool(args.get("keep_inference_langtok", False))
        tgt_lang_tok = self._decoder_langtok()
        if not keep and tgt_lang_tok is not None:
            extra_gen_cls_kwargs = dict(extra_gen_cls_kwargs or {})
            extra_gen_cls_kwargs["symbols_to_strip_from_output"] = {tgt_lang_tok}
        return super().build_generator(
            models, args, seq_gen_cls=seq_gen_cls, extra_gen_cls_kwargs=extra_gen_cls_kwargs, **kwargs
        )

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """fairseq's: the decoder starts from eos with the target language's token as a forced prefix; with
        --lang-tok-replacing-bos-eos it starts from that token instead."""
        if not hasattr(generator, "search"):  # a SequenceScorer (--score-reference) has nothing to force
            return super().inference_step(generator, models, sample, prefix_tokens, constraints)
        with torch.no_grad():
            tgt_lang_tok = self._decoder_langtok()
            if not self.args.lang_tok_replacing_bos_eos:
                if prefix_tokens is None and tgt_lang_tok is not None:
                    src_tokens = sample["net_input"]["src_tokens"]
                    prefix_tokens = src_tokens.new_full((src_tokens.size(0), 1), tgt_lang_tok)
                return generator.generate(models, sample, prefix_tokens=prefix_tokens, constraints=constraints)
            bos = tgt_lang_tok if tgt_lang_tok is not None else self.target_dictionary.eos()
            return generator.generate(models, sample, prefix_tokens=prefix_tokens, bos_token=bos)
