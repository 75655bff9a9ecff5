"""torch.distributed for the rest of fairseq-lite: this process's rank and the world size, joining the
process group (nccl on GPUs, gloo on CPU), and summing numbers over ranks. Nothing home-made:
rendezvous, collectives and failure handling are torch's. Starting the processes (torchrun, or
spawned local workers) is training/launch.py.
"""

import datetime
import logging
import os
import socket
from typing import Any

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_master(cfg: Any = None) -> bool:
    """Whether this is rank 0 (fairseq's is_master(cfg) reads the rank from the config; the process
    group knows it)."""
    return get_rank() == 0


# fairseq's names for the data-parallel group: one group, every rank (no model parallelism here).
def get_data_parallel_group() -> Any:
    return dist.group.WORLD if dist.is_available() and dist.is_initialized() else None


def get_data_parallel_rank() -> int:
    return get_rank()


def get_data_parallel_world_size() -> int:
    return get_world_size()


def get_global_rank() -> int:
    return get_rank()


def get_global_world_size() -> int:
    return get_world_size()


def all_reduce(tensor: torch.Tensor, group: Any = None, op: str = "sum") -> torch.Tensor:
    """Sum (or "max") `tensor` over the ranks, in place; returned too, as fairseq's."""
    if get_world_size() > 1:
        reduce_op = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
        dist.all_reduce(tensor, op=reduce_op, group=group)
    return tensor


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def collective_timeout(cfg) -> datetime.timedelta:
    """How long a collective may wait for the other ranks before it fails. With a heartbeat_timeout,
    a rank that stops answering is caught by the heartbeat (distributed/heartbeat.py) after that long;
    collectives wait twice as long, for ranks that are alive but stuck. Without one: 30 minutes."""
    seconds = cfg.distributed_training.heartbeat_timeout
    return datetime.timedelta(seconds=2 * seconds if seconds and seconds > 0 else 1800)


def _backend(cfg) -> str:
    """distributed_training.distributed_backend; unset: nccl with GPUs, gloo without."""
    if cfg.distributed_training.distributed_backend:
        return cfg.distributed_training.distributed_backend
    return "nccl" if torch.cuda.is_available() and not cfg.common.cpu else "gloo"


def init_distributed(
    cfg, rank: int, world_size: int, local_rank: int, init_method: str | None = None, store: dist.Store | None = None
) -> None:
    """Join the process group as `rank` of `world_size`, by `init_method` or through an existing `store`;
    collectives time out after collective_timeout(cfg)."""
    cfg.distributed_training.distributed_rank = rank
    cfg.distributed_training.distributed_world_size = world_size
    if torch.cuda.is_available() and not cfg.common.cpu:
        cfg.distributed_training.device_id = local_rank
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=_backend(cfg),
        init_method=init_method if store is None else None,
        store=store,
        world_size=world_size,
        rank=rank,
        timeout=collective_timeout(cfg),
    )
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 logs progress
    logger.info(f"distributed init: rank {rank} of {world_size} ({_backend(cfg)}, {init_method or 'store'})")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def barrier() -> None:
    """Wait until every rank is here (nothing to wait for with one process)."""
    if get_world_size() > 1:
        dist.barrier()


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """Sum a dict of numbers over all ranks (the same keys on every rank)."""
    if get_world_size() == 1:
        return values
    # Ranks may have seen different keys (e.g. one had only padding batches): sum over the union.
    gathered = [None] * get_world_size()
    dist.all_gather_object(gathered, sorted(values))
    keys = sorted(set().union(*gathered))
    tensor = torch.tensor([float(values.get(k, 0.0)) for k in keys], dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return dict(zip(keys, tensor.cpu().tolist()))


def all_gather_list(data: Any, group: Any = None, max_size: int | None = None) -> list[Any]:
    """Every rank's `data` (any picklable object), in rank order, as fairseq's all_gather_list returns
    it. `max_size` is accepted for fairseq's signature: torch sizes the buffers itself."""
    world = dist.get_world_size(group) if get_world_size() > 1 else 1
    if world == 1:
        return [data]
    gathered: list[Any] = [None] * world
    dist.all_gather_object(gathered, data, group=group)
    return gathered
