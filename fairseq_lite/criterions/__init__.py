"""Criteria. Importing this package registers them."""

from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq_lite.criterions.fairseq_criterion import FairseqCriterion

__all__ = ["CrossEntropyCriterion", "CrossEntropyCriterionConfig", "FairseqCriterion"]
