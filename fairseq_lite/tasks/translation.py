"""Task `translation`: source -> target sentence pairs binarized by fairseq-preprocess -s SRC -t TGT.

Data directory layout (fairseq's): dict.{src}.txt, dict.{tgt}.txt and, per split,
{split}.{src}-{tgt}.{src}.bin/.idx and {split}.{src}-{tgt}.{tgt}.bin/.idx (the pair may also be
named {tgt}-{src}, as when the data was binarized for the reverse direction). With `load_alignments`, a
split's word alignments {split}.align.{src}-{tgt}.bin/.idx (fairseq-preprocess --align-suffix) go into
its batches, for label_smoothed_cross_entropy_with_alignment; a split without them (fairseq's rule) has none.

With `eval_bleu`, validation also decodes every batch and logs sacrebleu's sufficient statistics
(`_bleu_sys_len`, `_bleu_ref_len`, `_bleu_counts_{0..3}`, `_bleu_totals_{0..3}`); summed over
batches they give the corpus BLEU in `reduce_metrics`.
"""

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import II, MISSING, OmegaConf
from torch import Tensor

from fairseq_lite.criterions.fairseq_criterion import sum_logs
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.data.indexed_dataset import MMapIndexedDataset
from fairseq_lite.data.indexed_dataset_loading import check_indexed_dataset
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.dataclass import FairseqDataclass, cfg_field
from fairseq_lite.dataclass.configs import GenerationConfig
from fairseq_lite.errors import ConfigError, DataError, key, setting
from fairseq_lite.logging import metrics
from fairseq_lite.registry import TOKENIZER_REGISTRY, component_node, register_task
from fairseq_lite.tasks.fairseq_task import FairseqTask
from fairseq_lite.tasks.langpair_loading import alignment_prefix, load_langpair_dataset, pair_prefix
from fairseq_lite.tasks.language_modeling import data_paths

logger = logging.getLogger(__name__)

EVAL_BLEU_ORDER = 4


@dataclass
class TranslationConfig(FairseqDataclass):
    data: str | None = cfg_field(
        MISSING,
        "colon separated path to data directories list, will be iterated upon during epochs in "
        "round-robin manner; however, valid and test data are always in the first directory",
    )
    source_lang: str | None = cfg_field(
        None, "source language (inferred from the data directory if unset)", argparse_alias="-s"
    )
    target_lang: str | None = cfg_field(
        None, "target language (inferred from the data directory if unset)", argparse_alias="-t"
    )
    load_alignments: bool = cfg_field(False, "load the binarized alignments")
    left_pad_source: bool = cfg_field(True, "pad the source on the left")
    left_pad_target: bool = cfg_field(False, "pad the target on the left")
    max_source_positions: int = cfg_field(1024, "max number of tokens in the source sequence")
    max_target_positions: int = cfg_field(1024, "max number of tokens in the target sequence")
    upsample_primary: int = cfg_field(
        -1,
        "the amount of upsample primary dataset: with train1, train2, ... next to train, train is repeated this "
        "many times (-1: once)",
    )
    truncate_source: bool = cfg_field(False, "truncate source to max-source-positions")
    num_batch_buckets: int = cfg_field(
        0,
        "if >0, then bucket source and target lengths into N buckets and pad accordingly; this is useful "
        "on TPUs to minimize the number of compilations",
    )
    train_subset: str = II("dataset.train_subset")
    required_seq_len_multiple: int = cfg_field(
        1, "pad the input to encoder such that the sequence length is divisible by multiple"
    )
    eval_bleu: bool = cfg_field(False, "evaluation with BLEU scores")
    eval_bleu_args: str | None = cfg_field(
        "{}", 'generation args for BLUE scoring, e.g., \'{"beam": 4, "lenpen": 0.6}\', as JSON string'
    )
    eval_bleu_detok: str = cfg_field(
        "space",
        "detokenize before computing BLEU (e.g., 'moses'); required if using --eval-bleu; use 'space' "
        "to disable detokenization",
    )
    eval_bleu_detok_args: str | None = cfg_field("{}", "args for building the tokenizer, if needed, as JSON string")
    eval_tokenized_bleu: bool = cfg_field(False, "compute tokenized BLEU instead of sacrebleu")
    eval_bleu_remove_bpe: str | None = cfg_field(None, "remove BPE before computing BLEU", argparse_const="@@ ")
    eval_bleu_print_samples: bool = cfg_field(False, "print sample generations during validation")


