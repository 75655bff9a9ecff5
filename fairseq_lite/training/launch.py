"""Starting a training run on one or many processes, as fairseq does: in this process; in each worker
torchrun started (env:// rendezvous, one or many nodes); or in `distributed_training.distributed_world_size`
local workers this command spawns, with a TCPStore hosted here, outside every worker.

A worker that hangs instead of dying (stopped, frozen, its host unreachable) ends the job: with
`distributed_training.heartbeat_timeout` > 0 every rank beats in the job's store
(distributed/heartbeat.py), and when one falls silent for that long the rank watching it prints one line
naming it, kills it if it runs on the same host (torchrun would kill it only after a 30 s grace), and
exits non-zero; the launcher then stops the others, so the job ends instead of waiting in a collective.
"""

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist

from fairseq_lite.cli_utils import setup_logging
from fairseq_lite.distributed import (
    all_reduce_sums,
    collective_timeout,
    free_port,
    init_distributed,
    launched_by_torchrun,
)
from fairseq_lite.distributed.heartbeat import HOST, Heartbeat, Peer, process_start_time, store_client
from fairseq_lite.errors import FairseqLiteError, RankUnresponsiveError, TrainingInterrupted, setting
from fairseq_lite.options.compose import config_from_dict, to_plain_dict
from fairseq_lite.training.checks import check_device_and_precision

logger = logging.getLogger(__name__)

# A worker that stops on a user error (FairseqLiteError) exits with this code after handing the error to
# the parent, which raises it as its own: one line for the user, not spawn's traceback of every worker.
USER_ERROR_EXIT = 3
# A torchrun worker ending the job because another rank hangs.
UNRESPONSIVE_EXIT = 1


def call_main(cfg: Any, main: Callable, prog: str | None = None, flags: bool = False) -> float | None:
    """Run `main(cfg)` in this process, in each torchrun worker, or in spawned local workers (which call
    `main(cfg, stop_signals=(SIGTERM,))`: the command passes Ctrl-C on to them as one SIGTERM).

    `prog` and `flags` say how to print the one line that ends a job a hung rank blocks: as that
    command's error, with keys as `--flags` or as `group.field`."""
    world_size = cfg.distributed_training.distributed_world_size
    if launched_by_torchrun():
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        init_distributed(cfg, rank, size, int(os.environ["LOCAL_RANK"]), "env://")
        if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and rank == 0:
            logger.warning(
                "torchrun's store is hosted by rank 0 here (not by its agent): if rank 0 itself hangs, the "
                "heartbeat cannot tell, and the job ends after the collective timeout instead"
            )
        store = (os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]))
        prefix = f"fairseq_lite/heartbeat/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        on_silent = _end_torchrun_job(cfg, prog or os.path.basename(sys.argv[0]) or "fairseq-train", flags)
        heartbeat = start_heartbeat(cfg, store, rank, size, on_silent, prefix)
        try:
            return main(cfg)
        finally:
            if heartbeat is not None:
                heartbeat.close()
            dist.destroy_process_group()
    if world_size > 1:
        check_device_and_precision(cfg)  # what can be started here (no_spawn needs torchrun, enough GPUs)
        _spawn_and_wait(cfg, main, world_size)
        return None
    return main(cfg)


# --- hangs ---------------------------------------------------------------------------------------


def start_heartbeat(cfg: Any, store: tuple[str, int] | None, rank: int, world_size: int, on_silent, prefix: str):
    """Every rank's heartbeat, started once all ranks made theirs (a collective: every rank calls it)."""
    timeout = cfg.distributed_training.heartbeat_timeout
    if store is None or world_size < 2 or not timeout or timeout <= 0:
        return None
    heartbeat, problem = None, None
    try:
        client = store_client(store[0], store[1], timeout=max(30.0, float(timeout)))
        heartbeat = Heartbeat(client, rank, world_size, float(timeout), on_silent, prefix=prefix)
    except Exception as e:
        problem = e
    # All ranks beat, or none does: a rank without a heartbeat would look hung to the others.
    ready = all_reduce_sums({"heartbeat_ready": float(heartbeat is not None)})["heartbeat_ready"]
    if ready < world_size:
        if rank == 0 or problem is not None:
            logger.warning(
                f"no heartbeat ({'this rank' if problem else 'a rank'} cannot use the job's store at "
                f"{store[0]}:{store[1]}{f': {problem}' if problem else ''}); a rank that hangs ends the job after "
                f"the collective timeout instead"
            )
        return None
    return heartbeat.start()


def unresponsive_message(silent: list[int], peers: dict[int, Peer], timeout: int | float) -> str:
    who = ", ".join(f"rank {r}" + (f" (pid {peers[r].pid} on {peers[r].host})" if r in peers else "") for r in silent)
    verb = "has" if len(silent) == 1 else "have"
    return (
        f"{who} {verb} not answered for {timeout} s "
        f"({setting('distributed_training.heartbeat_timeout', timeout)}): it hangs, is stopped or lost its host; "
        f"ending the job (rerun the same command to resume from the last checkpoint)"
    )


