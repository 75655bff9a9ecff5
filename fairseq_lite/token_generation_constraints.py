"""`from fairseq_lite import token_generation_constraints`: fairseq's module path of `generation.constraints`:
the lexical constraint states and pack_constraints/unpack_constraints. fairseq 0.12.2 has it as
`fairseq.token_generation_constraints`, and plugins import it so. This name is that module itself
(sys.modules), not a copy.
"""

import sys

from fairseq_lite.generation import constraints as _module

sys.modules[__name__] = _module
