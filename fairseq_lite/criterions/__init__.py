"""Criteria. Importing this package registers them."""

import fairseq_lite.criterions.label_smoothed_cross_entropy_with_alignment  # noqa: F401  (registers it)
from fairseq_lite.criterions import target_criterion  # noqa: F401  (criterion: {_target_: ...})
from fairseq_lite.criterions.adaptive_loss import AdaptiveLoss, AdaptiveLossConfig
from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq_lite.criterions.fairseq_criterion import FairseqCriterion, LegacyFairseqCriterion
from fairseq_lite.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
)
from fairseq_lite.registry import CRITERION_REGISTRY, register_criterion

__all__ = [
    "LegacyFairseqCriterion",
    "CRITERION_REGISTRY",
    "register_criterion",
    "AdaptiveLoss",
    "AdaptiveLossConfig",
    "CrossEntropyCriterion",
    "CrossEntropyCriterionConfig",
    "FairseqCriterion",
    "LabelSmoothedCrossEntropyCriterion",
    "LabelSmoothedCrossEntropyCriterionConfig",
]
