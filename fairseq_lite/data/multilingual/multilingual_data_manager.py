"""fairseq's `MultilingualDatasetManager`: the dictionaries, language tokens and datasets of the
multilingual translation task (translation_multi_simple_epoch).

Data, per data category ("main" is task.data; --extra-data adds others) and language pair src-tgt: in each
data directory (several joined by ':' are shards, one per epoch in turn) the files
{split}.{src}-{tgt}.{lang}.bin/.idx, or those of the reverse pair, with numbered splits (train1, ...)
combined. The language tokens go where --langtoks says (by default --encoder-langtok's on the source, the
target's with --decoder-langtok): prepended to the source and target (so the decoder first predicts the
target language's token after eos), or, with --lang-tok-replacing-bos-eos, in place of the source's eos
and of prev_output_tokens' leading eos.
"""

import itertools
import json
import logging
import math
import os
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from fairseq_lite.data.append_token_dataset import AppendTokenDataset
from fairseq_lite.data.concat_dataset import ConcatDataset
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.indexed_dataset_loading import load_indexed_dataset
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.data.multilingual.lang_id_pair_dataset import LangIdLanguagePairDataset
from fairseq_lite.data.multilingual.multilingual_dictionaries import (
    SRC_DICT_NAME,
    TGT_DICT_NAME,
    load_all_dictionaries,
    load_langs,
    prepare,
    split_paths,
)
from fairseq_lite.data.multilingual.multilingual_settings import extra_lang_pairs
from fairseq_lite.data.multilingual.multilingual_utils import get_lang_tok
from fairseq_lite.data.multilingual.sampled_multi_dataset import CollateFormat, SampledMultiDataset
from fairseq_lite.data.multilingual.sampled_multi_epoch_dataset import SampledMultiEpochDataset
from fairseq_lite.data.prepend_token_dataset import PrependTokenDataset
from fairseq_lite.data.raw_text_dataset import IndexedRawTextDataset
from fairseq_lite.data.shorten_dataset import TruncateDataset
from fairseq_lite.data.strip_token_dataset import StripTokenDataset
from fairseq_lite.data.transform_eos_lang_pair_dataset import TransformEosLangPairDataset
from fairseq_lite.errors import ConfigError, DataError, key

logger = logging.getLogger(__name__)

__all__ = ["MultilingualDatasetManager", "SRC_DICT_NAME", "TGT_DICT_NAME", "load_sampling_weights"]


def load_sampling_weights(from_file: str) -> dict[str, float]:
    try:
        with open(from_file, encoding="utf-8") as f:
            weights = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{key('task.sampling_weights_from_file')}: cannot read {from_file}: {e}") from None
    if not isinstance(weights, dict):
        raise ConfigError(f"{key('task.sampling_weights_from_file')}: {from_file} must hold a JSON object")
    return weights


def _lang_id(dic: Dictionary, lang: str) -> int:
    idx = dic.index(lang)
    if idx == dic.unk_index:
        raise DataError(f"cannot find language ID for lang {lang}")
    return idx


