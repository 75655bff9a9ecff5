"""The multilingual settings as fairseq's parser leaves them in `args`: flags given as text (a dict literal, a
comma list, "True"/"False", a file holding the value) turned into Python values, checked once, each mistake a
one-line ConfigError naming its flag. Values that are already parsed (a checkpoint's) pass unchanged."""

import ast
import os
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fairseq_lite.data.multilingual.multilingual_utils import EncoderLangtok, LangTokSpec, LangTokStyle
from fairseq_lite.data.multilingual.sampling_method import SAMPLING_METHODS
from fairseq_lite.errors import ConfigError, key, setting

__all__ = [
    "csv_str_list",
    "eval_bool",
    "eval_str_dict",
    "file_contents",
    "normalize_args",
    "parse_lang_pairs",
]

TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no", "none", "")


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def eval_bool(value: Any, name: str = "value") -> bool:
    """fairseq's `--left-pad-source True|False` (a string it evaluates), or a bool."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ConfigError(f"{setting(name, repr(value))} is invalid: it must be True or False")


def eval_str_dict(value: Any, name: str = "value") -> dict[str, Any] | None:
    """A dict given as a Python literal ('{"main": ("src", "tgt")}'), as fairseq's eval_str_dict reads it
    (with a literal parser: nothing is executed)."""
    value = _plain(value)
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = ast.literal_eval(str(value))
    except (ValueError, SyntaxError):
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigError(
            f"{setting(name, repr(value))} is invalid: it must be a dict literal like '{{\"key\": value}}'"
        )
    return parsed


def csv_str_list(value: Any, name: str = "value") -> list[str] | None:
    """'en,de,fr' (or a list) as ['en', 'de', 'fr']."""
    value = _plain(value)
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)):
        raise ConfigError(f"{setting(name, repr(value))} is invalid: it must be a comma-separated list")
    return [str(item).strip() for item in items if str(item).strip()]


def file_contents(value: Any) -> Any:
    """fairseq's FileContentsAction: a value naming a file stands for what the file holds."""
    if isinstance(value, str) and value and os.path.isfile(os.path.expanduser(value)):
        with open(os.path.expanduser(value), encoding="utf-8") as f:
            return f.read().strip()
    return value


def parse_lang_pairs(value: Any, name: str = "task.lang_pairs") -> list[str] | None:
    """--lang-pairs 'en-de,de-en' (or a file holding it, or a list) as ['en-de', 'de-en'], each checked."""
    pairs = csv_str_list(file_contents(_plain(value)), name)
    for pair in pairs or ():
        parts = pair.split("-")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"{key(name)}: '{pair}' is not a language pair like en-de")
    return pairs


def _spec_pair(name: str, category: str, value: Any) -> tuple[str | None, str | None]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(
            f"{key(name)}: the entry of '{category}' must be a (source spec, target spec) pair like ('src', 'tgt')"
        )
    src_spec, tgt_spec = (None if v in (None, "None", "") else str(v) for v in value)
    if src_spec is not None and not src_spec.startswith((EncoderLangtok.src.value, EncoderLangtok.tgt.value)):
        raise ConfigError(f"{key(name)}: the source spec of '{category}' must start with src or tgt, not {src_spec!r}")
    return src_spec, tgt_spec


def _choice(args: Any, name: str, choices: tuple[str, ...], allow_none: bool = False) -> None:
    value = getattr(args, name)
    if value is None and allow_none:
        return
    if value not in choices:
        raise ConfigError(f"{setting('task.' + name, repr(value))} is invalid: it must be one of: {', '.join(choices)}")


