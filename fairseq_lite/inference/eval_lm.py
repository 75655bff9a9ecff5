"""Score a language model on a data split: loss in base 2, perplexity and tokens/s, as fairseq-eval-lm."""

import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from fairseq_lite.checkpoint.inference import load_for_command
from fairseq_lite.data.lm_context_window_dataset import LMContextWindowDataset
from fairseq_lite.errors import ConfigError
from fairseq_lite.generation.sequence_generator import average_log_probs
from fairseq_lite.generation.sequence_scorer import target_log_probs
from fairseq_lite.inference.loading import checkpoint_paths
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


BPE_CONTINUATIONS = {"subword_nmt": "@@", "@@ ": "@@"}  # the --post-process values eval-lm merges, as fairseq


@dataclass
class WordStat:
    """fairseq's per-word statistics (--output-word-stats): occurrences, summed log-probability (natural
    log), whether it was made of BPE pieces, and the summed log-probability of the word after it."""

    word: str
    is_bpe: bool
    log_prob: float = 0.0
    next_word_prob: float = 0.0
    count: int = 0
    missing_next_words: int = 0

    def add(self, log_prob: float, next_word_prob: float | None) -> None:
        if next_word_prob is None:
            self.missing_next_words += 1
        else:
            # fairseq sums these as float32 tensors: the same sum prints the same digits
            self.next_word_prob = float(np.float32(self.next_word_prob) + np.float32(next_word_prob))
        self.log_prob += log_prob
        self.count += 1

    def __str__(self) -> str:
        fields = (self.word, self.count, self.log_prob, self.is_bpe, self.next_word_prob)
        return "\t".join(map(str, fields + (self.count - self.missing_next_words,)))


class SentenceScores:
    """fairseq-eval-lm's bookkeeping of each scored sentence: with --post-process subword_nmt, a word's
    pieces count as one token (their log-probabilities summed on the last); with add_bos_token the bos
    target is not scored; tokens scored -inf/inf are left out (and named); --output-word-probs and
    --output-word-stats report words."""

    def __init__(self, dictionary: Any, post_process: str | None = None, remove_bos: bool = False):
        self.dictionary = dictionary
        self.remove_bos = remove_bos
        self.bpe_cont, self.bpe_toks = "", None
        if post_process is not None:
            if post_process not in BPE_CONTINUATIONS:
                raise ConfigError(
                    f"--post-process {post_process}: fairseq-eval-lm merges subword_nmt ('@@ ') pieces only; "
                    f"allowed: {', '.join(BPE_CONTINUATIONS)}"
                )
            self.bpe_cont = BPE_CONTINUATIONS[post_process]
            self.bpe_toks = {i for i in range(len(dictionary)) if dictionary[i].endswith(self.bpe_cont)}
        self.word_stats: dict[str, WordStat] = {}
        self.logp_sum, self.count = 0.0, 0

    def add(self, sample_id: int, tokens: Tensor, pos_scores: Tensor, word_probs: bool, word_stats: bool) -> None:
        """tokens: the sentence's scored targets (no pads); pos_scores: their log-probabilities."""
        pos_scores = pos_scores.float().cpu().clone()
        tokens = tokens.cpu()
        if self.remove_bos:
            if int(tokens[0]) != self.dictionary.bos():
                raise ConfigError("eval-lm with add_bos_token: a target does not start with bos")
            tokens, pos_scores = tokens[1:], pos_scores[1:]
        skipped = 0
        if self.bpe_toks is not None:
            for i in range(len(tokens) - 1):
                if int(tokens[i]) in self.bpe_toks:
                    skipped += 1
                    pos_scores[i + 1] += pos_scores[i]
                    pos_scores[i] = 0
        infinite = torch.isinf(pos_scores)
        if bool(infinite.any()):
            logger.info(f"skipping tokens with inf scores: {self.dictionary.string(tokens[infinite])}")
        self.logp_sum += float(pos_scores[~infinite].sum())
        self.count += int((~infinite).sum()) - skipped
        if word_probs or word_stats:
            self._words(sample_id, tokens.tolist(), pos_scores.tolist(), word_probs)

    def _words(self, sample_id: int, tokens: list[int], scores: list[float], log_probs: bool) -> None:
        word, is_bpe, found = "", False, []
        for i, token in enumerate(tokens):
            word += self.dictionary[token]
            if self.bpe_toks is not None and token in self.bpe_toks:
                word, is_bpe = word[: -len(self.bpe_cont)], True
                continue
            found.append((word, scores[i]))
            # the next word's score sits on its last piece: the first non-zero score after this word
            next_prob = next((p for p in scores[i + 1 :] if p != 0), None)
            self.word_stats.setdefault(word, WordStat(word, is_bpe)).add(scores[i], next_prob)
            word, is_bpe = "", False
        if log_probs:
            logger.info(f"{sample_id} " + "\t".join(f"{w} [{p:2f}]" for w, p in found))

    def log_word_stats(self) -> None:
        for stat in sorted(self.word_stats.values(), key=lambda ws: ws.count, reverse=True):
            logger.info(str(stat))


