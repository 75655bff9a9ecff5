"""Task `multilingual_translation` (fairseq's): several translation directions trained at once, one batch of
every pair (`--lang-pairs de-en,fr-en`) in each step, with a `FairseqMultiModel` (`multilingual_transformer`).

Data: one fairseq-preprocess run per pair into the same directory: dict.{lang}.txt for every language and
{split}.{src}-{tgt}.{lang}.bin/.idx. With `--encoder-langtok src|tgt` the source's eos becomes `__{lang}__`;
with `--decoder-langtok` the target's leading eos in prev_output_tokens becomes `__{tgt}__` (so every
dictionary gets one `__{lang}__` symbol per language, appended in sorted order, as fairseq).

For inference give one direction, `--source-lang` and `--target-lang`, with `--lang-pairs` and the langtok
flags as in training; the model is then built for that pair alone and loads that pair's weights.
"""

import contextlib
import logging
import os
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import II, MISSING

from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.data.round_robin_zip_datasets import RoundRobinZipDatasets
from fairseq_lite.data.transform_eos_lang_pair_dataset import TransformEosLangPairDataset
from fairseq_lite.dataclass.base import ChoiceEnum, FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, DataError, key, setting
from fairseq_lite.logging import metrics
from fairseq_lite.registry import register_task
from fairseq_lite.tasks.fairseq_task import FairseqTask
from fairseq_lite.tasks.langpair_loading import load_langpair_dataset, pair_prefix
from fairseq_lite.tasks.language_modeling import data_paths
from fairseq_lite.tasks.translation import _data_dirs, load_dictionary

logger = logging.getLogger(__name__)


@dataclass
class MultilingualTranslationConfig(FairseqDataclass):
    data: str | None = cfg_field(MISSING, "path to data directory")
    lang_pairs: str | None = cfg_field(
        None, "comma-separated list of language pairs (in training order): en-de,en-fr,de-fr"
    )
    source_lang: str | None = cfg_field(None, "source language (only needed for inference)", argparse_alias="-s")
    target_lang: str | None = cfg_field(None, "target language (only needed for inference)", argparse_alias="-t")
    left_pad_source: bool = cfg_field(True, "pad the source on the left")
    left_pad_target: bool = cfg_field(False, "pad the target on the left")
    max_source_positions: int = cfg_field(1024, "max number of tokens in the source sequence")
    max_target_positions: int = cfg_field(1024, "max number of tokens in the target sequence")
    upsample_primary: int = cfg_field(1, "amount to upsample primary dataset")
    encoder_langtok: ChoiceEnum(["src", "tgt"]) | None = cfg_field(  # type: ignore[valid-type]
        None,
        "replace beginning-of-sentence in source sentence with source or target language token (src/tgt)",
    )
    decoder_langtok: bool = cfg_field(
        False, "replace beginning-of-sentence in target sentence with target language token"
    )
    train_subset: str = II("dataset.train_subset")


def lang_token(lang: str) -> str:
    return f"__{lang}__"


def lang_token_index(dictionary: Dictionary, lang: str) -> int:
    index = dictionary.index(lang_token(lang))
    if index == dictionary.unk():
        raise DataError(f"the dictionary has no language token {lang_token(lang)}")
    return index


def parse_lang_pairs(text: Any) -> list[str]:
    """--lang-pairs 'de-en,fr-en' as ['de-en', 'fr-en'] (a list is taken as it is)."""
    pairs = [p.strip() for p in (text.split(",") if isinstance(text, str) else list(text or [])) if p.strip()]
    if not pairs:
        raise ConfigError(
            f"{key('task.lang_pairs')} is required: list the language pairs to train, e.g. --lang-pairs de-en,fr-en"
        )
    for pair in pairs:
        if pair.count("-") != 1 or "" in pair.split("-"):
            raise ConfigError(f"{setting('task.lang_pairs', repr(text))}: '{pair}' is not a pair like 'de-en'")
    if len(set(pairs)) != len(pairs):
        raise ConfigError(f"{setting('task.lang_pairs', repr(text))} names a pair twice")
    return pairs