# {split}.{src}-{tgt}.{lang}.bin/.idx, or the raw text {split}.{src}-{tgt}.{lang} (--dataset-impl raw)
_PAIR_FILE = re.compile(r"^[^.]+\.([^.\-]+)-([^.\-]+)\.([^.]+)(?:\.bin|\.idx)?$")


def infer_language_pair(path: str, source_lang: str | None = None, target_lang: str | None = None) -> tuple[str, str]:
    """The (src, tgt) pair of the binarized files in `path`, completing whichever side is unset."""
    matches = (m.groups() for m in map(_PAIR_FILE.match, os.listdir(path)) if m)
    found = sorted({(a, b) for a, b, lang in matches if lang in (a, b)})
    if source_lang is None and target_lang is None:
        candidates = found  # {split}.en-es.* means en -> es
    else:
        # One side given: either direction of a binarized pair can complete it.
        candidates = sorted(
            {
                (s, t)
                for a, b in found
                for s, t in ((a, b), (b, a))
                if source_lang in (None, s) and target_lang in (None, t)
            }
        )
    if len(candidates) == 1:
        return candidates[0]
    listing = ", ".join(f"{s}-{t}" for s, t in found) or "none"
    raise DataError(
        f"{key('task.data')}: cannot infer the language pair from '{path}' (binarized pairs found: {listing}); "
        f"set {key('task.source_lang')} and {key('task.target_lang')}"
    )


def load_dictionary(path: str) -> Dictionary:
    if not os.path.isfile(path):
        raise DataError(
            f"{key('task.data')}: no dictionary at '{path}'; binarize the data with fairseq-preprocess "
            f"--source-lang SRC --target-lang TGT"
        )
    return Dictionary.load(path)


def bleu_from_stats(agg: dict[str, float]) -> float | None:
    """Corpus BLEU (sacrebleu, exp smoothing, rounded to 2 decimals as fairseq) from summed stats."""
    totals = [int(agg.get(f"_bleu_totals_{i}", 0)) for i in range(EVAL_BLEU_ORDER)]
    if max(totals) <= 0:
        return None
    from sacrebleu.metrics import BLEU

    counts = [int(agg.get(f"_bleu_counts_{i}", 0)) for i in range(EVAL_BLEU_ORDER)]
    score = BLEU.compute_bleu(
        correct=counts,
        total=totals,
        sys_len=int(agg.get("_bleu_sys_len", 0)),
        ref_len=int(agg.get("_bleu_ref_len", 0)),
        smooth_method="exp",
    ).score
    return round(score, 2)