class MultilingualDatasetManager:
    def __init__(self, args: Any, lang_pairs: Sequence[str], langs: Sequence[str], dicts: dict, sampling_method: Any):
        self.args = args
        self.seed = args.seed
        self.lang_pairs = list(lang_pairs)
        self.extra_lang_pairs = extra_lang_pairs(args)
        every_pair = (args.lang_pairs or []) + self.extra_lang_pairs
        self.src_langs = {p.split("-")[0] for p in every_pair}
        self.tgt_langs = {p.split("-")[1] for p in every_pair}
        self.langs = list(langs)
        self.dicts = dicts
        self.lang_dict = self.create_lang_dictionary(self.langs)
        self.sampling_method = sampling_method
        self.sampling_scheduler = None
        self._has_sharded_data = False
        self._num_shards_dict: dict[str, dict[str, int]] = {}
        self._training_data_sizes: dict[str, dict[int, int]] = defaultdict(dict)

    @classmethod
    def setup_data_manager(cls, args, lang_pairs, langs, dicts, sampling_method) -> "MultilingualDatasetManager":
        return cls(args, lang_pairs, langs, dicts, sampling_method)

    # --- languages and dictionaries ------------------------------------------------------------
    @classmethod
    def load_langs(cls, args: Any, **kwargs: Any) -> list[str]:
        return load_langs(args)

    @classmethod
    def prepare(cls, load_dictionary: Callable[[str], Dictionary], args: Any, **kwargs: Any):
        """(languages, dictionaries by language, training?); see multilingual_dictionaries.prepare."""
        return prepare(load_dictionary, args)

    @classmethod
    def load_all_dictionaries(cls, args: Any, language_list, load_dictionary, training: bool) -> dict:
        return load_all_dictionaries(args, language_list, load_dictionary, training)

    def get_source_dictionary(self, lang: str | None) -> Dictionary:
        return self.dicts[SRC_DICT_NAME] if self.args.source_dict is not None else self.dicts[lang]

    def get_target_dictionary(self, lang: str | None) -> Dictionary:
        return self.dicts[TGT_DICT_NAME] if self.args.target_dict is not None else self.dicts[lang]

    @classmethod
    def create_lang_dictionary(cls, langs: Sequence[str]) -> Dictionary:
        """Languages as ids (--enable-lang-ids): <unk> is 0, the languages 1, 2, ... in list order."""
        unk = "<unk>"
        lang_dict = Dictionary(pad=unk, eos=unk, unk=unk, bos=unk)
        for lang in langs:
            lang_dict.add_symbol(lang)
        return lang_dict

    @classmethod
    def get_langtok_index(cls, lang_tok: str, dic: Dictionary) -> int:
        idx = dic.index(lang_tok)
        if idx == dic.unk_index:
            raise DataError(
                f"cannot find language token {lang_tok} in the dictionary (is its spec in "
                f"{key('task.langtoks_specs')}?)"
            )
        return idx

    def get_encoder_langtok(self, src_lang: str | None, tgt_lang: str | None, spec: str | None = None) -> int | None:
        """The source's token: the source language's for a spec starting with "src", else the target's."""
        if spec is None:
            return None
        lang = src_lang if spec.startswith("src") else tgt_lang
        if lang is None:
            return None
        langtok = get_lang_tok(lang, self.args.lang_tok_style, spec)
        dic = self.get_source_dictionary(src_lang) if src_lang else self.get_target_dictionary(tgt_lang)
        return self.get_langtok_index(langtok, dic)

    def get_decoder_langtok(self, tgt_lang: str, spec: str | None = None) -> int | None:
        if spec is None:
            return None
        langtok = get_lang_tok(tgt_lang, self.args.lang_tok_style, spec)
        return self.get_langtok_index(langtok, self.get_target_dictionary(tgt_lang))

    # --- one language pair ---------------------------------------------------------------------
    def split_exists(self, split: str, src: str, tgt: str, lang: str, data_path: str) -> bool:
        filename = os.path.join(data_path, f"{split}.{src}-{tgt}.{lang}")
        if self.args.dataset_impl == "raw":
            return IndexedRawTextDataset.exists(filename)
        return MMapIndexedDataset.exists(filename) or IndexedRawTextDataset.exists(filename)

    def load_lang_dataset(
        self,
        data_path: str,
        split: str,
        src: str,
        src_dict: Dictionary,
        tgt: str,
        tgt_dict: Dictionary,
        combine: bool,
        upsample_primary: int,
        max_source_positions: int,
        truncate_source: bool = False,
    ) -> tuple[Any, Any]:
        """(source, target) of one pair: `split` and, with combine, split1, split2, ... concatenated (the
        first repeated upsample_primary times); the target is None when its files are absent."""
        src_datasets, tgt_datasets = [], []
        for k in itertools.count():
            split_k = split + (str(k) if k > 0 else "")
            if self.split_exists(split_k, src, tgt, src, data_path):
                prefix = os.path.join(data_path, f"{split_k}.{src}-{tgt}.")
            elif self.split_exists(split_k, tgt, src, src, data_path):
                prefix = os.path.join(data_path, f"{split_k}.{tgt}-{src}.")
            elif k > 0:
                break
            else:
                raise DataError(
                    f"dataset not found: {split}.{src}-{tgt}.{src}.bin/.idx (or {split}.{tgt}-{src}.{src}) in "
                    f"{data_path}"
                )
            src_dataset: Any = load_indexed_dataset(prefix + src, src_dict, self.args.dataset_impl)
            if truncate_source:
                # fairseq's: without its eos, cut, the eos put back
                src_dataset = AppendTokenDataset(
                    TruncateDataset(StripTokenDataset(src_dataset, src_dict.eos()), max_source_positions - 1),
                    src_dict.eos(),
                )
            src_datasets.append(src_dataset)
            tgt_datasets.append(load_indexed_dataset(prefix + tgt, tgt_dict, self.args.dataset_impl))
            logger.info(f"{data_path} {split_k} {src}-{tgt} {len(src_dataset)} examples")
            if not combine:
                break
        if len(src_datasets) == 1:
            return src_datasets[0], tgt_datasets[0]
        if any(t is None for t in tgt_datasets):
            raise DataError(f"{data_path}: some shards of '{split}' {src}-{tgt} lack the {tgt} side")
        ratios = [upsample_primary] + [1] * (len(src_datasets) - 1)
        return ConcatDataset(src_datasets, ratios), ConcatDataset(tgt_datasets, ratios)

    def load_langpair_dataset(
        self,
        data_path: str,
        split: str,
        src: str,
        src_dict: Dictionary,
        tgt: str,
        tgt_dict: Dictionary,
        combine: bool,
        src_dataset_transform_func: Callable[[Any], Any] = lambda dataset: dataset,
        tgt_dataset_transform_func: Callable[[Any], Any] = lambda dataset: dataset,
        src_lang_id: int | None = None,
        tgt_lang_id: int | None = None,
        langpairs_sharing_datasets: dict | None = None,
    ) -> LanguagePairDataset:
        """One pair as a LanguagePairDataset, its language tokens prepended. With
        --enable-reservsed-directions-shared-datasets a training pair reuses the files read for its reverse
        (each direction still gets its own truncation and language tokens)."""
        args = self.args
        cache_key = (data_path, split, "-".join(sorted([src, tgt])))
        shared = langpairs_sharing_datasets is not None and split == getattr(args, "train_subset", None)
        if shared and cache_key in langpairs_sharing_datasets:
            logger.info(
                f"Reusing source and target datasets of [{split}] {tgt}-{src} for reversed direction {src}-{tgt}"
            )
            by_lang = langpairs_sharing_datasets[cache_key]
            src_dataset, tgt_dataset = by_lang[src], by_lang[tgt]
            if args.truncate_source:
                src_dataset = AppendTokenDataset(
                    TruncateDataset(StripTokenDataset(src_dataset, src_dict.eos()), args.max_source_positions - 1),
                    src_dict.eos(),
                )
        else:
            src_dataset, tgt_dataset = self.load_lang_dataset(
                data_path,
                split,
                src,
                src_dict,
                tgt,
                tgt_dict,
                combine,
                args.upsample_primary,
                args.max_source_positions,
                truncate_source=args.truncate_source and not shared,
            )
            if shared:
                langpairs_sharing_datasets[cache_key] = {src: src_dataset, tgt: tgt_dataset}
                if args.truncate_source:
                    src_dataset = AppendTokenDataset(
                        TruncateDataset(StripTokenDataset(src_dataset, src_dict.eos()), args.max_source_positions - 1),
                        src_dict.eos(),
                    )
        src_dataset = src_dataset_transform_func(src_dataset)
        tgt_dataset = tgt_dataset_transform_func(tgt_dataset)
        kwargs: dict[str, Any] = dict(left_pad_source=args.left_pad_source, left_pad_target=args.left_pad_target)
        cls: type[LanguagePairDataset] = LanguagePairDataset
        if src_lang_id is not None or tgt_lang_id is not None:
            cls, kwargs = LangIdLanguagePairDataset, dict(kwargs, src_lang_id=src_lang_id, tgt_lang_id=tgt_lang_id)
        return cls(
            src_dataset,
            src_dataset.sizes,
            src_dict,
            tgt_dataset,
            tgt_dataset.sizes if tgt_dataset is not None else None,
            tgt_dict,
            **kwargs,
        )

    def src_dataset_tranform_func(self, src_lang: str | None, tgt_lang: str | None, dataset: Any, spec=None) -> Any:
        """The source with its language token in front (fairseq's name, typo included, for subclasses)."""
        if self.args.lang_tok_replacing_bos_eos or spec is None:
            return dataset  # alter_dataset_langtok puts the token in at collation
        tok = self.get_encoder_langtok(src_lang, tgt_lang, spec)
        return PrependTokenDataset(dataset, tok) if tok else dataset

    def tgt_dataset_tranform_func(self, source_lang: str | None, target_lang: str, dataset: Any, spec=None) -> Any:
        if dataset is None:
            return None  # inference data without targets
        if self.args.lang_tok_replacing_bos_eos or not spec:
            return dataset
        tok = self.get_decoder_langtok(target_lang, spec)
        return PrependTokenDataset(dataset, tok) if tok else dataset

    def alter_dataset_langtok(
        self,
        lang_pair_dataset: Any,
        src_eos: int | None = None,
        src_lang: str | None = None,
        tgt_eos: int | None = None,
        tgt_lang: str | None = None,
        src_langtok_spec: str | None = None,
        tgt_langtok_spec: str | None = None,
    ) -> Any:
        """--lang-tok-replacing-bos-eos: the tokens replace the source's eos and prev_output_tokens' first."""
        if src_langtok_spec is None and tgt_langtok_spec is None:
            return lang_pair_dataset
        new_src_eos = None
        if src_langtok_spec is not None and src_eos is not None and (src_lang is not None or tgt_lang is not None):
            new_src_eos = self.get_encoder_langtok(src_lang, tgt_lang, src_langtok_spec)
        else:
            src_eos = None
        new_tgt_bos = None
        if tgt_langtok_spec and tgt_eos is not None and tgt_lang is not None:
            new_tgt_bos = self.get_decoder_langtok(tgt_lang, tgt_langtok_spec)
        else:
            tgt_eos = None
        return TransformEosLangPairDataset(
            lang_pair_dataset, src_eos=src_eos, new_src_eos=new_src_eos, tgt_bos=tgt_eos, new_tgt_bos=new_tgt_bos
        )

    def load_a_dataset(
        self,
        split: str,
        data_path: str,
        src: str,
        src_dict: Dictionary,
        tgt: str,
        tgt_dict: Dictionary,
        combine: bool,
        langpairs_sharing_datasets: dict | None = None,
        data_category: str | None = None,
        **extra_kwargs: Any,
    ) -> Any:
        src_langtok_spec, tgt_langtok_spec = extra_kwargs["langtok_spec"]
        src_langtok = self.get_encoder_langtok(src, tgt, src_langtok_spec)
        tgt_langtok = self.get_decoder_langtok(tgt, tgt_langtok_spec)
        logger.info(f"{data_category}:{src}-{tgt} src_langtok: {src_langtok}; tgt_langtok: {tgt_langtok}")
        lang_ids = self.args.enable_lang_ids
        langpair_ds = self.load_langpair_dataset(
            data_path,
            split,
            src,
            src_dict,
            tgt,
            tgt_dict,
            combine,
            src_dataset_transform_func=lambda ds: self.src_dataset_tranform_func(src, tgt, ds, src_langtok_spec),
            tgt_dataset_transform_func=lambda ds: self.tgt_dataset_tranform_func(src, tgt, ds, tgt_langtok_spec),
            src_lang_id=_lang_id(self.lang_dict, src) if lang_ids else None,
            tgt_lang_id=_lang_id(self.lang_dict, tgt) if lang_ids else None,
            langpairs_sharing_datasets=langpairs_sharing_datasets,
        )
        if not self.args.lang_tok_replacing_bos_eos:
            return langpair_ds
        return self.alter_dataset_langtok(
            langpair_ds,
            src_eos=(self.get_source_dictionary(src) if src else self.get_target_dictionary(tgt)).eos(),
            src_lang=src,
            tgt_eos=self.get_target_dictionary(tgt).eos(),
            tgt_lang=tgt,
            src_langtok_spec=src_langtok_spec,
            tgt_langtok_spec=tgt_langtok_spec,
        )

    # --- a split: every category and pair -------------------------------------------------------
    def has_sharded_data(self, split: str) -> bool:
        return self._has_sharded_data and split == getattr(self.args, "train_subset", None)

    def _shared_collater(self) -> bool:
        # every pair's dataset collates alike, so the first collates the mixed batch; lang ids and
        # collation-time language tokens differ per pair
        return not self.args.lang_tok_replacing_bos_eos and not self.args.enable_lang_ids

    def estimate_global_pass_epoch(self, epoch: int) -> int | None:
        if self.args.virtual_epoch_size is None or self.args.virtual_data_size is None:
            return None
        virtual_epochs_per_shard = math.ceil(self.args.virtual_data_size / self.args.virtual_epoch_size)
        return (epoch - 1) // virtual_epochs_per_shard + 1

    def get_data_paths_and_lang_pairs(self, split: str) -> tuple[dict[str, str], dict[str, list[str]]]:
        datapaths = {"main": self.args.data}
        lang_pairs = {"main": self.lang_pairs}
        if split == getattr(self.args, "train_subset", None):
            # only training data has extra data categories
            datapaths.update(self.args.extra_data or {})
            for category, pairs in (self.args.extra_lang_pairs or {}).items():
                lang_pairs[category] = [p.strip() for p in str(pairs).split(",") if p.strip()]
        return datapaths, lang_pairs

    @classmethod
    def get_dataset_key(cls, data_category: str, src: str, tgt: str) -> str:
        return f"{data_category}:{src}-{tgt}"

    @classmethod
    def _get_shard_num_dict(cls, split: str, paths: Sequence[str]) -> dict[str, int]:
        """direction -> how many of `paths` hold data of `split` for it."""
        shards: dict[str, int] = defaultdict(int)
        for path in paths:
            files = os.listdir(path) if os.path.isdir(path) else []
            directions = set()
            for f in files:
                parts = f.split(".")
                if not f.startswith(split):
                    continue
                if f.endswith(".idx") and len(parts) >= 4:
                    directions.add(parts[-3])  # {split}.{src}-{tgt}.{lang}.idx
                elif len(parts) == 3 and "-" in parts[1]:
                    directions.add(parts[1])  # raw text: {split}.{src}-{tgt}.{lang}
            for direction in directions:
                shards[direction] += 1
        return shards

    def get_split_num_data_shards(self, split: str) -> dict[str, int]:
        if split in self._num_shards_dict:
            return self._num_shards_dict[split]
        num_shards: dict[str, int] = {}
        data_paths, lang_pairs = self.get_data_paths_and_lang_pairs(split)
        for category, paths in data_paths.items():
            if category not in lang_pairs:
                continue
            shards = self._get_shard_num_dict(split, split_paths(paths))
            for src, tgt in (p.split("-") for p in lang_pairs[category]):
                count = shards.get(f"{src}-{tgt}") or shards.get(f"{tgt}-{src}")  # the reverse pair's files too
                if not count:
                    raise DataError(
                        f"{key('task.data') if category == 'main' else key('task.extra_data')}: no '{split}' data "
                        f"for {src}-{tgt} ({split}.{src}-{tgt}.{src}.bin/.idx or {split}.{tgt}-{src}.*) in {paths}"
                    )
                num_shards[self.get_dataset_key(category, src, tgt)] = count
        self._num_shards_dict[split] = num_shards
        logger.info(f"[{split}] num of shards: {num_shards}")
        return num_shards

    @classmethod
    def get_shard_id(cls, num_shards: int, epoch: int, shard_epoch: int | None = None) -> int:
        shard = epoch if shard_epoch is None else shard_epoch
        return (shard - 1) % num_shards

    def get_split_data_path(self, paths: Sequence[str], epoch: int, shard_epoch: int | None, num_shards: int) -> str:
        return paths[self.get_shard_id(num_shards, epoch, shard_epoch)]

    def get_split_data_param_list(self, split: str, epoch: int, shard_epoch: int | None = None) -> list[dict]:
        params = []
        data_paths, lang_pairs = self.get_data_paths_and_lang_pairs(split)
        logger.info(f"langtoks settings: {self.args.langtoks}")
        num_shards = self.get_split_num_data_shards(split)
        for category, paths in data_paths.items():
            if category not in lang_pairs:
                continue
            paths = split_paths(paths)
            if len(paths) > 1:
                self._has_sharded_data = True
            if split != getattr(self.args, "train_subset", None):
                paths = paths[:1]  # valid and test data come from the first directory
            langtok_spec = tuple(self.args.langtoks.get(category, (None, None)))
            for src, tgt in (p.split("-") for p in lang_pairs[category]):
                dataset_key = self.get_dataset_key(category, src, tgt)
                params.append(
                    {
                        "key": dataset_key,
                        "data_path": self.get_split_data_path(paths, epoch, shard_epoch, num_shards[dataset_key]),
                        "split": split,
                        "src": src,
                        "src_dict": self.get_source_dictionary(src),
                        "tgt": tgt,
                        "tgt_dict": self.get_target_dictionary(tgt),
                        "data_category": category,
                        "langtok_spec": langtok_spec,
                    }
                )
        return params

    def get_train_dataset_sizes(self, data_param_list, datasets, epoch: int, shard_epoch=None) -> list[int]:
        """Each pair's size over all its shards: those not read yet are taken as large as the largest read."""
        sizes = []
        for param, (dataset_key, d) in zip(data_param_list, datasets):
            num_shard = self.get_split_num_data_shards(param["split"])[param["key"]]
            known = self._training_data_sizes[dataset_key]
            known.setdefault(self.get_shard_id(num_shard, epoch, shard_epoch), len(d))
            largest = max(known.values())
            sizes.append(sum(known.get(i, largest) for i in range(num_shard)))
        logger.info(f"estimated total data sizes of all shards used in sampling ratios: {sizes}")
        return sizes

    def get_train_sampling_ratios(self, data_param_list, datasets, epoch: int = 1, shard_epoch=None):
        sizes = self.get_train_dataset_sizes(data_param_list, datasets, epoch, shard_epoch)
        sampling_func = self.sampling_method.sampling_method_selector()
        return sampling_func(sizes) if sampling_func is not None else None

    def get_sampling_ratios(self, data_param_list, datasets, epoch: int, shard_epoch=None):
        if self.args.sampling_weights_from_file:
            weights, where = load_sampling_weights(self.args.sampling_weights_from_file), "sampling_weights_from_file"
            logger.info(
                f"| ignoring --sampling-weights when loading weights from {self.args.sampling_weights_from_file}"
            )
        elif self.args.sampling_weights:
            weights, where = self.args.sampling_weights, "sampling_weights"
        else:
            weights = None
        if weights is not None:
            missing = [k for k, _ in datasets if k not in weights]
            if missing:
                raise ConfigError(
                    f"{key('task.' + where)} has no weight for {', '.join(missing)} (keys are category:src-tgt, "
                    f"e.g. main:{self.lang_pairs[0]})"
                )
            ratios = [weights[k] for k, _ in datasets]
        else:
            ratios = self.get_train_sampling_ratios(data_param_list, datasets, epoch, shard_epoch)
        if ratios is not None:
            logger.info(f"| Upsample ratios: {list(zip((p['key'] for p in data_param_list), ratios))}")
        return ratios

    def load_split_datasets(self, split: str, training: bool, epoch: int = 1, combine: bool = False, shard_epoch=None):
        data_param_list = self.get_split_data_param_list(split, epoch, shard_epoch=shard_epoch)
        sharing = {} if self.args.enable_reservsed_directions_shared_datasets else None
        datasets = [
            (param["key"], self.load_a_dataset(combine=combine, langpairs_sharing_datasets=sharing, **param))
            for param in data_param_list
        ]
        return datasets, data_param_list

    def load_into_concat_dataset(self, split: str, datasets, data_param_list) -> Any:
        """Validation and test data: every pair's items once, in order."""
        if self.args.lang_tok_replacing_bos_eos or self.args.enable_lang_ids:
            # each pair collates its own language tokens / ids
            return SampledMultiDataset(
                OrderedDict(datasets),
                sampling_ratios=None,
                eval_key=None,
                collate_format=CollateFormat.single,
                virtual_size=None,
                split=split,
            )
        return ConcatDataset([d for _, d in datasets])

    def load_dataset(self, split: str, training: bool, epoch: int = 0, combine: bool = False, shard_epoch=None, **kw):
        """The training split as a sampled dataset (by virtual epochs with --virtual-epoch-size); other
        splits concatenated."""
        datasets, data_param_list = self.load_split_datasets(split, training, epoch, combine, shard_epoch=shard_epoch)
        if not (training and split == getattr(self.args, "train_subset", None)):
            return self.load_into_concat_dataset(split, datasets, data_param_list)
        sample_ratios = self.get_sampling_ratios(data_param_list, datasets, epoch)
        common = dict(
            epoch=epoch,
            sampling_ratios=sample_ratios,
            eval_key=None,
            collate_format=CollateFormat.single,
            virtual_size=self.args.virtual_data_size,
            split=split,
            shared_collater=self._shared_collater(),
        )
        if self.args.virtual_epoch_size is None:
            return SampledMultiDataset(OrderedDict(datasets), **common)
        return SampledMultiEpochDataset(
            OrderedDict(datasets), shard_epoch=shard_epoch, virtual_epoch_size=self.args.virtual_epoch_size, **common
        )
