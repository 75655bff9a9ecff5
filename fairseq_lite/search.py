"""`from fairseq_lite import search`: fairseq's module path of `generation.search`: the search strategies
(BeamSearch, Sampling, DiverseBeamSearch, ...). fairseq 0.12.2 has it as `fairseq.search`, and plugins import
it so. This name is that module itself (sys.modules), not a copy.
"""

import sys

from fairseq_lite.generation import search as _module

sys.modules[__name__] = _module
