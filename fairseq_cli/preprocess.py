#!/usr/bin/env python3
"""fairseq-preprocess: build vocabularies and binarize text into mmap indexed datasets.

Same flags, file names and bytes as fairseq 0.12.2:

    --only-source, no -s:  dict.txt, train.bin/.idx, valid.bin/.idx, valid1..., test...
    -s en -t es:           dict.en.txt, dict.es.txt, train.en-es.en.bin/.idx, train.en-es.es.bin/.idx, ...

Input files are `<pref>.<lang>` (or `<pref>` when there is no language). A log of the run is
appended to `<destdir>/preprocess.log`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fairseq_lite.cli_utils import setup_logging, user_errors_exit
from fairseq_lite.data.binarizer import binarize_file
from fairseq_lite.data.dictionary import Dictionary, tokenize_line
from fairseq_lite.errors import ConfigError, DataError

logger = logging.getLogger("fairseq_cli.preprocess")

PROG = "fairseq-preprocess"
# Every --dataset-impl fairseq knows; only "mmap" (its default) is implemented here.
FAIRSEQ_DATASET_IMPLS = ("raw", "lazy", "cached", "mmap", "fasta", "huffman")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Build vocabularies and binarize training data (fairseq 0.12.2 compatible)."
    )
    group = parser.add_argument_group("Preprocessing")
    add = group.add_argument
    add("-s", "--source-lang", default=None, metavar="SRC", help="source language")
    add("-t", "--target-lang", default=None, metavar="TARGET", help="target language")
    add("--trainpref", metavar="FP", default=None, help="train file prefix (also used to build dictionaries)")
    add(
        "--validpref",
        metavar="FP",
        default=None,
        help="comma separated, valid file prefixes (words missing from train set are replaced with <unk>)",
    )
    add(
        "--testpref",
        metavar="FP",
        default=None,
        help="comma separated, test file prefixes (words missing from train set are replaced with <unk>)",
    )
    add("--align-suffix", metavar="FP", default=None, help="alignment file suffix (not supported)")
    add("--destdir", metavar="DIR", default="data-bin", help="destination dir")
    add(
        "--thresholdtgt",
        metavar="N",
        default=0,
        type=int,
        help="map words appearing less than threshold times to unknown",
    )
    add(
        "--thresholdsrc",
        metavar="N",
        default=0,
        type=int,
        help="map words appearing less than threshold times to unknown",
    )
    add("--tgtdict", metavar="FP", help="reuse given target dictionary")
    add("--srcdict", metavar="FP", help="reuse given source dictionary")
    add("--nwordstgt", metavar="N", default=-1, type=int, help="number of target words to retain")
    add("--nwordssrc", metavar="N", default=-1, type=int, help="number of source words to retain")
    add("--alignfile", metavar="ALIGN", default=None, help="an alignment file (not supported)")
    add(
        "--dataset-impl",
        metavar="FORMAT",
        default="mmap",
        help="output dataset implementation (only 'mmap' is supported)",
    )
    add("--joined-dictionary", action="store_true", help="Generate joined dictionary")
    add("--only-source", action="store_true", help="Only process the source language")
    add("--padding-factor", metavar="N", default=8, type=int, help="Pad dictionary size to be multiple of N")
    add("--workers", metavar="N", default=1, type=int, help="number of parallel workers")
    add("--dict-only", action="store_true", help="if true, only builds a dictionary and then exits")

    # Options every fairseq command accepts; scripts pass some of them to preprocess too.
    compat = parser.add_argument_group("accepted for fairseq compatibility (no effect)")
    compat.add_argument("--task", metavar="TASK", default="translation")
    compat.add_argument("--seed", type=int, default=1)
    compat.add_argument("--cpu", action="store_true")
    compat.add_argument("--no-progress-bar", action="store_true")
    compat.add_argument("--log-interval", type=int, default=100)
    compat.add_argument("--log-format", default=None)
    compat.add_argument("--user-dir", default=None, help=argparse.SUPPRESS)
    return parser


# ---------------------------------------------------------------- file names (as fairseq)


def _lang_file(prefix: str, lang: str | None) -> str:
    return f"{prefix}.{lang}" if lang else prefix


def _dict_path(lang: str | None, destdir: str) -> str:
    return os.path.join(destdir, _lang_file("dict", lang) + ".txt")


def dataset_dest_prefix(args: argparse.Namespace, output_prefix: str, lang: str | None) -> str:
    base = os.path.join(args.destdir, output_prefix)
    if lang is not None:
        return f"{base}.{args.source_lang}-{args.target_lang}.{lang}"
    if args.only_source:
        return base
    return f"{base}.{args.source_lang}-{args.target_lang}"


def _splits(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """(flag, input prefix, output name) for every dataset to write, in fairseq's order."""
    splits = []
    if args.trainpref:
        splits.append(("--trainpref", args.trainpref, "train"))
    for flag, value, name in (("--validpref", args.validpref, "valid"), ("--testpref", args.testpref, "test")):
        if value:
            for k, prefix in enumerate(value.split(",")):
                splits.append((flag, prefix, f"{name}{k}" if k > 0 else name))
    return splits


# ---------------------------------------------------------------- checks, before writing anything


