"""Telling a rank that hangs from one that is slow: every rank beats in the job's torch.distributed
TCPStore, and a rank whose beat stops for `distributed_training.heartbeat_timeout` seconds is named.

Each rank runs a daemon thread that adds 1 to its counter in the store every `interval` seconds and
reads the counter of the next rank (rank r watches rank r+1, around the ring: two store operations per
rank per interval, whatever the world size, and every rank is watched by one other). A process that is
stopped (SIGSTOP, a debugger, a frozen host) stops counting, while a rank that is merely slow (a long
validation, a checkpoint save, a compile) keeps counting, since the thread runs beside whatever the main
thread does. A rank that is done (its run ended, or it is leaving on an error that torchrun sees anyway)
says so, and is never taken for a silent one. Counters, not clocks: each rank times the one it watches
with its own monotonic clock, so clocks that differ between hosts do not matter.

When a rank falls silent, `on_silent(silent, peers)` is called on the rank watching it, from the
thread: the launcher (training/launch.py) then ends the job, since the silent rank will never join
another collective. The store should be one that no rank hosts (torchrun's agent store, or the one the
spawning command hosts), so that it keeps answering whichever rank hangs.
"""

import datetime
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch.distributed as dist

logger = logging.getLogger(__name__)

HOST = socket.gethostname()


@dataclass
class Peer:
    rank: int
    host: str
    pid: int
    start_time: str  # the process's start time (/proc/PID/stat), so that a reused pid is never mistaken for it


def process_start_time(pid: int) -> str:
    """The start time of process `pid` in clock ticks since boot ("" where /proc cannot tell)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The command name (field 2) may hold spaces; the fields after its ")" are fixed.
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_state(pid: int) -> str:
    """One letter: R running, S sleeping, T stopped, ... ("" when there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return ""


def beat_interval(timeout: float) -> float:
    """How often to beat: several times per timeout, at most every 5 s."""
    return max(0.2, min(5.0, timeout / 5))


class Heartbeat:
    """Made on every rank (which registers it in the store), then started once every rank has one."""

    def __init__(
        self,
        store: dist.Store,
        rank: int,
        world_size: int,
        timeout: float,
        on_silent: Callable[[list[int], dict[int, Peer]], None],
        prefix: str = "fairseq_lite/heartbeat",
    ):
        self.store = store
        self.rank = rank
        self.world_size = world_size
        self.timeout = timeout
        self.interval = beat_interval(timeout)
        self.on_silent = on_silent
        self.prefix = prefix
        self._stop = threading.Event()
        pid = os.getpid()
        self.store.set(f"{prefix}/peer/{rank}", f"{HOST} {pid} {process_start_time(pid)}")
        self.store.add(self._counter(rank), 1)
        self._thread = threading.Thread(target=self._run, name="fairseq-lite-heartbeat", daemon=True)

    def _counter(self, rank: int) -> str:
        return f"{self.prefix}/count/{rank}"

    def _done(self, rank: int) -> str:
        return f"{self.prefix}/done/{rank}"

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def close(self) -> None:
        """This rank is done: the others must not take its silence for a hang."""
        self._stop.set()
        try:
            self.store.set(self._done(self.rank), "1")
        except Exception as e:  # the store is gone: so is the job
            logger.debug(f"heartbeat: cannot say this rank is done ({e})")

    def peers(self) -> dict[int, Peer]:
        """Host, pid and start time of every rank (read once the job has started)."""
        found = {}
        for rank in range(self.world_size):
            key = f"{self.prefix}/peer/{rank}"
            if self.store.check([key]):
                host, pid, start = (self.store.get(key).decode().split(" ") + [""])[:3]
                found[rank] = Peer(rank, host, int(pid), start)
        return found

    def _run(self) -> None:
        watched = (self.rank + 1) % self.world_size
        last_count, last_change = b"", time.monotonic()
        while not self._stop.wait(self.interval):
            try:
                self.store.add(self._counter(self.rank), 1)
                count = self.store.get(self._counter(watched))  # made before any thread started
            except Exception as e:  # the store itself went away: the job is ending (or its host died)
                logger.debug(f"heartbeat: the store does not answer ({e})")
                continue
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
            if now - last_change <= self.timeout or self._stop.is_set():
                continue
            try:
                if self.store.check([self._done(watched)]):
                    last_change = now  # it finished: nothing to watch any more
                    continue
                peers = self.peers()
            except Exception:  # the names are a courtesy: end the job without them
                peers = {}
            if not self._stop.is_set():
                self.on_silent([watched], peers)
                return


def store_client(host: str, port: int, timeout: float) -> dist.TCPStore:
    """A client of the job's TCPStore at host:port (the one torchrun's agent or the launcher hosts)."""
    return dist.TCPStore(
        host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout), wait_for_workers=False
    )
