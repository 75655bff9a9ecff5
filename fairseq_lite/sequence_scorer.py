"""`from fairseq_lite import sequence_scorer`: fairseq's module path of `generation.sequence_scorer`:
SequenceScorer (--score-reference). fairseq 0.12.2 has it as `fairseq.sequence_scorer`, and plugins import it
so. This name is that module itself (sys.modules), not a copy.
"""

import sys

from fairseq_lite.generation import sequence_scorer as _module

sys.modules[__name__] = _module
