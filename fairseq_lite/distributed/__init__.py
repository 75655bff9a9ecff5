from fairseq_lite.distributed.utils import (
    all_gather_list,
    all_reduce_sums,
    barrier,
    collective_timeout,
    free_port,
    get_rank,
    get_world_size,
    init_distributed,
    is_master,
    launched_by_torchrun,
)

__all__ = [
    "all_gather_list",
    "all_reduce_sums",
    "barrier",
    "collective_timeout",
    "free_port",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_master",
    "launched_by_torchrun",
]
