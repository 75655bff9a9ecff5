"""Label-smoothed cross entropy plus an alignment loss (`--criterion label_smoothed_cross_entropy_with_alignment`),
for the joint alignment and translation model (models/transformer_align.py; Garg et al., EMNLP 2019).

    loss = label_smoothed_cross_entropy + alignment_lambda * alignment_loss
    alignment_loss = -sum over the batch's alignment pairs (s, t) of  w_t * log attn[t, s]

with attn the model's supervised encoder attention (extra["attn"], B x T x S) and w_t = 1 / the number of pairs
aligned to target position t (the batch's "align_weights", from --load-alignments). Batches without
alignments (a split that has none, or whose sentences' alignments were all out of range) add nothing. The
logged `loss` is the cross entropy alone, as fairseq logs it; `alignment_loss` is logged next to it.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch.nn as nn
from torch import Tensor

from fairseq_lite.criterions.cross_entropy import normalizes_with_log_softmax
from fairseq_lite.criterions.fairseq_criterion import sum_logs
from fairseq_lite.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq_lite.dataclass.base import cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.kernels.cross_entropy import softmax_cross_entropy
from fairseq_lite.logging import metrics
from fairseq_lite.registry import register_criterion
from fairseq_lite.utils import get_perplexity

NO_ALIGNMENT_ATTENTION = (
    "criterion label_smoothed_cross_entropy_with_alignment needs a model that returns its supervised attention "
    "(extra['attn']): use --arch transformer_align or transformer_wmt_en_de_big_align"
)


@dataclass
class LabelSmoothedCrossEntropyCriterionWithAlignmentConfig(LabelSmoothedCrossEntropyCriterionConfig):
    alignment_lambda: float = cfg_field(0.05, help="weight for the alignment loss")


@register_criterion(
    "label_smoothed_cross_entropy_with_alignment", dataclass=LabelSmoothedCrossEntropyCriterionWithAlignmentConfig
)
class LabelSmoothedCrossEntropyCriterionWithAlignment(LabelSmoothedCrossEntropyCriterion):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        super().check_config(cfg)
        # fairseq's criterion takes neither (its __init__ drops them), so they would do nothing.
        for name, off in (("ignore_prefix_size", 0), ("report_accuracy", False)):
            if cfg.get(name, off) != off:
                raise ConfigError(
                    f"{key('criterion.' + name)} is not used by label_smoothed_cross_entropy_with_alignment "
                    f"(fairseq's ignores it too): leave it at {off}"
                )

    @classmethod
    def check_model_config(cls, cfg: Any, model_cfg: Any) -> None:
        if model_cfg.get("alignment_layer") is None:
            raise ConfigError(NO_ALIGNMENT_ATTENTION)

    @classmethod
    def validation_metrics(cls, cfg: Any) -> list[str]:
        return ["loss", "nll_loss", "alignment_loss", "ppl"]

    def __init__(self, task: Any, sentence_avg: bool, label_smoothing: float, alignment_lambda: float):
        super().__init__(task, sentence_avg, label_smoothing)
        task_cfg = getattr(task, "cfg", None)
        if getattr(task_cfg, "load_alignments", None) is False:
            raise ConfigError(
                f"criterion label_smoothed_cross_entropy_with_alignment needs alignments: set "
                f"{key('task.load_alignments')} (the data binarized with fairseq-preprocess --align-suffix)"
            )
        self.alignment_lambda = float(alignment_lambda)

    def forward(
        self, model: nn.Module, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, int, dict[str, Any]]:
        net_output = model(**sample["net_input"])
        loss, nll_loss = self.compute_loss(model, net_output, sample, reduce=reduce)
        nsentences = sample["target"].size(0)
        ntokens = sample.get("ntokens")
        ntokens = int(sample["target"].ne(self.padding_idx).sum() if ntokens is None else ntokens)
        sample_size = nsentences if self.sentence_avg else ntokens
        logging_output = {
            "loss": loss.detach().sum(),  # tensors: the trainer reads all values in one sync
            "nll_loss": nll_loss.detach().sum(),
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
        }
        # Only batches that carry alignments (fairseq's "training set and non dummy batches").
        if sample.get("alignments") is not None:
            alignment_loss = self.compute_alignment_loss(sample, net_output)
            if alignment_loss is not None:
                logging_output["alignment_loss"] = alignment_loss.detach()
                loss = loss + self.alignment_lambda * alignment_loss
        return loss, sample_size, logging_output

    def compute_loss(
        self, model: nn.Module, net_output: Any, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, Tensor]:
        """(label-smoothed loss, nll loss), as label_smoothed_cross_entropy computes them."""
        if normalizes_with_log_softmax(model):
            logits, target = self.get_logits_and_target(model, net_output, sample)
            return softmax_cross_entropy(
                logits, target, ignore_index=self.padding_idx, label_smoothing=self.eps, reduce=reduce
            )
        lprobs, target = self.get_lprobs_and_target(model, net_output, sample)
        return label_smoothed_nll_loss(lprobs, target, self.eps, ignore_index=self.padding_idx, reduce=reduce)

    def compute_alignment_loss(self, sample: dict[str, Any], net_output: Any) -> Tensor | None:
        attn_list = net_output[1].get("attn") if isinstance(net_output[1], dict) else None
        attn_prob = attn_list[0] if attn_list else None
        if attn_prob is None:
            raise ConfigError(NO_ALIGNMENT_ATTENTION)
        align = sample["alignments"]
        if len(align) == 0:
            return None
        bsz, tgt_len, src_len = attn_prob.shape
        attn = attn_prob.reshape(bsz * tgt_len, src_len)
        # align[:, 0] is a column of src_tokens, align[:, 1] a row of the flattened (bsz * tgt_len) target.
        # (The log in fp32: half-precision attention underflows there first.)
        picked = attn[align[:, 1], align[:, 0]].float()
        return -(picked.log() * sample["align_weights"].float()).sum()

    @classmethod
    def reduce_metrics(cls, logging_outputs: list[dict[str, Any]]) -> None:
        """fairseq's statistics: loss (per sample_size) and nll_loss (per target token) in base 2, ppl, and
        alignment_loss in base 2 per sample_size (0 when no batch had alignments)."""
        loss_sum = sum_logs(logging_outputs, "loss")
        nll_sum = sum_logs(logging_outputs, "nll_loss")
        alignment_sum = sum_logs(logging_outputs, "alignment_loss")
        ntokens = sum_logs(logging_outputs, "ntokens")
        sample_size = sum_logs(logging_outputs, "sample_size")
        metrics.log_scalar("loss", loss_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_scalar("nll_loss", nll_sum / ntokens / math.log(2), ntokens, round=3)
        metrics.log_scalar("alignment_loss", alignment_sum / sample_size / math.log(2), sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: get_perplexity(meters["nll_loss"].avg))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True
