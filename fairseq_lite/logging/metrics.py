"""fairseq's `metrics` API: what a criterion's or a task's `reduce_metrics(logging_outputs)` logs.

    @classmethod
    def reduce_metrics(cls, logging_outputs):
        loss = sum(log.get("loss", 0) for log in logging_outputs)
        sample_size = sum(log.get("sample_size", 0) for log in logging_outputs)
        metrics.log_scalar("loss", loss / sample_size / math.log(2), sample_size, round=3)
        metrics.log_derived("ppl", lambda meters: utils.get_perplexity(meters["loss"].avg))

`log_*` record a value in every *active* aggregator (a MetersDict). The training loop makes them active
as fairseq's does: "train" for an epoch, "train_inner" for the updates between two log lines, a fresh
root for each validation; the always-active "default" sees everything. A log line is an aggregator's
smoothed values. This state is module-level because the API is: a plugin calls `metrics.log_scalar`
with no handle to pass. `reset()` clears it (a test, or a second run in one process).
"""

import contextlib
import uuid
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from fairseq_lite.logging.meters import (
    AverageMeter,
    DerivedMeter,
    Meter,
    MetersDict,
    StopwatchMeter,
    SumMeter,
    TimeMeter,
)

_aggregators: "OrderedDict[str, MetersDict]" = OrderedDict()
_active_aggregators: "OrderedDict[str, MetersDict]" = OrderedDict()
_active_aggregators_cnt: defaultdict[str, int] = defaultdict(int)


def reset() -> None:
    """Forget every aggregator; only "default" (which sees every value) is active."""
    _aggregators.clear()
    _active_aggregators.clear()
    _active_aggregators_cnt.clear()
    _aggregators["default"] = MetersDict()
    _active_aggregators["default"] = _aggregators["default"]
    _active_aggregators_cnt["default"] = 1


reset()


@contextlib.contextmanager
def aggregate(name: str | None = None, new_root: bool = False) -> Iterator[MetersDict]:
    """Record what is logged inside the block in the aggregator `name` too (made on first use and kept
    across blocks of the same name; a temporary one when no name is given). Blocks nest; `new_root`
    makes this aggregator the only active one inside the block (a validation's statistics stay out of
    "train")."""
    if name is None:
        name = str(uuid.uuid4())
        agg = MetersDict()
    else:
        if name == "default":
            raise ValueError("'default' is always active: aggregate under another name")
        agg = _aggregators.setdefault(name, MetersDict())
    if new_root:
        saved, saved_cnt = _active_aggregators.copy(), _active_aggregators_cnt.copy()
        _active_aggregators.clear()
        _active_aggregators_cnt.clear()
    _active_aggregators[name] = agg
    _active_aggregators_cnt[name] += 1
    try:
        yield agg
    finally:
        _active_aggregators_cnt[name] -= 1
        if _active_aggregators_cnt[name] == 0 and name in _active_aggregators:
            del _active_aggregators[name]
        if new_root:
            _active_aggregators.clear()
            _active_aggregators.update(saved)
            _active_aggregators_cnt.clear()
            _active_aggregators_cnt.update(saved_cnt)


def get_active_aggregators() -> list[MetersDict]:
    return list(_active_aggregators.values())


def _log(key: str, make: Callable[[], Meter], priority: int) -> list[tuple[MetersDict, bool]]:
    """(aggregator, whether the meter is new) for every active aggregator, the meter made where missing."""
    out = []
    for agg in get_active_aggregators():
        new = key not in agg
        if new:
            agg.add_meter(key, make(), priority)
        out.append((agg, new))
    return out


def log_scalar(key: str, value: Any, weight: float = 1, priority: int = 10, round: int | None = None) -> None:
    """A value averaged with `weight` (0: the latest value is shown); lower `priority` comes first in
    the log line; `round`: digits shown."""
    for agg, _ in _log(key, lambda: AverageMeter(round=round), priority):
        agg[key].update(value, weight)


def log_scalar_sum(key: str, value: Any, priority: int = 10, round: int | None = None) -> None:
    """A value summed over what the aggregator saw."""
    for agg, _ in _log(key, lambda: SumMeter(round=round), priority):
        agg[key].update(value)


def log_derived(key: str, fn: Callable[[MetersDict], Any], priority: int = 20) -> None:
    """A value computed from the aggregator's other meters when it is read."""
    _log(key, lambda: DerivedMeter(fn), priority)


def log_speed(key: str, value: float, priority: int = 30, round: int | None = None) -> None:
    """A rate per second; the first value only starts the clock."""
    for agg, new in _log(key, lambda: TimeMeter(round=round), priority):
        if new:
            agg[key].reset()
        else:
            agg[key].update(value)


def log_start_time(key: str, priority: int = 40, round: int | None = None) -> None:
    """Start a stopwatch (log_stop_time stops it)."""
    for agg, _ in _log(key, lambda: StopwatchMeter(round=round), priority):
        agg[key].start()


def log_stop_time(key: str, weight: float = 0.0, prehook: Callable[[], None] | None = None) -> None:
    """Stop the stopwatch `key` in every active aggregator that has it."""
    for agg in get_active_aggregators():
        if key in agg:
            agg[key].stop(weight, prehook)


def log_custom(new_meter_fn: Callable[[], Meter], key: str, *args: Any, priority: int = 50, **kwargs: Any) -> None:
    """Any meter: made by `new_meter_fn` where missing, then `update(*args, **kwargs)`."""
    for agg, _ in _log(key, new_meter_fn, priority):
        agg[key].update(*args, **kwargs)


def reset_meter(name: str, key: str) -> None:
    meter = get_meter(name, key)
    if meter is not None:
        meter.reset()


def reset_meters(name: str) -> None:
    meters = get_meters(name)
    if meters is not None:
        meters.reset()


def get_meter(name: str, key: str) -> Meter | None:
    if name not in _aggregators:
        return None
    return _aggregators[name].get(key)


def get_meters(name: str) -> MetersDict | None:
    return _aggregators.get(name)


def get_smoothed_value(name: str, key: str) -> Any:
    return _aggregators[name].get_smoothed_value(key)


def get_smoothed_values(name: str) -> dict[str, Any]:
    return _aggregators[name].get_smoothed_values()


def state_dict() -> "OrderedDict[str, Any]":
    return OrderedDict((name, agg.state_dict()) for name, agg in _aggregators.items())


def load_state_dict(state_dict: dict[str, Any]) -> None:
    for name, agg_state in state_dict.items():
        # In place: an active aggregator (always "default") stays the one that is active.
        _aggregators.setdefault(name, MetersDict()).load_state_dict(agg_state)
