"""Optimizers and learning-rate schedulers. Importing this package registers them."""

from fairseq_lite.optim import lr_scheduler, target_optimizer  # noqa: F401  (optimizer: {_target_: ...})
from fairseq_lite.optim.adadelta import Adadelta, AdadeltaConfig
from fairseq_lite.optim.adafactor import Adafactor, FairseqAdafactor, FairseqAdafactorConfig
from fairseq_lite.optim.adagrad import Adagrad, AdagradConfig
from fairseq_lite.optim.adam import Adam, FairseqAdam, FairseqAdamConfig
from fairseq_lite.optim.adamax import Adamax, FairseqAdamax, FairseqAdamaxConfig
from fairseq_lite.optim.composite import CompositeOptimizerConfig, FairseqCompositeOptimizer
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer, LegacyFairseqOptimizer
from fairseq_lite.optim.fp32_step_optimizer import FP32StepOptimizer
from fairseq_lite.optim.lamb import LAMB, FairseqLAMB, FairseqLAMBConfig
from fairseq_lite.optim.nag import NAG, FairseqNAG, FairseqNAGConfig
from fairseq_lite.optim.sgd import SGD, SGDConfig
from fairseq_lite.registry import OPTIMIZER_REGISTRY, register_optimizer

__all__ = [
    "LegacyFairseqOptimizer",
    "OPTIMIZER_REGISTRY",
    "register_optimizer",
    "LAMB",
    "NAG",
    "SGD",
    "Adadelta",
    "AdadeltaConfig",
    "Adafactor",
    "Adagrad",
    "AdagradConfig",
    "Adam",
    "Adamax",
    "CompositeOptimizerConfig",
    "FP32StepOptimizer",
    "FairseqAdafactor",
    "FairseqAdafactorConfig",
    "FairseqAdam",
    "FairseqAdamConfig",
    "FairseqAdamax",
    "FairseqAdamaxConfig",
    "FairseqCompositeOptimizer",
    "FairseqLAMB",
    "FairseqLAMBConfig",
    "FairseqNAG",
    "FairseqNAGConfig",
    "FairseqOptimizer",
    "SGDConfig",
    "lr_scheduler",
]
