"""The heartbeat that tells a hung rank from a slow or finished one (distributed/heartbeat.py), on one
real TCPStore shared by heartbeats standing for two ranks."""

import datetime
import threading

import pytest
import torch.distributed as dist

from fairseq_lite.distributed.heartbeat import Heartbeat, process_start_time

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is unavailable")


@pytest.fixture
def store():
    server = dist.TCPStore(
        "127.0.0.1", 0, 2, is_master=True, timeout=datetime.timedelta(seconds=10), wait_for_workers=False
    )
    yield server


def watch(store, rank, timeout=1.0):
    fired = threading.Event()
    seen = {}

    def on_silent(silent, peers):
        seen["silent"], seen["peers"] = silent, peers
        fired.set()

    return Heartbeat(store, rank, 2, timeout, on_silent, prefix="test"), fired, seen


def test_a_rank_that_stops_beating_is_named_with_its_pid(store):
    import os

    alive, fired, seen = watch(store, 0)
    stopped, _, _ = watch(store, 1)  # registered, never beats: as a SIGSTOPped process
    alive.start()
    assert fired.wait(5), "the silent rank was not noticed"
    assert seen["silent"] == [1]
    peer = seen["peers"][1]
    assert peer.pid == os.getpid() and peer.start_time == process_start_time(os.getpid())
    alive.close()


def test_a_slow_rank_that_keeps_beating_is_not_named(store):
    a, fired_a, _ = watch(store, 0)
    b, fired_b, _ = watch(store, 1)
    a.start(), b.start()
    assert not fired_a.wait(2.5) and not fired_b.is_set()  # well past the 1 s timeout
    a.close(), b.close()


def test_a_rank_that_finished_is_not_taken_for_a_hung_one(store):
    a, fired_a, _ = watch(store, 0)
    b, _, _ = watch(store, 1)
    a.start(), b.start()
    b.close()  # its run ended: rank 0 may go on (writing the last checkpoint) for longer than the timeout
    assert not fired_a.wait(2.5)
    a.close()
