"""Multi-process training on torch.distributed: launched by torchrun (env:// rendezvous, one or many
nodes) or spawned by the command itself for `distributed_training.distributed_world_size` local workers,
as fairseq does. nccl on GPUs, gloo on CPU. Nothing home-made: rendezvous, collectives and failure
handling are torch's.
"""

import datetime
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable

import torch
import torch.distributed as dist

from fairseq_lite.errors import ConfigError

logger = logging.getLogger(__name__)


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_master() -> bool:
    return get_rank() == 0


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"))


def _timeout(cfg) -> datetime.timedelta:
    # heartbeat_timeout bounds every collective: a rank that died or hangs ends the job instead of
    # leaving the others waiting forever.
    seconds = cfg.distributed_training.heartbeat_timeout
    return datetime.timedelta(seconds=seconds if seconds and seconds > 0 else 1800)


def _backend(cfg) -> str:
    if torch.cuda.is_available() and not cfg.common.cpu:
        return "nccl"
    return "gloo"


def _init(cfg, rank: int, world_size: int, local_rank: int, init_method: str) -> None:
    cfg.distributed_training.distributed_rank = rank
    cfg.distributed_training.distributed_world_size = world_size
    if torch.cuda.is_available() and not cfg.common.cpu:
        cfg.distributed_training.device_id = local_rank
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        backend=_backend(cfg), init_method=init_method, world_size=world_size, rank=rank, timeout=_timeout(cfg)
    )
    if rank != 0:
        logging.getLogger().setLevel(logging.WARNING)  # only rank 0 logs progress
    logger.info(f"distributed init: rank {rank} of {world_size} ({_backend(cfg)}, {init_method})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A worker that stops on a user error (FairseqLiteError) exits with this code after handing the error to
# the parent, which raises it as its own: one line for the user, not spawn's traceback of every worker.
_USER_ERROR_EXIT = 3


def _spawned_worker(
    local_rank: int,
    main: Callable,
    plain_cfg: dict,
    init_method: str,
    world_size: int,
    log_files: list[str],
    user_errors,
) -> None:
    from fairseq_lite.cli_utils import setup_logging
    from fairseq_lite.dataclass.compose import config_from_dict

    # A spawned process starts with no logging set up: log like the parent, to its log files too.
    setup_logging()
    for path in log_files:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().addHandler(handler)
    from fairseq_lite.errors import FairseqLiteError, TrainingInterrupted
    from fairseq_lite.training import GracefulStop

    # Ctrl-C reaches every process of the terminal's group: let the parent alone take it and pass it on
    # as one SIGTERM, so that each worker sees exactly one signal (a second one means "stop at once").
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    GracefulStop.SIGNALS = (signal.SIGTERM,)
    cfg = config_from_dict(plain_cfg)  # a fresh process: this also imports the plugins again
    _init(cfg, local_rank, world_size, local_rank, init_method)
    try:
        main(cfg)
    except TrainingInterrupted as stop:
        sys.exit(128 + stop.signum)  # the parent reports it, once
    except FairseqLiteError as error:
        user_errors.put(error)
        sys.exit(_USER_ERROR_EXIT)
    finally:
        dist.destroy_process_group()


def _spawn_and_wait(world_size: int, args: tuple) -> None:
    """Start the workers and wait for them; SIGINT/SIGTERM to this process is passed on to them as
    SIGTERM (they save and stop), and their orderly stop becomes this command's TrainingInterrupted."""
    from fairseq_lite.errors import TrainingInterrupted

    user_errors = torch.multiprocessing.get_context("spawn").SimpleQueue()
    context = torch.multiprocessing.start_processes(
        _spawned_worker, args=(*args, user_errors), nprocs=world_size, join=False, start_method="spawn"
    )
    received = []

    def forward(signum, frame):
        received.append(signum)
        logger.warning(
            f"received {signal.Signals(signum).name}: the workers stop after the current update "
            f"(send it again to stop at once)"
        )
        for process in context.processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        # join raises as soon as one worker fails, after terminating the others.
        while not context.join():
            pass
    except torch.multiprocessing.ProcessExitedException as e:
        if received and e.exit_code == 128 + signal.SIGTERM:
            name = signal.Signals(received[0]).name
            raise TrainingInterrupted(
                received[0],
                f"stopped by {name}: the workers saved checkpoint_last.pt; rerun the same command to resume",
            ) from None
        if e.exit_code == _USER_ERROR_EXIT and not user_errors.empty():
            raise user_errors.get() from None
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def call_main(cfg, main: Callable) -> float | None:
    """Run `main(cfg)` in this process, in each torchrun worker, or in spawned local workers."""
    world_size = cfg.distributed_training.distributed_world_size
    if launched_by_torchrun():
        _init(cfg, int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]), "env://")
        try:
            return main(cfg)
        finally:
            dist.destroy_process_group()
    if world_size > 1:
        if cfg.distributed_training.distributed_no_spawn:
            raise ConfigError(
                "distributed_training.distributed_no_spawn is set but this process was not started "
                "by torchrun: launch with `torchrun --nproc_per_node N ...`"
            )
        if torch.cuda.is_available() and not cfg.common.cpu and world_size > torch.cuda.device_count():
            raise ConfigError(
                f"distributed_training.distributed_world_size={world_size} but only "
                f"{torch.cuda.device_count()} GPUs are visible"
            )
        port = cfg.distributed_training.distributed_port
        init_method = (
            cfg.distributed_training.distributed_init_method
            or f"tcp://127.0.0.1:{port if port and port > 0 else _free_port()}"
        )
        logger.info(f"spawning {world_size} local workers ({init_method})")
        from fairseq_lite.dataclass.compose import to_plain_dict

        # The typed config holds dynamically made enums that do not pickle: send plain containers.
        log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
        _spawn_and_wait(world_size, (main, to_plain_dict(cfg), init_method, world_size, log_files))
        return None
    return main(cfg)


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
