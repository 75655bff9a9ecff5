"""Optimizers and learning-rate schedulers. Importing this package registers them."""

from fairseq_lite.optim import lr_scheduler
from fairseq_lite.optim.adam import FairseqAdam, FairseqAdamConfig
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer
from fairseq_lite.optim.nag import NAG, FairseqNAG, FairseqNAGConfig
from fairseq_lite.optim.sgd import SGD, SGDConfig

__all__ = [
    "NAG",
    "FairseqAdam",
    "FairseqAdamConfig",
    "FairseqNAG",
    "FairseqNAGConfig",
    "FairseqOptimizer",
    "SGD",
    "SGDConfig",
    "lr_scheduler",
]
