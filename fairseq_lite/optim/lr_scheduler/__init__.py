"""Learning-rate schedulers. Importing this package registers them."""

from fairseq_lite.optim.lr_scheduler import target_scheduler  # noqa: F401  (lr_scheduler: {_target_: ...})
from fairseq_lite.optim.lr_scheduler.cosine_lr_scheduler import CosineLRSchedule, CosineLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler, LegacyFairseqLRScheduler
from fairseq_lite.optim.lr_scheduler.fixed_schedule import FixedLRSchedule, FixedLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.inverse_square_root_schedule import (
    InverseSquareRootLRScheduleConfig,
    InverseSquareRootSchedule,
)
from fairseq_lite.optim.lr_scheduler.manual_lr_scheduler import ManualLRScheduleConfig, ManualSchedule
from fairseq_lite.optim.lr_scheduler.pass_through import PassThroughScheduleConfig, PassThroughScheduleSchedule
from fairseq_lite.optim.lr_scheduler.polynomial_decay_schedule import (
    PolynomialDecayLRSchedule,
    PolynomialDecayLRScheduleConfig,
)
from fairseq_lite.optim.lr_scheduler.reduce_lr_on_plateau import (
    ReduceLROnPlateauLRSchedule,
    ReduceLROnPlateauLRScheduleConfig,
)
from fairseq_lite.optim.lr_scheduler.step_lr_scheduler import StepLRSchedule, StepLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.tri_stage_lr_scheduler import TriStageLRSchedule, TriStageLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.triangular_lr_scheduler import TriangularLRSchedule, TriangularLRScheduleConfig
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, register_lr_scheduler

__all__ = [
    "LegacyFairseqLRScheduler",
    "LR_SCHEDULER_REGISTRY",
    "register_lr_scheduler",
    "CosineLRSchedule",
    "CosineLRScheduleConfig",
    "FairseqLRScheduler",
    "FixedLRSchedule",
    "FixedLRScheduleConfig",
    "InverseSquareRootLRScheduleConfig",
    "InverseSquareRootSchedule",
    "ManualLRScheduleConfig",
    "ManualSchedule",
    "PassThroughScheduleConfig",
    "PassThroughScheduleSchedule",
    "PolynomialDecayLRSchedule",
    "PolynomialDecayLRScheduleConfig",
    "ReduceLROnPlateauLRSchedule",
    "ReduceLROnPlateauLRScheduleConfig",
    "StepLRSchedule",
    "StepLRScheduleConfig",
    "TriStageLRSchedule",
    "TriStageLRScheduleConfig",
    "TriangularLRSchedule",
    "TriangularLRScheduleConfig",
]
