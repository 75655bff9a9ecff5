"""Learning-rate schedulers. Importing this package registers them."""

from fairseq_lite.optim.lr_scheduler.cosine_lr_scheduler import CosineLRSchedule, CosineLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq_lite.optim.lr_scheduler.fixed_schedule import FixedLRSchedule, FixedLRScheduleConfig
from fairseq_lite.optim.lr_scheduler.inverse_square_root_schedule import (
    InverseSquareRootLRScheduleConfig,
    InverseSquareRootSchedule,
)
from fairseq_lite.optim.lr_scheduler.polynomial_decay_schedule import (
    PolynomialDecayLRSchedule,
    PolynomialDecayLRScheduleConfig,
)

__all__ = [
    "CosineLRSchedule",
    "CosineLRScheduleConfig",
    "FairseqLRScheduler",
    "FixedLRSchedule",
    "FixedLRScheduleConfig",
    "InverseSquareRootLRScheduleConfig",
    "InverseSquareRootSchedule",
    "PolynomialDecayLRSchedule",
    "PolynomialDecayLRScheduleConfig",
]
