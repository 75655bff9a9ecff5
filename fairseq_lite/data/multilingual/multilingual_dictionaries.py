"""The languages of the multilingual task and their dictionaries (fairseq's MultilingualDatasetManager.prepare):
the language list (--lang-dict, --langs, or the pairs' languages), each language's dict.{lang}.txt (or
--source-dict/--target-dict, or one --fixed-dictionary) with the language tokens appended."""

import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from fairseq_lite import utils
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.multilingual.multilingual_settings import extra_lang_pairs, normalize_args
from fairseq_lite.data.multilingual.multilingual_utils import augment_dictionary
from fairseq_lite.errors import ConfigError, DataError, key

logger = logging.getLogger(__name__)

__all__ = ["SRC_DICT_NAME", "TGT_DICT_NAME", "load_all_dictionaries", "load_langs", "prepare", "split_paths"]

SRC_DICT_NAME = "src"
TGT_DICT_NAME = "tgt"


def split_paths(paths: str) -> list[str]:
    """task.data's directories (several joined by ':'), empty parts dropped."""
    return [p for p in utils.split_paths(str(paths)) if p]


def load_langs(args: Any) -> list[str]:
    """The language list, whose order fixes the language tokens' ids: --lang-dict's lines, --langs, or
    (unstable across runs with other pairs) the sorted languages of --lang-pairs."""
    if args.lang_dict:
        try:
            with open(os.path.expanduser(args.lang_dict), encoding="utf-8") as f:
                langs = [lang.strip() for lang in f if lang.strip()]
        except OSError as e:
            raise ConfigError(f"{key('task.lang_dict')}: cannot read {args.lang_dict}: {e.strerror}") from None
        logger.info(f"loaded language list from {args.lang_dict} as they are ordered in file")
        return langs
    if args.langs:
        logger.info(f"parsed the language list as they are ordered in the option: {args.langs}")
        return list(args.langs)
    logger.warning(
        "External language dictionary is not provided; use lang-pairs to infer the set of supported "
        "languages. The language ordering is not stable which might cause misalignment in pretraining "
        "and finetuning."
    )
    langs = sorted({x for pair in args.lang_pairs or [] for x in pair.split("-")})
    logger.info(f"inferred language list: {langs}")
    return langs


def prepare(load_dictionary: Callable[[str], Dictionary], args: Any) -> tuple[list[str], dict, bool]:
    """(languages, dictionaries by language, training?): inference when --source-lang or --target-lang
    is given. Each dictionary gets the language tokens (augment_dictionary)."""
    normalize_args(args)
    training = args.source_lang is None and args.target_lang is None
    if training and not args.lang_pairs:
        raise ConfigError(
            f"{key('task.lang_pairs')} is required. List all the language pairs in the training objective."
        )
    if not training and (args.source_lang is None or args.target_lang is None):
        raise ConfigError(
            f"inference needs both {key('task.source_lang')} and {key('task.target_lang')} (training needs neither)"
        )
    if not training and not (args.lang_pairs or args.langs or args.lang_dict):
        raise ConfigError(
            f"give {key('task.lang_dict')} (or {key('task.lang_pairs')}) as in training: the language "
            "list fixes the language tokens"
        )
    language_list = load_langs(args)
    pairs = [p.split("-") for p in args.lang_pairs] if training else [(args.source_lang, args.target_lang)]
    missing = [f"{s}-{t}" for s, t in pairs if s not in language_list or t not in language_list]
    if missing:
        raise ConfigError(
            f"language pair(s) {', '.join(missing)} contain languages that are not in the language "
            f"dictionary; langs: {language_list}"
        )

    def load_dictionary_and_postproc(path: str) -> Dictionary:
        d = load_dictionary(path)
        augment_dictionary(d, language_list, args.lang_tok_style, args.langtoks_specs, args.extra_data)
        return d

    dicts = load_all_dictionaries(args, language_list, load_dictionary_and_postproc, training)
    return language_list, dicts, training


def load_all_dictionaries(
    args: Any, language_list: Sequence[str], load_dictionary: Callable[[str], Dictionary], training: bool
) -> dict:
    dicts: dict[str, Dictionary] = OrderedDict()
    if args.source_dict is not None:
        dicts[SRC_DICT_NAME] = load_dictionary(args.source_dict)
    if args.target_dict is not None:
        dicts[TGT_DICT_NAME] = load_dictionary(args.target_dict)
    if training:
        every_pair = args.lang_pairs + extra_lang_pairs(args)
        src_langs = sorted({p.split("-")[0] for p in every_pair})
        tgt_langs = sorted({p.split("-")[1] for p in every_pair})
    else:
        src_langs, tgt_langs = [args.source_lang], [args.target_lang]
    if args.fixed_dictionary is not None:
        fixed = load_dictionary(args.fixed_dictionary)
        return {lang: fixed for lang in src_langs + tgt_langs}
    paths = split_paths(args.data)
    if not paths:
        raise DataError(f"{key('task.data')} is empty: give the directory fairseq-preprocess wrote (--destdir)")

    def load_dicts(langs: Sequence[str]) -> None:
        for lang in langs:
            dicts[lang] = load_dictionary(os.path.join(paths[0], f"dict.{lang}.txt"))
            first = next(iter(dicts.values()))
            for name in ("pad", "eos", "unk"):
                if getattr(dicts[lang], name)() != getattr(first, name)():
                    raise DataError(f"dict.{lang}.txt's {name} index differs from the other dictionaries'")
            logger.info(f"[{lang}] dictionary: {len(dicts[lang])} types")

    if args.source_dict is None:
        load_dicts(src_langs)
    if args.target_dict is None:
        load_dicts(tgt_langs)
    return dicts