def _kill_silent_peers(silent: list[int], peers: dict[int, Peer]) -> None:
    """A silent rank on this host would keep the job alive: torchrun, or our spawner, would wait for it.
    Only the very process that registered is killed (same pid and start time: never a reused pid)."""
    for r in silent:
        peer = peers.get(r)
        if peer is None or peer.host != HOST or peer.pid == os.getpid():
            continue
        if not peer.start_time or process_start_time(peer.pid) != peer.start_time:
            continue
        try:
            os.kill(peer.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _end_torchrun_job(cfg: Any, prog: str, flags: bool):
    timeout = cfg.distributed_training.heartbeat_timeout

    def on_silent(silent: list[int], peers: dict[int, Peer]) -> None:
        """Called from the heartbeat thread: the main thread may be inside a collective that will never
        complete, so this process ends from here. Checkpoints are written atomically: one being written
        now is dropped (its temp file is removed by the next run), the previous one stays whole."""
        error = RankUnresponsiveError(unresponsive_message(silent, peers, timeout))
        print(f"{prog}: error: {error.render(flags=flags)}", file=sys.stderr, flush=True)  # the one watcher
        _kill_silent_peers(silent, peers)
        sys.stdout.flush()
        os._exit(UNRESPONSIVE_EXIT)

    return on_silent


# --- spawned local workers ---------------------------------------------------------------------------


def _spawn_and_wait(cfg: Any, main: Callable, world_size: int) -> None:
    """Start the workers and wait for them; SIGINT/SIGTERM to this process is passed on to them as
    SIGTERM (they save and stop), and their orderly stop becomes this command's TrainingInterrupted."""
    dt = cfg.distributed_training
    store = None
    if dt.distributed_init_method:
        init_method = dt.distributed_init_method
        if dt.heartbeat_timeout and dt.heartbeat_timeout > 0:
            logger.warning(
                "distributed_training.distributed_init_method is set: no store of this command's for the "
                "heartbeat, so a worker that hangs ends the job after the collective timeout instead"
            )
    else:
        # The store lives here, outside every worker, so that it answers whichever worker hangs.
        port = dt.distributed_port if dt.distributed_port and dt.distributed_port > 0 else free_port()
        store_server = dist.TCPStore(
            "127.0.0.1", port, world_size, is_master=True, timeout=collective_timeout(cfg), wait_for_workers=False
        )
        store = ("127.0.0.1", store_server.port)
        init_method = f"tcp://127.0.0.1:{store_server.port}"
    logger.info(f"spawning {world_size} local workers ({init_method})")
    # The typed config holds dynamically made enums that do not pickle: send plain containers.
    log_files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    user_errors = torch.multiprocessing.get_context("spawn").SimpleQueue()
    args = (main, to_plain_dict(cfg), init_method, store, world_size, log_files, user_errors)
    context = torch.multiprocessing.start_processes(
        _spawned_worker, args=args, nprocs=world_size, join=False, start_method="spawn"
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
        if not user_errors.empty():  # a worker's one-line error (put there before it or a peer exited)
            raise user_errors.get() from None
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _spawned_worker(
    local_rank: int,
    main: Callable,
    plain_cfg: dict,
    init_method: str,
    store: tuple[str, int] | None,
    world_size: int,
    log_files: list[str],
    user_errors,
) -> None:
    # A spawned process starts with no logging set up: log like the parent, to its log files too.
    setup_logging()
    for path in log_files:
        handler = logging.FileHandler(path)
        handler.setFormatter(logging.getLogger().handlers[0].formatter)
        logging.getLogger().addHandler(handler)
    # Ctrl-C reaches every process of the terminal's group: let the parent alone take it and pass it on
    # as one SIGTERM, so that each worker sees exactly one signal (a second one means "stop at once").
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cfg = config_from_dict(plain_cfg)  # a fresh process: this also imports the plugins again
    if store is None:
        init_distributed(cfg, local_rank, world_size, local_rank, init_method)
    else:  # a client of the store this command hosts
        client = dist.TCPStore(store[0], store[1], is_master=False, timeout=collective_timeout(cfg))
        init_distributed(cfg, local_rank, world_size, local_rank, store=client)
    timeout = cfg.distributed_training.heartbeat_timeout

    def on_silent(silent: list[int], peers: dict[int, Peer]) -> None:
        user_errors.put(RankUnresponsiveError(unresponsive_message(silent, peers, timeout)))
        _kill_silent_peers(silent, peers)
        os._exit(USER_ERROR_EXIT)

    heartbeat = start_heartbeat(cfg, store, local_rank, world_size, on_silent, "fairseq_lite/heartbeat")
    try:
        main(cfg, stop_signals=(signal.SIGTERM,))
    except TrainingInterrupted as stop:
        sys.exit(128 + stop.signum)  # the parent reports it, once
    except FairseqLiteError as error:
        user_errors.put(error)
        sys.exit(USER_ERROR_EXIT)
    finally:
        if heartbeat is not None:
            heartbeat.close()
        dist.destroy_process_group()
