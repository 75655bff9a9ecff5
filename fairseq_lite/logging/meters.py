"""Meters: what fairseq's `fairseq.logging.meters` has, for the values `logging.metrics` aggregates.

A meter takes values (`update`) and reports one number (`smoothed_value`), rounded as it was asked to be
when it was made: fairseq's log lines show these rounded numbers, and so do ours. `MetersDict` keeps
meters in the order of their priority (lower first: the order of the fields in a log line) and
computes derived meters (ppl from loss) when read.
"""

import bisect
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch


def safe_round(number: Any, ndigits: int) -> Any:
    """round() for Python numbers, one-element tensors and numpy scalars; other values as they are."""
    if torch.is_tensor(number) and number.numel() == 1:
        return safe_round(number.item(), ndigits)
    if hasattr(number, "item") and getattr(number, "ndim", None) == 0:  # a numpy scalar
        return safe_round(number.item(), ndigits)
    if hasattr(number, "__round__"):
        return round(number, ndigits)
    return number


def _rounded(value: Any, ndigits: int | None) -> Any:
    return safe_round(value, ndigits) if ndigits is not None and value is not None else value


class Meter:
    """A value aggregated over updates (or batches)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass

    def reset(self) -> None:
        raise NotImplementedError

    @property
    def smoothed_value(self) -> float:
        raise NotImplementedError


class AverageMeter(Meter):
    """The weighted average of the values (weight `n`); with only weight-0 updates, the latest value."""

    def __init__(self, round: int | None = None):
        self.round = round
        self.reset()

    def reset(self) -> None:
        self.val = None  # the latest value
        self.sum = 0
        self.count = 0

    def update(self, val: Any, n: float = 1) -> None:
        if val is None:
            return
        self.val = val
        if n > 0:
            self.sum = self.sum + val * n
            self.count = self.count + n

    def state_dict(self) -> dict[str, Any]:
        return {"val": self.val, "sum": self.sum, "count": self.count, "round": self.round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.val, self.sum, self.count = state_dict["val"], state_dict["sum"], state_dict["count"]
        self.round = state_dict.get("round")

    @property
    def avg(self) -> Any:
        return self.sum / self.count if self.count > 0 else self.val

    @property
    def smoothed_value(self) -> float:
        return _rounded(self.avg, self.round)


class SumMeter(Meter):
    """The sum of the values."""

    def __init__(self, round: int | None = None):
        self.round = round
        self.reset()

    def reset(self) -> None:
        self.sum = 0

    def update(self, val: Any) -> None:
        if val is not None:
            self.sum = self.sum + val

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "round": self.round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sum, self.round = state_dict["sum"], state_dict.get("round")

    @property
    def smoothed_value(self) -> float:
        return _rounded(self.sum, self.round)


class TimeMeter(Meter):
    """A rate: the values summed since the meter was (re)started, per second. `metrics.log_speed`
    restarts it on its first value, which therefore only starts the clock (as in fairseq)."""

    def __init__(self, init: float = 0, n: float = 0, round: int | None = None):
        self.round = round
        self.reset(init, n)

    def reset(self, init: float = 0, n: float = 0) -> None:
        self.init = init
        self.start = time.perf_counter()
        self.n = n
        self.i = 0

    def update(self, val: float = 1) -> None:
        self.n = self.n + val
        self.i += 1

    def state_dict(self) -> dict[str, Any]:
        return {"init": self.elapsed_time, "n": self.n, "round": self.round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reset(init=state_dict["init"], n=state_dict.get("n", 0))
        self.round = state_dict.get("round")

    @property
    def elapsed_time(self) -> float:
        return self.init + (time.perf_counter() - self.start)

    @property
    def avg(self) -> float:
        return self.n / max(self.elapsed_time, 1e-9)

    @property
    def smoothed_value(self) -> float:
        return _rounded(self.avg, self.round)


class StopwatchMeter(Meter):
    """Time spent between start() and stop(), summed; `sum` can start from a checkpoint's value so
    that `wall` and `train_wall` keep counting across a resume, as in fairseq. `avg` is per `n` (the
    count stop() was given)."""

    def __init__(self, round: int | None = None, initial: float = 0.0):
        self.round = round
        self.sum = initial
        self.n = 0
        self.start_time: float | None = None

    def start(self) -> None:
        self.start_time = time.perf_counter()

    def stop(self, n: int = 1, prehook: Callable[[], None] | None = None) -> None:
        if self.start_time is not None:
            if prehook is not None:
                prehook()
            self.sum += time.perf_counter() - self.start_time
            self.n += n
            self.start_time = None

    def reset(self) -> None:
        self.sum, self.n = 0.0, 0
        self.start()

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self.sum, "n": self.n, "round": self.round}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.sum, self.n, self.round = state_dict["sum"], state_dict["n"], state_dict.get("round")
        self.start_time = None

    @property
    def avg(self) -> float:
        return self.sum / self.n if self.n > 0 else self.sum

    @property
    def elapsed_time(self) -> float:
        running = time.perf_counter() - self.start_time if self.start_time is not None else 0.0
        return self.sum + running

    @property
    def smoothed_value(self) -> float:
        return _rounded(self.sum if self.sum > 0 else self.elapsed_time, self.round)


class DerivedMeter(Meter):
    """A value computed from the other meters of its MetersDict when read (ppl from loss)."""

    def __init__(self, fn: Callable[["MetersDict"], Any]):
        self.fn = fn

    def reset(self) -> None:
        pass


class MetersDict(OrderedDict):
    """Meters by name, in the order of their priority (lower first; ties in the order they came)."""

    _DerivedMeter = DerivedMeter  # fairseq's name for it

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.priorities: list[tuple[int, int, str]] = []

    def add_meter(self, key: str, meter: Meter, priority: int) -> None:
        if key in self:
            raise KeyError(f"meter '{key}' is already in this MetersDict")
        bisect.insort(self.priorities, (priority, len(self.priorities), key))
        super().__setitem__(key, meter)
        for _, _, name in self.priorities:
            self.move_to_end(name)

    def state_dict(self) -> list[tuple[int, str, str, dict[str, Any]]]:
        return [
            (priority, name, type(self[name]).__name__, self[name].state_dict())
            for priority, _, name in self.priorities
            if not isinstance(self[name], DerivedMeter)  # a function does not serialize
        ]

    def load_state_dict(self, state_dict: list[tuple[int, str, str, dict[str, Any]]]) -> None:
        self.clear()
        self.priorities.clear()
        kinds = {cls.__name__: cls for cls in (AverageMeter, SumMeter, TimeMeter, StopwatchMeter)}
        for priority, name, kind, meter_state in state_dict:
            meter = kinds[kind]()
            meter.load_state_dict(meter_state)
            self.add_meter(name, meter, priority)

    def get_smoothed_value(self, key: str) -> Any:
        meter = self[key]
        return meter.fn(self) if isinstance(meter, DerivedMeter) else meter.smoothed_value

    def get_smoothed_values(self) -> dict[str, Any]:
        """Every meter's value, by priority; names starting with '_' are inputs of derived meters,
        not shown."""
        return OrderedDict((k, self.get_smoothed_value(k)) for k in self if not k.startswith("_"))

    def reset(self) -> None:
        for meter in self.values():
            meter.reset()