@register_task("translation", dataclass=TranslationConfig)
class TranslationTask(FairseqTask):
    def __init__(self, cfg: Any, src_dict: Dictionary, tgt_dict: Dictionary):
        super().__init__(cfg)
        self.src_dict = src_dict
        self.tgt_dict = tgt_dict
        self.detokenize: Callable[[str], str] = lambda text: text
        self.bleu_gen_args: Any = {}
        self._bleu_generator: Any = None

    # --- checks before a run ----------------------------------------------------------------
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.eval_bleu:
            try:
                import sacrebleu  # noqa: F401
            except ImportError:
                raise ConfigError(f"{key('task.eval_bleu')} needs sacrebleu: pip install sacrebleu") from None
            _generation_options(cfg.eval_bleu_args)
            _parse_json("task.eval_bleu_detok_args", cfg.eval_bleu_detok_args)
            _detokenizer_entry(cfg.eval_bleu_detok)

    @classmethod
    def check_data(cls, cfg: Any, train_subset: str | None, valid_subsets: Sequence[str] = ()) -> None:
        paths = _data_dirs(cfg)
        src, tgt = cfg.source_lang, cfg.target_lang
        if src is None or tgt is None:
            src, tgt = infer_language_pair(paths[0], src, tgt)
        _load_dictionaries(paths[0], src, tgt)
        # Training reads one directory per epoch, round robin; validation the first one.
        wanted = [(path, train_subset) for path in paths if train_subset] + [(paths[0], s) for s in valid_subsets]
        for path, split in wanted:
            prefix = pair_prefix(path, split, src, tgt)
            for lang in (src, tgt):
                if MMapIndexedDataset.exists(prefix + lang):
                    check_indexed_dataset(prefix + lang)  # reads and checks the index, maps the data
            if cfg.load_alignments and split == train_subset:
                align = alignment_prefix(path, split, src, tgt)
                if not MMapIndexedDataset.exists(align):
                    raise DataError(
                        f"{key('task.load_alignments')}: no alignments {os.path.basename(align)}.bin/.idx in "
                        f"{path}; binarize them with fairseq-preprocess --align-suffix"
                    )
                check_indexed_dataset(align)

    @classmethod
    def validation_metrics(cls, cfg: Any, criterion_metrics: list[str]) -> list[str]:
        return criterion_metrics + (["bleu"] if cfg.eval_bleu else [])

    @classmethod
    def setup_task(cls, cfg: Any, **kwargs: Any) -> "TranslationTask":
        cls.check_config(cfg)
        paths = _data_dirs(cfg)
        if cfg.source_lang is None or cfg.target_lang is None:
            # Recorded in the config so that checkpoints name the pair explicitly.
            cfg.source_lang, cfg.target_lang = infer_language_pair(paths[0], cfg.source_lang, cfg.target_lang)
        src_dict, tgt_dict = _load_dictionaries(paths[0], cfg.source_lang, cfg.target_lang)
        logger.info(f"[{cfg.source_lang}] dictionary: {len(src_dict)} types")
        logger.info(f"[{cfg.target_lang}] dictionary: {len(tgt_dict)} types")
        return cls(cfg, src_dict, tgt_dict)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs: Any) -> None:
        paths = data_paths(self.cfg.data)
        if split != self.cfg.train_subset:
            paths = paths[:1]  # valid and test data always come from the first directory
        data_path = paths[(epoch - 1) % len(paths)]
        self.datasets[split] = load_langpair_dataset(
            data_path,
            split,
            self.cfg.source_lang,
            self.src_dict,
            self.cfg.target_lang,
            self.tgt_dict,
            combine=combine,
            upsample_primary=self.cfg.upsample_primary,
            left_pad_source=self.cfg.left_pad_source,
            left_pad_target=self.cfg.left_pad_target,
            max_source_positions=self.cfg.max_source_positions,
            max_target_positions=self.cfg.max_target_positions,
            load_alignments=self.cfg.load_alignments,
            truncate_source=self.cfg.truncate_source,
            num_buckets=self.cfg.num_batch_buckets,
            shuffle=(split != "test"),
            pad_to_multiple=self.cfg.required_seq_len_multiple,
        )

    def build_dataset_for_inference(self, src_tokens: list[Tensor], src_lengths: list[int]) -> LanguagePairDataset:
        return LanguagePairDataset(src_tokens, src_lengths, self.source_dictionary, tgt_dict=self.target_dictionary)

    def max_positions(self) -> tuple[int, int]:
        return (self.cfg.max_source_positions, self.cfg.max_target_positions)

    @property
    def source_dictionary(self) -> Dictionary:
        return self.src_dict

    @property
    def target_dictionary(self) -> Dictionary:
        return self.tgt_dict

    # --- BLEU during validation -------------------------------------------------------------
    def build_model(self, model_cfg: Any) -> Any:
        model = super().build_model(model_cfg)
        if self.cfg.eval_bleu:
            self._setup_bleu()
        return model

    def _setup_bleu(self) -> None:
        # fairseq's: eval_bleu_args are generation options ('{"beam": 4, "lenpen": 0.6}'), the rest defaults
        self.bleu_gen_args = _generation_options(self.cfg.eval_bleu_args)
        detok_args = _parse_json("task.eval_bleu_detok_args", self.cfg.eval_bleu_detok_args)
        name = self.cfg.eval_bleu_detok
        if _detokenizer_entry(name) is None:
            self.detokenize = lambda text: text  # fairseq's "space" tokenizer: nothing to undo
        else:
            tokenizer = TOKENIZER_REGISTRY.build(OmegaConf.merge(component_node("tokenizer", name), detok_args))
            self.detokenize = tokenizer.decode

    def valid_step(self, sample: dict[str, Any], model: Any, criterion: Any) -> tuple[Any, int, dict[str, Any]]:
        loss, sample_size, logging_output = super().valid_step(sample, model, criterion)
        if self.cfg.eval_bleu:
            bleu = self._inference_with_bleu(sample, model)
            logging_output["_bleu_sys_len"] = bleu.sys_len
            logging_output["_bleu_ref_len"] = bleu.ref_len
            for i in range(EVAL_BLEU_ORDER):
                logging_output[f"_bleu_counts_{i}"] = bleu.counts[i]
                logging_output[f"_bleu_totals_{i}"] = bleu.totals[i]
        return loss, sample_size, logging_output

    def _inference_with_bleu(self, sample: dict[str, Any], model: Any) -> Any:
        import sacrebleu

        def decode(tokens: Tensor, unk_string: str) -> str:
            text = self.tgt_dict.string(tokens.int().cpu(), self.cfg.eval_bleu_remove_bpe, unk_string=unk_string)
            return self.detokenize(text)

        model.eval()
        # the beam search of fairseq-generate, with eval_bleu_args' options (built once per model, as fairseq)
        if self._bleu_generator is None or self._bleu_generator.model.models[0] is not model:
            self._bleu_generator = self.build_generator([model], self.bleu_gen_args)
        hypos = self.inference_step(self._bleu_generator, [model], sample)
        hyps, refs = [], []
        for sentence, ref in zip(hypos, sample["target"]):
            hyps.append(decode(sentence[0]["tokens"], "UNKNOWNTOKENINHYP"))
            # Distinct unk strings: an <unk> in the reference must never count as a match.
            refs.append(decode(ref[ref.ne(self.tgt_dict.pad())], "UNKNOWNTOKENINREF"))
        if self.cfg.eval_bleu_print_samples:
            logger.info("example hypothesis: " + hyps[0])
            logger.info("example reference: " + refs[0])
        if self.cfg.eval_tokenized_bleu:
            return sacrebleu.corpus_bleu(hyps, [refs], tokenize="none")
        return sacrebleu.corpus_bleu(hyps, [refs])

    def reduce_metrics(self, logging_outputs: list[dict[str, Any]], criterion: Any) -> None:
        """The criterion's statistics, plus "bleu" when validation decoded with eval_bleu: sacrebleu's
        statistics summed over what the aggregator saw, BLEU computed from them when read."""
        super().reduce_metrics(logging_outputs, criterion)
        if not self.cfg.eval_bleu:
            return
        names = ["_bleu_sys_len", "_bleu_ref_len"] + [
            f"_bleu_{kind}_{i}" for kind in ("counts", "totals") for i in range(EVAL_BLEU_ORDER)
        ]
        sums = {name: sum_logs(logging_outputs, name) for name in names}
        if max(sums[f"_bleu_totals_{i}"] for i in range(EVAL_BLEU_ORDER)) <= 0:
            return  # nothing decoded (training updates, or an empty batch)
        for name, value in sums.items():
            metrics.log_scalar_sum(name, value)
        metrics.log_derived("bleu", lambda meters: bleu_from_stats({n: meters[n].sum for n in names if n in meters}))


