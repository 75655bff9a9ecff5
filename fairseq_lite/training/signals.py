"""Stopping a run cleanly on a signal: SIGTERM (a SLURM preemption, `kill`) or Ctrl-C finishes the
update in progress, writes checkpoint_last.pt, and stops; the same command then resumes."""

import logging
import signal
import threading
from collections.abc import Sequence

from fairseq_lite.distributed import all_reduce_sums, get_world_size

logger = logging.getLogger(__name__)

DEFAULT_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """`with GracefulStop(signals) as stop:` ... `if stop.requested(): save and stop`.

    Only the main thread can install signal handlers; elsewhere (a sweep job run in a thread) the
    signals keep their handlers. A second signal stops at once: its handler is the previous one again.
    """

    def __init__(self, signals: Sequence[int] = DEFAULT_SIGNALS):
        self.signals = tuple(signals)
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def requested(self) -> bool:
        """Whether to stop now; with several ranks, all of them agree (one may see the signal an
        update before another, and must not leave the others waiting in a collective)."""
        wanted = self.signum is not None
        if get_world_size() > 1:
            wanted = all_reduce_sums({"stop": float(wanted)})["stop"] > 0
        return wanted

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        logger.warning(
            f"received {signal.Signals(signum).name}: stopping after the current update (send it again to stop at once)"
        )
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
