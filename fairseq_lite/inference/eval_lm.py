"""Score a language model on a data split: loss in base 2, perplexity and tokens/s, as fairseq-eval-lm."""

import contextlib
import logging
import math
import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from fairseq_lite.checkpoint.inference import load_for_command
from fairseq_lite.data.lm_context_window_dataset import LMContextWindowDataset
from fairseq_lite.errors import ConfigError
from fairseq_lite.kernels.cross_entropy import softmax_cross_entropy
from fairseq_lite.models.fairseq_model import normalizes_with_log_softmax
from fairseq_lite.optim.precision import autocast_context, check_precision
from fairseq_lite.utils import move_to_device, select_device

logger = logging.getLogger("fairseq_cli.eval_lm")  # the logger name of fairseq's log lines


def eval_lm_dataset(cfg, task, subset: str):
    """The split to score, wrapped for --context-window when asked."""
    context_window = cfg.eval_lm.context_window
    if context_window > 0:
        if context_window >= cfg.task.tokens_per_sample:
            raise ConfigError(
                f"--context-window {context_window} must be smaller than --tokens-per-sample "
                f"{cfg.task.tokens_per_sample}"
            )
        # Score blocks of (tokens_per_sample - context_window) new tokens, each after up to
        # context_window tokens of history, so that history + block still fits the model.
        block = cfg.task.tokens_per_sample - context_window
        cfg.task.tokens_per_sample = block
        task.cfg.tokens_per_sample = block
    task.load_dataset(subset)
    dataset = task.dataset(subset)
    if context_window > 0:
        dataset = LMContextWindowDataset(
            dataset,
            tokens_per_sample=cfg.task.tokens_per_sample,
            context_window=context_window,
            pad_idx=task.source_dictionary.pad(),
        )
    return dataset


@torch.no_grad()
def score_batches(
    model, batches: Iterable[dict], device: torch.device, pad_idx: int, autocast=None, word_probs_dictionary=None
) -> dict[str, float]:
    """Sum of target-token log-probabilities (nats) and the number of scored tokens."""
    model.eval()
    log_softmax_model = normalizes_with_log_softmax(model)
    nll_sum, ntokens = 0.0, 0
    for sample in batches:
        if not sample:
            continue
        sample = move_to_device(sample, device)
        with autocast() if autocast is not None else contextlib.nullcontext():
            net_output = model(**sample["net_input"])
        target = sample["target"]
        mask = target.ne(pad_idx)
        if log_softmax_model:
            # The fused kernel reads the logits once and accumulates in fp32 (bf16 logits would cost
            # perplexity digits), without an fp32 copy of the [tokens, vocab] logits.
            token_nll = softmax_cross_entropy(net_output[0], target, ignore_index=pad_idx, reduce=False)[1].view_as(
                target
            )
        else:  # the model's own normalization (adaptive softmax, temperature, ...)
            lprobs = model.get_normalized_probs(net_output, log_probs=True, sample=sample).float()
            token_nll = -lprobs.gather(-1, target.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
            token_nll = token_nll.masked_fill(~mask, 0.0)
        nll_sum += float(token_nll[mask].sum())
        ntokens += int(mask.sum())
        if word_probs_dictionary is not None:
            for row_target, row_nll, row_mask in zip(target, token_nll, mask):
                words = [
                    f"{word_probs_dictionary[int(t)]} [{-float(n) / math.log(2):.2f}]"
                    for t, n, m in zip(row_target, row_nll, row_mask)
                    if m
                ]
                print(" ".join(words))
    return {"nll_sum": nll_sum, "ntokens": ntokens}


def summarize(scores: dict[str, float], elapsed: float) -> dict[str, float | None]:
    ntokens = scores["ntokens"]
    if ntokens == 0:
        return {"ntokens": 0, "loss": None, "ppl": None, "tokens_per_second": 0.0, "elapsed": elapsed}
    loss = scores["nll_sum"] / ntokens / math.log(2)
    return {
        "ntokens": ntokens,
        "loss": loss,
        "ppl": 2**loss,
        "tokens_per_second": ntokens / elapsed if elapsed > 0 else 0.0,
        "elapsed": elapsed,
    }


def evaluate(cfg, task, model, device: torch.device, autocast=None) -> dict[str, float | None]:
    subset = cfg.dataset.gen_subset
    dataset = eval_lm_dataset(cfg, task, subset)
    ds = cfg.dataset
    context = cfg.eval_lm.context_window > 0
    itr = task.get_batch_iterator(
        dataset=dataset,
        max_tokens=ds.max_tokens,
        max_sentences=ds.batch_size,
        max_positions=None,
        ignore_invalid_inputs=True,
        required_batch_size_multiple=ds.required_batch_size_multiple,
        seed=cfg.common.seed,
        num_shards=ds.num_shards,
        shard_id=ds.shard_id,
        # the context-window collater keeps state between batches, so it must run in this process
        num_workers=0 if context else ds.num_workers,
        disable_iterator_cache=True,
    ).next_epoch_itr(shuffle=False)
    start = time.perf_counter()
    scores = score_batches(
        model,
        itr,
        device,
        task.target_dictionary.pad(),
        autocast=autocast,
        word_probs_dictionary=task.target_dictionary if cfg.eval_lm.output_word_probs else None,
    )
    result = summarize(scores, time.perf_counter() - start)
    logger.info(
        f"Evaluated {result['ntokens']:,} tokens in {result['elapsed']:.1f}s "
        f"({result['tokens_per_second']:.2f} tokens/s)"
    )
    if result["loss"] is not None:
        logger.info(f"Loss (base 2): {result['loss']:.4f}, Perplexity: {result['ppl']:.2f}")
    return result


def evaluate_checkpoint(values: dict[str, Any], groups: Sequence[str]) -> dict[str, float | None]:
    """fairseq-eval-lm's run: `values` are the command line's settings ("group.field" -> value),
    `common_eval.path` the checkpoint; the config's `groups` come from the command line alone."""
    path = values.get("common_eval.path")
    if not path:
        raise ConfigError("--path is required: the checkpoint to evaluate (e.g. checkpoints/checkpoint_best.pt)")
    if os.pathsep in path and not os.path.isfile(path):
        raise ConfigError(f"--path {path}: evaluating an ensemble of checkpoints is not supported; give one file")
    cfg, task, model = load_for_command(path, values, groups)
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = cfg.task.tokens_per_sample * 8
    device = select_device(cfg)
    mode = check_precision(cfg.common, device)
    model.to(device)
    logger.info(f"evaluating {path} on '{cfg.dataset.gen_subset}' of {cfg.task.data} ({device}, {mode})")
    return evaluate(cfg, task, model, device, autocast=lambda: autocast_context(mode, device))
