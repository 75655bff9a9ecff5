"""Running statistics for training logs: fairseq's fields, without its global metrics registry."""

import math
import time
from collections.abc import Callable


class StopwatchMeter:
    """Sums the time spent between start() and stop(); restored from checkpoints so `wall` and
    `train_wall` keep counting across a resume, as in fairseq."""

    def __init__(self, initial: float = 0.0):
        self.sum = initial
        self.start_time: float | None = None

    def start(self):
        self.start_time = time.perf_counter()

    def stop(self):
        if self.start_time is not None:
            self.sum += time.perf_counter() - self.start_time
            self.start_time = None

    @property
    def elapsed_time(self) -> float:
        running = time.perf_counter() - self.start_time if self.start_time is not None else 0.0
        return self.sum + running


class UpdateStats:
    """Sums what the criterion logs over a window of updates (log interval, epoch, validation) and
    turns it into fairseq's log fields: loss, ppl, wps, ups, wpb, bsz, gnorm, clip."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.num_updates = 0
        self.gnorm_sum = 0.0
        self.num_clipped = 0
        self.start = time.perf_counter()

    def add(self, logging_output: dict[str, float], gnorm: float | None = None, clipped: bool = False):
        for key, value in logging_output.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.totals[key] = self.totals.get(key, 0.0) + value
        if gnorm is not None:
            self.num_updates += 1
            self.gnorm_sum += gnorm if math.isfinite(gnorm) else 0.0
            self.num_clipped += int(clipped)

    def stats(
        self, reduce_metrics: Callable[[dict[str, float]], dict[str, float]], training: bool = True
    ) -> dict[str, float]:
        out = dict(reduce_metrics(self.totals)) if self.totals.get("sample_size", 0) > 0 else {}
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        ntokens = self.totals.get("ntokens", 0.0)
        out["wps"] = ntokens / elapsed
        if training and self.num_updates:
            out["ups"] = self.num_updates / elapsed
            out["wpb"] = ntokens / self.num_updates
            out["bsz"] = self.totals.get("nsentences", 0.0) / self.num_updates
        elif not training:
            batches = max(self.totals.get("_batches", 0.0), 1.0)
            out["wpb"] = ntokens / batches
            out["bsz"] = self.totals.get("nsentences", 0.0) / batches
        return out

    def gnorm_stats(self, clip_norm: float) -> dict[str, float]:
        if not self.num_updates:
            return {}
        out = {"gnorm": self.gnorm_sum / self.num_updates}
        if clip_norm > 0:
            out["clip"] = 100.0 * self.num_clipped / self.num_updates
        return out
