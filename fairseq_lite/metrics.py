"""`from fairseq_lite import metrics`: fairseq's old import path of `logging.metrics`: fairseq's log_scalar,
log_derived, aggregate, ... on their one set of aggregators. fairseq 0.12.2 still aliases `fairseq.metrics` to
it, and plugins import it so. This name is that module itself (sys.modules), not a copy.
"""

import sys

from fairseq_lite.logging import metrics as _module

sys.modules[__name__] = _module
