"""fairseq-generate's run: translate (or continue, for a language model) a binarized split with beam
search or sampling, print fairseq's S-/T-/H-/D-/P- lines and score the output with BLEU."""

import logging
import os
import sys
import time
from typing import Any, TextIO

import torch

from fairseq_lite.errors import ConfigError
from fairseq_lite.file_io import atomic_write
from fairseq_lite.inference.loading import GenerationSetup
from fairseq_lite.inference.output import alignment_line, hypothesis_lines, strip_pad
from fairseq_lite.registry import cfg_name
from fairseq_lite.scoring import build_scorer
from fairseq_lite.utils import load_align_dict, move_to_device, replace_unk, resolve_max_positions

logger = logging.getLogger("fairseq_cli.generate")

LOG_FORMAT = "%(asctime)s | %(levelname)s | %(name)s | %(message)s"


def generate(setup: GenerationSetup) -> dict[str, Any]:
    """Decode cfg.dataset.gen_subset; the lines go to stdout, or to <results_path>/generate-<subset>.txt
    (written atomically: a killed run leaves no half file)."""
    cfg = setup.cfg
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = 12000
    results_path = cfg.common_eval.results_path
    if results_path is None:
        return _generate(setup, sys.stdout)
    os.makedirs(results_path, exist_ok=True)
    final = os.path.join(results_path, f"generate-{cfg.dataset.gen_subset}.txt")
    with atomic_write(final, "w", encoding="utf-8") as out:
        # fairseq's log lines (the "Translated ..." summary among them) go to the results file too.
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        old_level = logger.level
        logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))
        try:
            result = _generate(setup, out)
        finally:
            logger.setLevel(old_level)
            logger.removeHandler(handler)
    logger.info(f"wrote {final}")
    return result