def _check_args(args: argparse.Namespace) -> None:
    if args.dataset_impl != "mmap":
        known = "is not supported by fairseq-lite" if args.dataset_impl in FAIRSEQ_DATASET_IMPLS else "is unknown"
        raise ConfigError(f"--dataset-impl {args.dataset_impl!r} {known}; the only supported format is 'mmap'")
    if args.alignfile:
        raise ConfigError("--alignfile is not supported by fairseq-lite")
    if args.align_suffix:
        raise ConfigError("--align-suffix (alignment datasets) is not supported by fairseq-lite")
    if args.user_dir:
        raise ConfigError("--user-dir is not supported by fairseq-preprocess in fairseq-lite")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if not args.only_source and not (args.source_lang and args.target_lang):
        raise ConfigError("both --source-lang (-s) and --target-lang (-t) are needed, unless --only-source is given")
    if args.joined_dictionary and args.srcdict and args.tgtdict:
        raise ConfigError("cannot use both --srcdict and --tgtdict with --joined-dictionary")
    target = not args.only_source
    if not args.trainpref:
        if args.joined_dictionary:
            missing = None if (args.srcdict or args.tgtdict) else "--srcdict"
        else:
            missing = "--srcdict" if not args.srcdict else ("--tgtdict" if target and not args.tgtdict else None)
        if missing:
            raise ConfigError(f"--trainpref must be set if {missing} is not specified")
    for flag in ("srcdict", "tgtdict"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            raise DataError(f"--{flag} file not found: {path}")

    langs = [args.source_lang] + ([args.target_lang] if target else [])
    splits = _splits(args)
    if args.dict_only:
        splits = [s for s in splits if s[2] == "train"]
    for flag, prefix, _ in splits:
        for lang in langs:
            path = _lang_file(prefix, lang)
            if not os.path.isfile(path):
                raise DataError(f"input file not found: {path} (from {flag} {prefix})")


def _prepare_destdir(args: argparse.Namespace) -> None:
    destdir = args.destdir
    try:
        os.makedirs(destdir, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create --destdir {destdir}: {e.strerror}") from None
    if not os.path.isdir(destdir):
        raise DataError(f"--destdir {destdir} exists and is not a directory")
    if not os.access(destdir, os.W_OK | os.X_OK):
        raise DataError(f"--destdir {destdir} is not writable")
    dicts = [(args.source_lang, "--srcdict", args.srcdict)]
    if not args.only_source:
        dicts.append((args.target_lang, "--tgtdict", args.tgtdict))
    for lang, flag, given in dicts:
        path = _dict_path(lang, destdir)
        # fairseq refuses too: a second run would silently mix two vocabularies in one destdir.
        if not given and os.path.exists(path):
            raise DataError(
                f"{path} already exists; remove it, choose another --destdir, or reuse it with {flag} {path}"
            )


# ---------------------------------------------------------------- dictionaries and datasets


def _build_dictionary(filenames: Sequence[str], args: argparse.Namespace, src: bool) -> Dictionary:
    d = Dictionary()
    for filename in filenames:
        Dictionary.add_file_to_dictionary(filename, d, tokenize_line, args.workers)
    d.finalize(
        threshold=args.thresholdsrc if src else args.thresholdtgt,
        nwords=args.nwordssrc if src else args.nwordstgt,
        padding_factor=args.padding_factor,
    )
    return d


def _make_dictionaries(args: argparse.Namespace) -> tuple[Dictionary, Dictionary | None]:
    target = not args.only_source
    train = lambda lang: _lang_file(args.trainpref, lang)  # noqa: E731
    if args.joined_dictionary:
        if args.srcdict or args.tgtdict:
            src_dict = Dictionary.load(args.srcdict or args.tgtdict)
        else:
            files = list(dict.fromkeys(train(lang) for lang in (args.source_lang, args.target_lang)))
            src_dict = _build_dictionary(files, args, src=True)
        return src_dict, src_dict if target else None

    if args.srcdict:
        src_dict = Dictionary.load(args.srcdict)
    else:
        src_dict = _build_dictionary([train(args.source_lang)], args, src=True)
    tgt_dict = None
    if target:
        if args.tgtdict:
            tgt_dict = Dictionary.load(args.tgtdict)
        else:
            tgt_dict = _build_dictionary([train(args.target_lang)], args, src=False)
    return src_dict, tgt_dict


def _make_all(lang: str | None, vocab: Dictionary, args: argparse.Namespace) -> None:
    for _, prefix, name in _splits(args):
        logger.info(f"[{lang}] Dictionary: {len(vocab)} types")
        input_file = _lang_file(prefix, lang)
        summary = binarize_file(input_file, vocab, dataset_dest_prefix(args, name, lang), num_workers=args.workers)
        logger.info(f"[{lang}] {input_file}: {summary} (by {vocab.unk_word})")


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> None:
    args = argv if isinstance(argv, argparse.Namespace) else get_parser().parse_args(argv)
    _check_args(args)
    _prepare_destdir(args)

    logger.setLevel(os.environ.get("LOGLEVEL", "INFO").upper())
    # Like fairseq, the log file only gets the bare messages, appended run after run.
    log_file = logging.FileHandler(os.path.join(args.destdir, "preprocess.log"), encoding="utf-8")
    logger.addHandler(log_file)
    try:
        logger.info(args)
        src_dict, tgt_dict = _make_dictionaries(args)
        src_dict.save(_dict_path(args.source_lang, args.destdir))
        if tgt_dict is not None:
            tgt_dict.save(_dict_path(args.target_lang, args.destdir))
        if args.dict_only:
            return
        _make_all(args.source_lang, src_dict, args)
        if tgt_dict is not None:
            _make_all(args.target_lang, tgt_dict, args)
        logger.info(f"Wrote preprocessed data to {args.destdir}")
    finally:
        logger.removeHandler(log_file)
        log_file.close()


@user_errors_exit(PROG)
def cli_main(argv: Sequence[str] | None = None) -> None:
    setup_logging()
    main(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    cli_main()
