"""A criterion whose logging outputs cannot be summed (fairseq's logging_outputs_can_be_summed() False): its
reduce_metrics must see every micro-batch's output of every rank, gathered (all_gather_list), and logs
statistics a sum would lose: how many outputs it saw and the largest batch among them."""

from fairseq_lite.criterions import register_criterion
from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq_lite.logging import metrics


@register_criterion("gathered_cross_entropy", dataclass=CrossEntropyCriterionConfig)
class GatheredCrossEntropy(CrossEntropyCriterion):
    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return False

    @classmethod
    def reduce_metrics(cls, logging_outputs) -> None:
        super().reduce_metrics(logging_outputs)
        metrics.log_scalar_sum("outputs_seen", len(logging_outputs))
        metrics.log_scalar("largest_batch", max(log.get("nsentences", 0) for log in logging_outputs), weight=0)
