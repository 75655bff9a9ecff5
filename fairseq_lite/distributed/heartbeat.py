"""Telling a rank that hangs from one that is slow: every rank beats in the job's torch.distributed
TCPStore, and a rank whose beat stops for `distributed_training.heartbeat_timeout` seconds is named.

Each rank runs a daemon thread that adds 1 to its counter in the store every `interval` seconds and
looks at the others' counters. A process that is stopped (SIGSTOP, a debugger, a host frozen) or gone
stops counting, while a rank that is merely slow (a long validation, a checkpoint save, a compile)
keeps counting, since the thread runs beside whatever the main thread does. Counters, not clocks: each
rank times the others with its own monotonic clock, so clocks that differ between hosts do not matter.

When a rank falls silent, `on_silent(silent, peers)` is called on every other rank, from the thread:
the launcher (training/launch.py) then ends the job, since the silent rank will never join another
collective. The store is the one torchrun's agent (or the spawning command) hosts, outside every
rank, so it keeps answering whichever rank hangs.
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


def beat_interval(timeout: float) -> float:
    """How often to beat: several times per timeout, at most every 5 s."""
    return max(0.2, min(5.0, timeout / 5))


class Heartbeat:
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
        self.store.set(f"{prefix}/peer/{rank}", f"{HOST} {os.getpid()}")
        self.store.add(self._counter(rank), 1)
        self._thread = threading.Thread(target=self._run, name="fairseq-lite-heartbeat", daemon=True)

    def _counter(self, rank: int) -> str:
        return f"{self.prefix}/count/{rank}"

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()

    def peers(self) -> dict[int, Peer]:
        """Host and pid of every rank that said so (read once the job has started)."""
        found = {}
        for rank in range(self.world_size):
            key = f"{self.prefix}/peer/{rank}"
            if self.store.check([key]):
                host, pid = self.store.get(key).decode().rsplit(" ", 1)
                found[rank] = Peer(rank, host, int(pid))
        return found

    def _run(self) -> None:
        last_count = [-1] * self.world_size
        last_change = [time.monotonic()] * self.world_size
        while not self._stop.wait(self.interval):
            try:
                self.store.add(self._counter(self.rank), 1)
                counts = [self.store.add(self._counter(r), 0) for r in range(self.world_size)]  # +0: a read
            except Exception as e:  # the store itself went away: the job is ending (or its host died)
                logger.debug(f"heartbeat: the store does not answer ({e})")
                continue
            now = time.monotonic()
            for r, count in enumerate(counts):
                if count != last_count[r]:
                    last_count[r], last_change[r] = count, now
            silent = [r for r in range(self.world_size) if r != self.rank and now - last_change[r] > self.timeout]
            if silent and not self._stop.is_set():
                try:
                    peers = self.peers()
                except Exception:  # the names are a courtesy: end the job without them
                    peers = {}
                self.on_silent(silent, peers)
                return


def store_client(host: str, port: int, timeout: float) -> dist.TCPStore:
    """A client of the job's TCPStore at host:port (the one torchrun's agent or the launcher hosts)."""
    return dist.TCPStore(
        host, port, is_master=False, timeout=datetime.timedelta(seconds=timeout), wait_for_workers=False
    )
