"""fairseq-preprocess's run: build vocabularies and binarize text into mmap indexed datasets.

Same flags, file names and bytes as fairseq 0.12.2:

    --only-source, no -s:  dict.txt, train.bin/.idx, valid.bin/.idx, valid1..., test...
    -s en -t es:           dict.en.txt, dict.es.txt, train.en-es.en.bin/.idx, train.en-es.es.bin/.idx, ...
    --align-suffix align:  also train.align.en-es.bin/.idx from <trainpref>.align, ... (data/alignments.py)

Input files are `<pref>.<lang>` (or `<pref>` when there is no language). A log of the run is
appended to `<destdir>/preprocess.log`.
"""

import argparse
import logging
import os
from collections.abc import Sequence

from fairseq_lite.data.alignments import binarize_alignments
from fairseq_lite.data.binarizer import binarize_file
from fairseq_lite.data.dictionary import Dictionary, tokenize_line
from fairseq_lite.errors import ConfigError, DataError
from fairseq_lite.file_io import atomic_write, remove_stale_temp_files

logger = logging.getLogger("fairseq_cli.preprocess")

# Every --dataset-impl fairseq knows; "mmap" (its default) and "raw" (the text copied, for tasks that
# read text themselves, as fairseq's classifying-names tutorial does) are implemented here.
FAIRSEQ_DATASET_IMPLS = ("raw", "lazy", "cached", "mmap", "fasta", "huffman")


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
    if args.dataset_impl not in ("mmap", "raw", "lazy", "cached"):
        known = "is not supported by fairseq-lite" if args.dataset_impl in FAIRSEQ_DATASET_IMPLS else "is unknown"
        raise ConfigError(f"--dataset-impl {args.dataset_impl!r} {known}; supported formats: mmap, lazy, cached, raw")
    if args.align_suffix and args.dataset_impl in ("lazy", "cached"):
        raise ConfigError(f"--align-suffix writes mmap alignments: use --dataset-impl mmap, not {args.dataset_impl}")
    if args.dataset_impl == "raw" and args.only_source:
        raise ConfigError("--dataset-impl raw copies a language pair's text (-s/-t); with --only-source use mmap")
    if args.alignfile:
        raise ConfigError("--alignfile is not supported by fairseq-lite")
    if args.align_suffix and args.only_source:
        raise ConfigError("--align-suffix aligns a language pair: give -s/-t, not --only-source")
    if args.align_suffix and args.dataset_impl == "raw":
        raise ConfigError("--align-suffix writes binarized alignments: use --dataset-impl mmap, not raw")
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
        if path:
            Dictionary.load(path)  # a malformed dictionary is one line now, before --destdir is touched

    langs = [args.source_lang] + ([args.target_lang] if target else [])
    splits = _splits(args)
    if args.dict_only:
        splits = [s for s in splits if s[2] == "train"]
    for flag, prefix, _ in splits:
        for lang in langs:
            path = _lang_file(prefix, lang)
            if not os.path.isfile(path):
                raise DataError(f"input file not found: {path} (from {flag} {prefix})")
    if args.align_suffix and not args.dict_only and not _alignment_files(args):
        wanted = ", ".join(f"{prefix}.{args.align_suffix}" for _, prefix, _ in splits)
        raise DataError(f"--align-suffix {args.align_suffix}: no alignment file found (looked for {wanted})")


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
        if args.dataset_impl == "raw":  # the text itself, under the pair's name: train.input-label.input
            with open(input_file, "rb") as source, atomic_write(dataset_dest_prefix(args, name, lang), "wb") as f:
                while chunk := source.read(1 << 20):
                    f.write(chunk)
            logger.info(f"[{lang}] {input_file}: copied as text (--dataset-impl raw)")
            continue
        summary = binarize_file(
            input_file,
            vocab,
            dataset_dest_prefix(args, name, lang),
            num_workers=args.workers,
            legacy_format=args.dataset_impl in ("lazy", "cached"),
        )
        logger.info(f"[{lang}] {input_file}: {summary} (by {vocab.unk_word})")


def _alignment_files(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(input file, output name) of each split that has `<pref>.<align_suffix>`; like fairseq, a split
    without one (a test set, say) simply gets no alignments."""
    found = []
    for _, prefix, name in _splits(args):
        path = f"{prefix}.{args.align_suffix}"
        if os.path.isfile(path):
            found.append((path, f"{name}.align"))
    return found


def _make_all_alignments(args: argparse.Namespace) -> None:
    for input_file, name in _alignment_files(args):
        num_lines = binarize_alignments(input_file, dataset_dest_prefix(args, name, None))
        logger.info(f"[alignments] {input_file}: parsed {num_lines} alignments")


def preprocess(args: argparse.Namespace) -> None:
    """Build the dictionaries and binarize every split, as the parsed fairseq-preprocess flags say;
    every check comes first, and every file is written atomically."""
    _check_args(args)
    _prepare_destdir(args)
    remove_stale_temp_files(args.destdir)  # left by a run that was killed while writing

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
        if args.align_suffix:
            _make_all_alignments(args)
        logger.info(f"Wrote preprocessed data to {args.destdir}")
    finally:
        logger.removeHandler(log_file)
        log_file.close()