def _generate(setup: GenerationSetup, out: TextIO) -> dict[str, Any]:
    cfg, task, models, generator = setup.cfg, setup.task, setup.models, setup.generator
    subset = cfg.dataset.gen_subset
    task.load_dataset(subset)
    ds = cfg.dataset
    itr = task.get_batch_iterator(
        dataset=task.dataset(subset),
        max_tokens=ds.max_tokens,
        max_sentences=ds.batch_size,
        max_positions=resolve_max_positions(task.max_positions(), *(m.max_positions() for m in models)),
        ignore_invalid_inputs=ds.skip_invalid_size_inputs_valid_test,
        required_batch_size_multiple=ds.required_batch_size_multiple,
        seed=cfg.common.seed,
        num_shards=ds.num_shards,
        shard_id=ds.shard_id,
        num_workers=0,
        disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=False)

    src_dict = getattr(task, "source_dictionary", None)
    tgt_dict = task.target_dictionary
    post_process = cfg.common_eval.post_process
    quiet = cfg.common_eval.quiet
    strip = generator.symbols_to_strip_from_output
    decode_fn = setup.decode_fn
    scoring = cfg.scoring
    if cfg.generation.sacrebleu and cfg_name(scoring) in (None, "bleu"):
        scoring = "sacrebleu"  # what --sacrebleu's help says (fairseq 0.12.2 only silenced a warning)
    scorer = build_scorer(scoring, tgt_dict)
    prefix_size = cfg.generation.prefix_size
    align_dict = load_align_dict(cfg.generation.replace_unk)
    dataset = task.dataset(subset)
    # with raw text data, the original words (those the dictionary lacks too), as fairseq's --replace-unk
    original = getattr(getattr(dataset, "src", None), "get_original_text", None)
    original_target = getattr(getattr(dataset, "tgt", None), "get_original_text", None)

    num_sentences, num_tokens, gen_time = 0, 0, 0.0
    has_target = True
    for sample in itr:
        if not sample:
            continue
        if "net_input" not in sample:  # e.g. a multilingual task's batch of every pair, not of one direction
            raise ConfigError(
                f"the batches of {subset} have no net_input, so there is nothing to decode; a multilingual task needs "
                f"the direction: --source-lang and --target-lang"
            )
        sample = move_to_device(sample, setup.device)
        prefix_tokens = sample["target"][:, :prefix_size] if prefix_size > 0 else None
        start = time.perf_counter()
        hypos = task.inference_step(generator, models, sample, prefix_tokens=prefix_tokens)
        if setup.device.type == "cuda":
            torch.cuda.synchronize()
        gen_time += time.perf_counter() - start
        num_tokens += sum(len(h[0]["tokens"]) for h in hypos if h)

        for i, sample_id in enumerate(sample["id"].tolist()):
            has_target = sample.get("target") is not None
            src_tokens = strip_pad(sample["net_input"]["src_tokens"][i], tgt_dict.pad())
            src_text = src_dict.string(src_tokens, post_process) if src_dict is not None else ""
            if align_dict is not None and original is not None:
                src_text = original(sample_id)
            src_str = decode_fn(src_text)
            target_str = ""
            if has_target:
                target_tokens = strip_pad(sample["target"][i], tgt_dict.pad()).int().cpu()
                if align_dict is not None and original_target is not None:
                    target_str = decode_fn(original_target(sample_id))
                else:
                    target_str = decode_fn(
                        tgt_dict.string(target_tokens, post_process, escape_unk=True, extra_symbols_to_ignore=strip)
                    )
            replace = None
            if align_dict is not None:

                def replace(text: str, hypo: dict[str, Any], src_text: str = src_text) -> str:
                    return replace_unk(text, src_text, hypo.get("alignment") or [], align_dict, tgt_dict.unk_string())

            lines = []
            if src_dict is not None:
                lines.append(f"S-{sample_id}\t{src_str}")
            if has_target:
                lines.append(f"T-{sample_id}\t{target_str}")
            for j, hypo in enumerate(hypos[i][: cfg.generation.nbest]):
                hypo_lines, hypo_str, detok = hypothesis_lines(
                    sample_id, hypo, tgt_dict, post_process, strip, decode_fn, replace
                )
                lines += hypo_lines + alignment_line(sample_id, hypo, cfg.generation.print_alignment)
                if cfg.generation.print_step:
                    lines.append(f"I-{sample_id}\t{hypo['steps']}")
                if has_target and j == 0:
                    # Token-level BLEU compares ids, unless the text was changed by --post-process.
                    if hasattr(scorer, "add") and post_process is None and align_dict is not None:
                        # the replaced words as ids, new ones added to the dictionary, as fairseq scores them
                        scorer.add(
                            tgt_dict.encode_line(target_str, add_if_not_exist=True),
                            tgt_dict.encode_line(hypo_str, add_if_not_exist=True),
                        )
                    elif hasattr(scorer, "add") and post_process is None:
                        scorer.add(target_tokens, hypo["tokens"].int().cpu())
                    else:
                        scorer.add_string(target_str, detok)
            if not quiet:
                print("\n".join(lines), file=out)
        num_sentences += int(sample.get("nsentences", sample["id"].numel()))

    logger.info("NOTE: hypothesis and token scores are output in base 2")
    sent_rate = num_sentences / gen_time if gen_time > 0 else 0.0
    tok_rate = num_tokens / gen_time if gen_time > 0 else 0.0
    logger.info(
        f"Translated {num_sentences:,} sentences ({num_tokens:,} tokens) in {gen_time:.1f}s "
        f"({sent_rate:.2f} sentences/s, {tok_rate:.2f} tokens/s)"
    )
    result: dict[str, Any] = {
        "num_sentences": num_sentences,
        "num_tokens": num_tokens,
        "elapsed": gen_time,
        "sentences_per_second": sent_rate,
        "tokens_per_second": tok_rate,
        "bleu": None,
        "result_string": None,
    }
    if has_target and num_sentences > 0:
        result_string = scorer.result_string()
        print(f"Generate {cfg.dataset.gen_subset} with beam={cfg.generation.beam}: {result_string}", file=out)
        result.update(bleu=scorer.score(), result_string=result_string)
    out.flush()
    return result