@register_task("multilingual_translation", dataclass=MultilingualTranslationConfig)
class MultilingualTranslationTask(FairseqTask):
    def __init__(self, cfg: Any, dicts: "OrderedDict[str, Dictionary]", training: bool):
        super().__init__(cfg)
        self.dicts = dicts
        self.training = training
        all_pairs = parse_lang_pairs(cfg.lang_pairs)
        self.lang_pairs = all_pairs if training else [f"{cfg.source_lang}-{cfg.target_lang}"]
        # the pairs validation reports and the model is built for (a subclass may choose others, as in fairseq)
        self.eval_lang_pairs = self.lang_pairs
        self.model_lang_pairs = self.lang_pairs
        self.langs = list(dicts)

    # --- checks before a run ----------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        pairs = parse_lang_pairs(cfg.lang_pairs)
        if (cfg.source_lang is None) != (cfg.target_lang is None):
            raise ConfigError(
                f"{key('task.source_lang')} and {key('task.target_lang')} go together: give both to translate one "
                f"direction, or neither to train on every pair of {key('task.lang_pairs')}"
            )
        langs = {lang for pair in pairs for lang in pair.split("-")}
        for name in ("source_lang", "target_lang"):
            value = getattr(cfg, name)
            if value is not None and value not in langs:
                raise ConfigError(
                    f"{setting('task.' + name, value)} is in none of {key('task.lang_pairs')} ({','.join(pairs)})"
                )

    @classmethod
    def check_data(cls, cfg: Any, train_subset: str | None, valid_subsets: Sequence[str] = ()) -> None:
        cls.check_config(cfg)
        paths = _data_dirs(cfg)
        pairs = parse_lang_pairs(cfg.lang_pairs)
        langs = sorted({lang for pair in pairs for lang in pair.split("-")})
        for lang in langs:
            load_dictionary(os.path.join(paths[0], f"dict.{lang}.txt"))
        wanted = [(path, train_subset) for path in paths if train_subset] + [(paths[0], s) for s in valid_subsets]
        for path, split in wanted:
            for pair in pairs:
                pair_prefix(path, split, *pair.split("-"))  # a one-line DataError when a pair's split is missing

    @classmethod
    def setup_task(cls, cfg: Any, **kwargs: Any) -> "MultilingualTranslationTask":
        cls.check_config(cfg)
        pairs = parse_lang_pairs(cfg.lang_pairs)
        training = cfg.source_lang is None and cfg.target_lang is None
        langs = sorted({lang for pair in pairs for lang in pair.split("-")})
        paths = _data_dirs(cfg)
        dicts: OrderedDict[str, Dictionary] = OrderedDict()
        for lang in langs:
            dicts[lang] = load_dictionary(os.path.join(paths[0], f"dict.{lang}.txt"))
            for name in ("pad", "eos", "unk"):
                if getattr(dicts[lang], name)() != getattr(dicts[langs[0]], name)():
                    raise DataError(f"dict.{lang}.txt and dict.{langs[0]}.txt disagree on the {name} index")
            if cfg.encoder_langtok is not None or cfg.decoder_langtok:
                for other in langs:
                    dicts[lang].add_symbol(lang_token(other))
            logger.info(f"[{lang}] dictionary: {len(dicts[lang])} types")
        return cls(cfg, dicts, training)

    # --- language tokens --------------------------------------------------------------------
    def get_encoder_langtok(self, src_lang: str, tgt_lang: str) -> int:
        if self.cfg.encoder_langtok is None:
            return self.dicts[src_lang].eos()
        lang = src_lang if self.cfg.encoder_langtok == "src" else tgt_lang
        return lang_token_index(self.dicts[src_lang], lang)

    def get_decoder_langtok(self, tgt_lang: str) -> int:
        if not self.cfg.decoder_langtok:
            return self.dicts[tgt_lang].eos()
        return lang_token_index(self.dicts[tgt_lang], tgt_lang)

    def alter_dataset_langtok(self, dataset: Any, src_eos=None, src_lang=None, tgt_eos=None, tgt_lang=None) -> Any:
        if self.cfg.encoder_langtok is None and not self.cfg.decoder_langtok:
            return dataset
        new_src_eos = None
        if self.cfg.encoder_langtok is not None and None not in (src_eos, src_lang, tgt_lang):
            new_src_eos = self.get_encoder_langtok(src_lang, tgt_lang)
        new_tgt_bos = None
        if self.cfg.decoder_langtok and None not in (tgt_eos, tgt_lang):
            new_tgt_bos = self.get_decoder_langtok(tgt_lang)
        return TransformEosLangPairDataset(
            dataset, src_eos=src_eos, new_src_eos=new_src_eos, tgt_bos=tgt_eos, new_tgt_bos=new_tgt_bos
        )

    # --- data ---------------------------------------------------------------------------------
    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs: Any) -> None:
        paths = data_paths(self.cfg.data)
        if split != self.cfg.train_subset:
            paths = paths[:1]  # valid and test data come from the first directory
        data_path = paths[(epoch - 1) % len(paths)]

        def pair_dataset(pair: str) -> Any:
            src, tgt = pair.split("-")
            dataset = load_langpair_dataset(
                data_path,
                split,
                src,
                self.dicts[src],
                tgt,
                self.dicts[tgt],
                combine=True,
                upsample_primary=self.cfg.upsample_primary,
                left_pad_source=self.cfg.left_pad_source,
                left_pad_target=self.cfg.left_pad_target,
                max_source_positions=self.cfg.max_source_positions,
                max_target_positions=self.cfg.max_target_positions,
            )
            return self.alter_dataset_langtok(
                dataset,
                src_eos=self.dicts[src].eos(),
                src_lang=src,
                tgt_eos=self.dicts[tgt].eos(),
                tgt_lang=tgt,
            )

        self.datasets[split] = RoundRobinZipDatasets(
            OrderedDict((pair, pair_dataset(pair)) for pair in self.lang_pairs),
            eval_key=None if self.training else f"{self.cfg.source_lang}-{self.cfg.target_lang}",
        )

    def build_dataset_for_inference(self, src_tokens: list[Any], src_lengths: list[int], constraints=None) -> Any:
        """The inference direction's dataset, language tokens included (one direction: no round robin)."""
        if constraints is not None:
            raise ConfigError("--constraints are not supported with --task multilingual_translation (as in fairseq)")
        self._require_direction()
        return self.alter_dataset_langtok(
            LanguagePairDataset(src_tokens, src_lengths, self.source_dictionary, tgt_dict=self.target_dictionary),
            src_eos=self.source_dictionary.eos(),
            src_lang=self.cfg.source_lang,
            tgt_eos=self.target_dictionary.eos(),
            tgt_lang=self.cfg.target_lang,
        )

    def max_positions(self) -> dict[str, tuple[int, int]]:
        limits = (self.cfg.max_source_positions, self.cfg.max_target_positions)
        keys = [k for ds in self.datasets.values() for k in getattr(ds, "datasets", {})] or self.lang_pairs
        return OrderedDict((k, limits) for k in keys)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.dicts[self.cfg.source_lang] if not self.training else next(iter(self.dicts.values()))

    @property
    def target_dictionary(self) -> Dictionary:
        return self.dicts[self.cfg.target_lang] if not self.training else next(iter(self.dicts.values()))

    # --- model --------------------------------------------------------------------------------
    def build_model(self, model_cfg: Any) -> Any:
        from fairseq_lite.models.fairseq_model import FairseqMultiModel

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                raise ConfigError(
                    f"{key('task._name')}=multilingual_translation trains on one process here: its per-pair steps "
                    f"would bypass DistributedDataParallel's gradient sync; train on one GPU with --update-freq"
                )
        model = super().build_model(model_cfg)
        if not isinstance(model, FairseqMultiModel):
            raise ConfigError(
                f"{key('task._name')}=multilingual_translation needs a FairseqMultiModel architecture "
                f"(e.g. --arch multilingual_transformer_iwslt_de_en), not {type(model).__name__}"
            )
        return model

    # --- steps --------------------------------------------------------------------------------
    def train_step(self, sample, model, criterion, optimizer, update_num: int, ignore_grad: bool = False):
        """One forward and backward per language pair of the batch, their statistics summed (and kept per
        pair as "de-en:loss", ...), as fairseq's task does."""
        model.train()
        inner = _multi_model(model)
        pairs = [p for p in self.model_lang_pairs if sample.get(p) is not None and len(sample[p]) != 0]
        agg_loss, agg_size, agg_log = 0.0, 0.0, defaultdict(float)
        for pair in pairs:
            with getattr(optimizer, "autocast", contextlib.nullcontext)():
                loss, size, log = criterion(inner.models[pair], sample[pair])
            if ignore_grad:
                loss = loss * 0
            optimizer.backward(loss)
            agg_loss += float(loss.detach())
            agg_size += float(size)
            _add_logs(agg_log, log, pair)
        return agg_loss, agg_size, dict(agg_log)

    def valid_step(self, sample, model, criterion):
        model.eval()
        inner = _multi_model(model)
        with torch.no_grad():
            if not isinstance(sample, dict) or "net_input" in sample:  # one direction (eval_key)
                pair = self.eval_lang_pairs[0]
                return criterion(inner.models[pair], sample)
            agg_loss, agg_size, agg_log = 0.0, 0.0, defaultdict(float)
            for pair in self.eval_lang_pairs:
                if sample.get(pair) is None or len(sample[pair]) == 0:
                    continue
                loss, size, log = criterion(inner.models[pair], sample[pair])
                agg_loss += float(loss)
                agg_size += float(size)
                _add_logs(agg_log, log, pair)
            return agg_loss, agg_size, dict(agg_log)

    def _require_direction(self) -> None:
        if self.training:
            raise ConfigError(
                f"give {key('task.source_lang')} and {key('task.target_lang')} (-s/-t): the direction to translate, "
                f"one of --lang-pairs {','.join(self.lang_pairs)}"
            )

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        self._require_direction()
        bos = self.get_decoder_langtok(self.cfg.target_lang) if self.cfg.decoder_langtok else None
        with torch.no_grad():
            return generator.generate(sample, prefix_tokens=prefix_tokens, constraints=constraints, bos_token=bos)

    def reduce_metrics(self, logging_outputs: list[dict[str, Any]], criterion: Any) -> None:
        super().reduce_metrics(logging_outputs, criterion)
        for name in ("sample_size", "nsentences", "ntokens"):
            if any(name in log for log in logging_outputs):
                metrics.log_scalar(name, sum(log.get(name, 0) for log in logging_outputs))


def _add_logs(total: dict[str, float], log: dict[str, Any], pair: str) -> None:
    for name, value in log.items():
        value = float(value.detach()) if torch.is_tensor(value) else float(value)
        total[name] += value
        total[f"{pair}:{name}"] += value


def _multi_model(model: Any) -> Any:
    """The FairseqMultiModel itself; a DDP wrapper is refused: its gradient hooks run only through its own
    forward, which a multi-model does not have (one pair at a time)."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        raise ConfigError(
            f"{key('task._name')}=multilingual_translation trains on one process here: the per-pair steps bypass "
            f"DistributedDataParallel's gradient sync; train with one GPU and --update-freq"
        )
    return getattr(model, "_orig_mod", model)  # torch.compile's wrapper
