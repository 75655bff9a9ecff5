from fairseq_lite.distributed.utils import (  # noqa: F401
    all_reduce_sums,
    call_main,
    get_rank,
    get_world_size,
    is_master,
)