@torch.no_grad()
def score_batches(
    model,
    batches: Iterable[dict],
    device: torch.device,
    pad_idx: int,
    autocast=None,
    softmax_batch: int = sys.maxsize,
    sentences: SentenceScores | None = None,
    word_probs: bool = False,
    word_stats: bool = False,
) -> dict[str, float]:
    """Summed target-token negative log-likelihood (nats), the tokens scored, and the count the loss is
    averaged over (words, with `sentences` merging BPE pieces). `model` may be a list: an ensemble, whose
    probabilities are averaged (--path a.pt:b.pt)."""
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    for m in models:
        m.eval()
    fused = [normalizes_with_log_softmax(m) for m in models]
    nll_sum, ntokens = 0.0, 0
    for sample in batches:
        if not sample:
            continue
        sample = move_to_device(sample, device)
        log_probs = []
        for m, m_fused in zip(models, fused):
            with autocast() if autocast is not None else contextlib.nullcontext():
                net_output = m(**sample["net_input"])
            log_probs.append(target_log_probs(m, net_output, sample, pad_idx, m_fused, softmax_batch))
        target = sample["target"]
        mask = target.ne(pad_idx)
        logp = average_log_probs(log_probs)
        ntokens += int(mask.sum())
        if sentences is None:
            nll_sum -= float(logp[mask].sum())
            continue
        ids = sample["id"].tolist() if "id" in sample else range(target.size(0))
        for sample_id, row, row_logp, row_mask in zip(ids, target, logp, mask):
            sentences.add(int(sample_id), row[row_mask], row_logp[row_mask], word_probs, word_stats)
    if sentences is None:
        return {"nll_sum": nll_sum, "ntokens": ntokens, "count": ntokens}
    return {"nll_sum": -sentences.logp_sum, "ntokens": ntokens, "count": sentences.count}


def summarize(scores: dict[str, float], elapsed: float) -> dict[str, float | None]:
    ntokens, count = scores["ntokens"], scores.get("count", scores["ntokens"])
    if ntokens == 0 or count == 0:
        return {"ntokens": ntokens, "loss": None, "ppl": None, "tokens_per_second": 0.0, "elapsed": elapsed}
    loss = scores["nll_sum"] / count / math.log(2)
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
    lm = cfg.eval_lm
    remove_bos = bool(getattr(cfg.task, "add_bos_token", False))
    sentences = None
    if lm.output_word_probs or lm.output_word_stats or cfg.common_eval.post_process is not None or remove_bos:
        sentences = SentenceScores(task.target_dictionary, cfg.common_eval.post_process, remove_bos)
    start = time.perf_counter()
    scores = score_batches(
        model,
        itr,
        device,
        task.target_dictionary.pad(),
        autocast=autocast,
        softmax_batch=lm.softmax_batch,
        sentences=sentences,
        word_probs=lm.output_word_probs,
        word_stats=lm.output_word_stats,
    )
    result = summarize(scores, time.perf_counter() - start)
    logger.info(
        f"Evaluated {result['ntokens']:,} tokens in {result['elapsed']:.1f}s "
        f"({result['tokens_per_second']:.2f} tokens/s)"
    )
    if lm.output_word_stats and sentences is not None:
        sentences.log_word_stats()
    if result["loss"] is not None:
        logger.info(f"Loss (base 2): {result['loss']:.4f}, Perplexity: {result['ppl']:.2f}")
    return result


def evaluate_checkpoint(values: dict[str, Any], groups: Sequence[str]) -> dict[str, float | None]:
    """fairseq-eval-lm's run: `values` are the command line's settings ("group.field" -> value),
    `common_eval.path` the checkpoint; the config's `groups` come from the command line alone."""
    path = values.get("common_eval.path")
    if not path:
        raise ConfigError("--path is required: the checkpoint to evaluate (e.g. checkpoints/checkpoint_best.pt)")
    softmax_batch = values.get("eval_lm.softmax_batch")
    if softmax_batch is not None and softmax_batch <= 0:
        raise ConfigError(f"--softmax-batch must be positive, got {softmax_batch}")
    post_process = values.get("common_eval.post_process")
    if post_process is not None and post_process not in BPE_CONTINUATIONS:
        raise ConfigError(
            f"--post-process {post_process}: fairseq-eval-lm merges subword_nmt ('@@ ') pieces only; "
            f"allowed: {', '.join(BPE_CONTINUATIONS)}"
        )
    # an ensemble (--path a.pt:b.pt): the first checkpoint's config and task, every checkpoint's model
    paths = checkpoint_paths(path)
    cfg, task, model = load_for_command(paths[0], values, groups)
    models = [model] + [load_for_command(other, values, groups)[2] for other in paths[1:]]
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        cfg.dataset.max_tokens = cfg.task.tokens_per_sample * 8
    device = select_device(cfg)
    mode = check_precision(cfg.common, device)
    for m in models:
        m.to(device)
    logger.info(f"evaluating {path} on '{cfg.dataset.gen_subset}' of {cfg.task.data} ({device}, {mode})")
    return evaluate(cfg, task, models, device, autocast=lambda: autocast_context(mode, device))