def _positive(args: Any, name: str) -> None:
    value = getattr(args, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{setting('task.' + name, repr(value))} is invalid: it must be a positive number of items")


def normalize_args(args: Any) -> Any:
    """Parse and check the settings in place (fairseq's parser, then its `prepare`); returns `args`."""
    args.left_pad_source = eval_bool(args.left_pad_source, "task.left_pad_source")
    args.left_pad_target = eval_bool(args.left_pad_target, "task.left_pad_target")
    if isinstance(args.data, str):
        args.data = file_contents(args.data)  # fairseq reads the data paths from a file, too
    args.lang_pairs = parse_lang_pairs(args.lang_pairs)
    args.langs = csv_str_list(args.langs, "task.langs")
    args.langtoks_specs = csv_str_list(args.langtoks_specs, "task.langtoks_specs") or [LangTokSpec.main.value]
    args.sampling_weights = eval_str_dict(args.sampling_weights, "task.sampling_weights")
    args.extra_data = eval_str_dict(args.extra_data, "task.extra_data")
    args.extra_lang_pairs = eval_str_dict(args.extra_lang_pairs, "task.extra_lang_pairs")
    _choice(args, "sampling_method", SAMPLING_METHODS)
    _choice(args, "lang_tok_style", tuple(s.value for s in LangTokStyle))
    _choice(args, "encoder_langtok", tuple(s.value for s in EncoderLangtok), allow_none=True)
    _positive(args, "virtual_epoch_size")
    _positive(args, "virtual_data_size")
    if not float(args.sampling_temperature) > 0:
        raise ConfigError(f"{setting('task.sampling_temperature', args.sampling_temperature)} must be positive")
    if args.langs and args.lang_dict:
        raise ConfigError(f"{key('task.langs')} and {key('task.lang_dict')} can not both be specified")
    if args.load_alignments:
        raise ConfigError(
            f"{key('task.load_alignments')} is not supported by translation_multi_simple_epoch in fairseq-lite "
            "(alignment supervision needs the translation task)"
        )
    if args.lang_tok_replacing_bos_eos and args.left_pad_target:
        raise ConfigError(
            f"{key('task.lang_tok_replacing_bos_eos')} puts the language token first in prev_output_tokens, "
            f"which needs {setting('task.left_pad_target', False)} (as in fairseq)"
        )

    langtoks = eval_str_dict(args.langtoks, "task.langtoks") or {}
    langtoks = {str(category): _spec_pair("task.langtoks", str(category), v) for category, v in langtoks.items()}
    if "main" not in langtoks:
        # the main data's tokens: --encoder-langtok's language on the source, the target's with --decoder-langtok
        langtoks["main"] = (args.encoder_langtok or None, "tgt" if args.decoder_langtok else None)
    args.langtoks = langtoks

    extra_data, extra_pairs = args.extra_data or {}, args.extra_lang_pairs or {}
    for category in extra_data:
        if "mono_" in str(category):
            raise ConfigError(
                f"{key('task.extra_data')}: monolingual data ('{category}') is not supported by fairseq-lite's "
                "translation_multi_simple_epoch; give bitext categories (e.g. 'mined')"
            )
        if category not in extra_pairs:
            raise ConfigError(
                f"{key('task.extra_data')}: '{category}' has no language pairs; list them in "
                f'{key("task.extra_lang_pairs")} ({{"{category}": "en-de,de-en"}})'
            )
    for category, pairs in extra_pairs.items():
        if category not in extra_data:
            raise ConfigError(
                f"{key('task.extra_lang_pairs')}: '{category}' has no data; give its path in {key('task.extra_data')}"
            )
        parse_lang_pairs(pairs, "task.extra_lang_pairs")
    if args.sampling_weights is not None:
        for name, weight in args.sampling_weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
                raise ConfigError(f"{key('task.sampling_weights')}: the weight of '{name}' must be a number >= 0")
    return args


def extra_lang_pairs(args: Any) -> list[str]:
    """The language pairs of the extra data categories, in a fixed order."""
    pairs = {p for v in (args.extra_lang_pairs or {}).values() for p in parse_lang_pairs(v, "task.extra_lang_pairs")}
    return sorted(pairs)
