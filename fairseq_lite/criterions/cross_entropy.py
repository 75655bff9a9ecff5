"""Token-level cross entropy (`--criterion cross_entropy`)."""

import math
from dataclasses import dataclass
from typing import Any

import torch.nn as nn
import torch.nn.functional as F
from omegaconf import II
from torch import Tensor

from fairseq_lite.criterions.fairseq_criterion import FairseqCriterion, sum_logs
from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.kernels.cross_entropy import softmax_cross_entropy
from fairseq_lite.logging import metrics
from fairseq_lite.models.fairseq_model import normalizes_with_log_softmax, output_logits
from fairseq_lite.registry import register_criterion
from fairseq_lite.utils import get_perplexity


@dataclass
class CrossEntropyCriterionConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")


def _to_number(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


@register_criterion("cross_entropy", dataclass=CrossEntropyCriterionConfig)
class CrossEntropyCriterion(FairseqCriterion):
    @classmethod
    def validation_metrics(cls, cfg: Any) -> list[str]:
        return ["loss", "ppl"] + (["nll_loss"] if cfg.get("sentence_avg", False) else [])

    def __init__(self, task: Any, sentence_avg: bool):
        super().__init__(task)
        self.sentence_avg = bool(sentence_avg)

    def forward(
        self, model: nn.Module, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, int, dict[str, Any]]:
        """Loss summed in nats over the non-pad targets (per token when reduce=False)."""
        net_output = model(**sample["net_input"])
        loss, _ = self.compute_loss(model, net_output, sample, reduce=reduce)
        target = sample["target"]
        nsentences = target.size(0)
        ntokens = sample.get("ntokens")
        if ntokens is None:
            ntokens = int(target.ne(self.padding_idx).sum())
        ntokens = int(_to_number(ntokens))
        sample_size = nsentences if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.detach().sum(),  # a tensor: the trainer reads all values in one sync
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
        }
        return loss, sample_size, logging_output

    def compute_loss(
        self, model: nn.Module, net_output: Any, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, Tensor]:
        """(loss, nll_loss), the same here as in fairseq: -log p(target) under model.get_normalized_probs,
        summed (or per position when not `reduce`, zero at pads), in fp32 even under bf16/fp16 autocast:
        the log-sum-exp over the vocabulary is where low precision hurts."""
        target = model.get_targets(sample, net_output).reshape(-1)
        if normalizes_with_log_softmax(model):
            logits = output_logits(net_output)
            loss, _ = softmax_cross_entropy(
                logits.reshape(-1, logits.size(-1)), target, ignore_index=self.padding_idx, reduce=reduce
            )
            return loss, loss
        # With the sample, an adaptive softmax computes a tail cluster only where a target needs it.
        lprobs = model.get_normalized_probs(net_output, log_probs=True, sample=sample)
        loss = F.nll_loss(
            lprobs.reshape(-1, lprobs.size(-1)).float(),
            target,
            ignore_index=self.padding_idx,
            reduction="sum" if reduce else "none",
        )
        return loss, loss

    @classmethod
    def reduce_metrics(cls, logging_outputs: list[dict[str, Any]]) -> None:
        """fairseq's statistics: "loss" in base 2 per sample_size; with sentence_avg also "nll_loss" per
        target token; "ppl" is 2**nll_loss (2**loss when they are the same)."""
        loss_sum = sum_logs(logging_outputs, "loss")
        ntokens = sum_logs(logging_outputs, "ntokens")
        sample_size = sum_logs(logging_outputs, "sample_size")
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        if sample_size != ntokens:
            metrics.log_scalar("nll_loss", loss_sum / ntokens / math.log(2), ntokens, round=3)
            metrics.log_derived("ppl", lambda meters: get_perplexity(meters["nll_loss"].avg))
        else:
            metrics.log_derived("ppl", lambda meters: get_perplexity(meters["loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
