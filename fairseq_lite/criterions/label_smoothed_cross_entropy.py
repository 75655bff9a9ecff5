"""Cross entropy with label smoothing (`--criterion label_smoothed_cross_entropy`).

fairseq's formula: with eps_i = eps / (V - 1),
    loss = (1 - eps - eps_i) * nll + eps_i * sum_v(-log p_v)
which puts 1 - eps on the target and eps / (V - 1) on every other entry of the full vocabulary
(pad included), and ignores pad targets. `nll_loss` (the unsmoothed part) is logged alongside.

When the model's normalized probabilities are a plain log_softmax of its logits (all built-in models),
the loss comes from the logits through the fused kernel (fairseq_lite/kernels/cross_entropy.py),
which never builds the [N, V] log-probabilities; other models go through get_normalized_probs and
`label_smoothed_nll_loss` below.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch.nn as nn
from omegaconf import II
from torch import Tensor

from fairseq_lite.criterions.cross_entropy import normalizes_with_log_softmax, output_logits
from fairseq_lite.criterions.fairseq_criterion import FairseqCriterion, sum_logs
from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.kernels.cross_entropy import softmax_cross_entropy
from fairseq_lite.logging import metrics
from fairseq_lite.registry import register_criterion
from fairseq_lite.utils import get_perplexity


@dataclass
class LabelSmoothedCrossEntropyCriterionConfig(FairseqDataclass):
    label_smoothing: float = cfg_field(0.0, help="epsilon for label smoothing, 0 means no label smoothing")
    report_accuracy: bool = cfg_field(False, help="report accuracy metric")
    ignore_prefix_size: int = cfg_field(0, help="Ignore first N tokens")
    sentence_avg: bool = II("optimization.sentence_avg")


def label_smoothed_nll_loss(
    lprobs: Tensor, target: Tensor, epsilon: float, ignore_index: int | None = None, reduce: bool = True
) -> tuple[Tensor, Tensor]:
    """lprobs: N x V log-probabilities, target: N. Returns (smoothed loss, nll loss), summed
    when `reduce`, else per position (zero at ignored targets)."""
    target = target.unsqueeze(-1)
    nll_loss = -lprobs.gather(dim=-1, index=target).squeeze(-1)
    smooth_loss = -lprobs.sum(dim=-1)
    if ignore_index is not None:
        pad_mask = target.squeeze(-1).eq(ignore_index)
        nll_loss = nll_loss.masked_fill(pad_mask, 0.0)
        smooth_loss = smooth_loss.masked_fill(pad_mask, 0.0)
    if reduce:
        nll_loss = nll_loss.sum()
        smooth_loss = smooth_loss.sum()
    eps_i = epsilon / (lprobs.size(-1) - 1)
    loss = (1.0 - epsilon - eps_i) * nll_loss + eps_i * smooth_loss
    return loss, nll_loss


def _to_number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@register_criterion("label_smoothed_cross_entropy", dataclass=LabelSmoothedCrossEntropyCriterionConfig)
class LabelSmoothedCrossEntropyCriterion(FairseqCriterion):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if not 0.0 <= float(cfg.label_smoothing) < 1.0:
            raise ConfigError(f"{key('criterion.label_smoothing')} must be in [0, 1), got {cfg.label_smoothing}")
        if int(cfg.ignore_prefix_size) < 0:
            raise ConfigError(f"{key('criterion.ignore_prefix_size')} must be >= 0, got {cfg.ignore_prefix_size}")

    @classmethod
    def validation_metrics(cls, cfg: Any) -> list[str]:
        return ["loss", "nll_loss", "ppl"] + (["accuracy"] if cfg.report_accuracy else [])

    def __init__(
        self,
        task: Any,
        sentence_avg: bool,
        label_smoothing: float,
        ignore_prefix_size: int = 0,
        report_accuracy: bool = False,
    ):
        super().__init__(task)
        self.sentence_avg = bool(sentence_avg)
        self.eps = float(label_smoothing)
        self.ignore_prefix_size = int(ignore_prefix_size)
        self.report_accuracy = bool(report_accuracy)

    def forward(
        self, model: nn.Module, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, int, dict[str, Any]]:
        net_output = model(**sample["net_input"])
        if normalizes_with_log_softmax(model):
            # `scores` is only used for accuracy: the argmax of the logits is that of the log-probabilities.
            scores, target = self.get_logits_and_target(model, net_output, sample)
            loss, nll_loss = softmax_cross_entropy(
                scores, target, ignore_index=self.padding_idx, label_smoothing=self.eps, reduce=reduce
            )
        else:
            scores, target = self.get_lprobs_and_target(model, net_output, sample)
            loss, nll_loss = label_smoothed_nll_loss(
                scores, target, self.eps, ignore_index=self.padding_idx, reduce=reduce
            )
        nsentences = sample["target"].size(0)
        ntokens = sample.get("ntokens")
        if ntokens is None:
            ntokens = int(sample["target"].ne(self.padding_idx).sum())
        ntokens = int(_to_number(ntokens))
        sample_size = nsentences if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.detach().sum(),  # a tensor: the trainer reads all values in one sync
            "nll_loss": nll_loss.detach().sum(),
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
        }
        if self.report_accuracy:
            mask = target.ne(self.padding_idx)
            logging_output["n_correct"] = scores.argmax(-1).eq(target).masked_select(mask).sum()
            logging_output["total"] = mask.sum()
        return loss, sample_size, logging_output

    def get_lprobs_and_target(self, model: nn.Module, net_output: Any, sample: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Flattened fp32 log-probabilities (N x V) and targets (N), without the ignored prefix."""
        # get_normalized_probs works in fp32, so the loss does too under bf16/fp16 autocast.
        lprobs = model.get_normalized_probs(net_output, log_probs=True)
        return self._flatten_without_prefix(lprobs, model.get_targets(sample, net_output))

    def get_logits_and_target(self, model: nn.Module, net_output: Any, sample: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Flattened logits (N x V, in the model's dtype: the fused loss works in fp32 internally) and
        targets (N), without the ignored prefix."""
        return self._flatten_without_prefix(output_logits(net_output), model.get_targets(sample, net_output))

    def _flatten_without_prefix(self, scores: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        if self.ignore_prefix_size > 0:
            scores = scores[:, self.ignore_prefix_size :, :]
            target = target[:, self.ignore_prefix_size :]
        return scores.reshape(-1, scores.size(-1)), target.reshape(-1)

    @classmethod
    def reduce_metrics(cls, logging_outputs: list[dict[str, Any]]) -> None:
        """fairseq's statistics: "loss" in base 2 per sample_size, "nll_loss" in base 2 per target token,
        "ppl" = 2**nll_loss, and "accuracy" in percent when n_correct/total were logged."""
        loss_sum = sum_logs(logging_outputs, "loss")
        nll_sum = sum_logs(logging_outputs, "nll_loss")
        ntokens = sum_logs(logging_outputs, "ntokens")
        sample_size = sum_logs(logging_outputs, "sample_size")
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_derived("ppl", lambda meters: get_perplexity(meters["nll_loss"].avg))
        total = sum_logs(logging_outputs, "total")
        if total > 0:
            metrics.log_scalar_sum("total", total)
            metrics.log_scalar_sum("n_correct", sum_logs(logging_outputs, "n_correct"))
            metrics.log_derived(
                "accuracy",
                lambda meters: (
                    round(meters["n_correct"].sum * 100.0 / meters["total"].sum, 3)
                    if meters["total"].sum > 0
                    else float("nan")
                ),
            )

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
