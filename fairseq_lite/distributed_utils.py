"""`from fairseq_lite import distributed_utils`: fairseq's old import path of `distributed.utils`: fairseq's rank
and collective helpers (get_rank, all_reduce, all_gather_list, ...). fairseq 0.12.2 still aliases
`fairseq.distributed_utils` to it, and plugins import it so. This name is that module itself (sys.modules),
not a copy.
"""

import sys

from fairseq_lite.distributed import utils as _module

sys.modules[__name__] = _module
