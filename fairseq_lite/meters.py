"""`from fairseq_lite import meters`: fairseq's old import path of `logging.meters`: fairseq's meters
(AverageMeter, SumMeter, TimeMeter, StopwatchMeter, MetersDict). fairseq 0.12.2 still aliases `fairseq.meters`
to it, and plugins import it so. This name is that module itself (sys.modules), not a copy.
"""

import sys

from fairseq_lite.logging import meters as _module

sys.modules[__name__] = _module