def _data_dirs(cfg: Any) -> list[str]:
    paths = data_paths(cfg.data)
    if not paths:
        raise DataError(f"{key('task.data')} is empty: give the directory fairseq-preprocess wrote (--destdir)")
    for path in paths:
        if not os.path.isdir(path):
            raise DataError(f"{key('task.data')}: data directory '{path}' does not exist")
    return paths


def _load_dictionaries(data_dir: str, src: str, tgt: str) -> tuple[Dictionary, Dictionary]:
    src_dict = load_dictionary(os.path.join(data_dir, f"dict.{src}.txt"))
    tgt_dict = load_dictionary(os.path.join(data_dir, f"dict.{tgt}.txt"))
    for name in ("pad", "eos", "unk"):
        if getattr(src_dict, name)() != getattr(tgt_dict, name)():
            raise DataError(f"dict.{src}.txt and dict.{tgt}.txt disagree on the {name} index")
    return src_dict, tgt_dict


def _detokenizer_entry(name: str | None) -> Any:
    """The registered tokenizer eval_bleu_detok names (None for "space"/none: nothing to undo)."""
    import fairseq_lite.data.encoders  # noqa: F401  (registers the tokenizers eval_bleu_detok may name)

    if name in TOKENIZER_REGISTRY:
        return TOKENIZER_REGISTRY.get(name)
    if name in (None, "space", "none"):
        return None
    raise ConfigError(
        f"{setting('task.eval_bleu_detok', repr(name))} is not available (tokenizers: "
        f"{', '.join(TOKENIZER_REGISTRY.choices())})"
    )


def _generation_options(text: str | None) -> Any:
    """task.eval_bleu_args as a GenerationConfig; a key that is no generation option is a one-line error."""
    args = _parse_json("task.eval_bleu_args", text)
    node = OmegaConf.structured(GenerationConfig)
    for name, value in args.items():
        if name not in node:
            raise ConfigError(
                f"{key('task.eval_bleu_args')}: '{name}' is not a generation option (e.g. beam, lenpen, max_len_b)"
            )
        try:
            node[name] = value
        except Exception as e:
            raise ConfigError(f"{key('task.eval_bleu_args')}: {name}={value!r} is invalid: {e}") from None
    return node


def _parse_json(name: str, text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError as e:
        raise ConfigError(f"{setting(name, repr(text))} is not valid JSON: {e}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{setting(name, repr(text))} must be a JSON object, e.g. '{{\"max_len_b\": 50}}'")
    return value
