"""`from fairseq_lite import sequence_generator`: fairseq's module path of `generation.sequence_generator`:
SequenceGenerator and EnsembleModel. fairseq 0.12.2 has it as `fairseq.sequence_generator`, and plugins import
it so. This name is that module itself (sys.modules), not a copy.
"""

import sys

from fairseq_lite.generation import sequence_generator as _module

sys.modules[__name__] = _module
