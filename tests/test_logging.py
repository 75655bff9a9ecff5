"""Log lines in fairseq's formats and tensorboard scalars."""

import json
import logging
import time

import pytest

from fairseq_lite.logging import metrics
from fairseq_lite.logging.progress_bar import format_stat, progress_bar

# What the metrics aggregators hand over: already rounded by their meters, as fairseq's are.
STATS = {
    "loss": 5.123,
    "ppl": 34.88,
    "wps": 1234.6,
    "ups": 1.23,
    "wpb": 2047.7,
    "bsz": 15.9,
    "num_updates": 10,
    "lr": 0.0005,
    "gnorm": 1.235,
    "train_wall": 13,
    "wall": 14,
}


def test_stats_are_written_like_fairseq():
    # fairseq 0.12.2's format_stat: "{:g}" of every number.
    assert format_stat("loss", 5.123) == "5.123"
    assert format_stat("wps", 13120.1) == "13120.1"
    assert format_stat("avg_span", 33.0) == "33"
    assert format_stat("num_updates", 10) == "10"
    assert format_stat("lr", 8.75e-06) == "8.75e-06"
    assert format_stat("valid_loss", 2.0) == "2"


def test_json_lines(caplog):
    caplog.set_level(logging.INFO)
    bar = progress_bar(list(range(10)), log_format="json", epoch=2)
    for i in bar:
        if i == 4:
            bar.log(STATS, tag="train_inner", step=10)
    bar.print(STATS, tag="valid", step=10)
    inner, end = [json.loads(r.getMessage()) for r in caplog.records]
    assert inner["epoch"] == 2 and inner["update"] == 1.5 and inner["loss"] == "5.123" and inner["num_updates"] == "10"
    assert end["epoch"] == 2 and end["valid_loss"] == "5.123" and end["valid_ppl"] == "34.88"


def test_simple_lines(caplog):
    caplog.set_level(logging.INFO)
    bar = progress_bar(list(range(10)), log_format="simple", epoch=1, prefix="valid on 'valid' subset")
    for _ in bar:
        pass
    bar.log({"loss": 1.0}, step=1)
    bar.print({"loss": 1.0, "ppl": 2.0})
    log_line, print_line = [r.getMessage() for r in caplog.records]
    assert "loss=1" in log_line and "10 / 10" in log_line
    assert print_line == "epoch 001 | valid on 'valid' subset | loss 1 | ppl 2"


def test_none_prints_nothing(caplog):
    caplog.set_level(logging.INFO)
    bar = progress_bar([1], log_format="none", epoch=1)
    bar.log(STATS)
    bar.print(STATS)
    assert not caplog.records


def test_tensorboard_scalars(tmp_path):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    bar = progress_bar([1, 2], log_format="none", epoch=1, tensorboard_logdir=str(tmp_path))
    bar.log({"loss": 3.0, "num_updates": 7}, tag="train_inner")
    bar.print({"loss": 2.5, "num_updates": 8}, tag="valid")
    bar.close()
    acc = event_accumulator.EventAccumulator(str(tmp_path / "valid"))
    acc.Reload()
    (event,) = acc.Scalars("loss")
    assert event.step == 8 and event.value == 2.5
    acc = event_accumulator.EventAccumulator(str(tmp_path / "train_inner"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("loss")] == [7]


def test_metrics_aggregate_as_fairseqs():
    """fairseq's metrics: weighted averages over the active aggregators, nested and new-root blocks,
    derived values read late, priorities ordering the fields, rounding as asked, rates per second."""
    metrics.reset()
    with metrics.aggregate("train"):
        for loss, weight in ((2.0, 50), (4.0, 150)):
            with metrics.aggregate("train_inner"):
                metrics.log_scalar("loss", loss, weight, round=3)
                metrics.log_scalar("gnorm", loss / 3, priority=400, round=3)
                metrics.log_scalar_sum("n", 1)
                metrics.log_derived("ppl", lambda meters: 2 ** meters["loss"].avg)
                metrics.log_scalar("num_updates", weight, weight=0, priority=200)
        with metrics.aggregate(new_root=True) as valid:
            metrics.log_scalar("loss", 9.0)
    inner = metrics.get_smoothed_values("train_inner")
    assert list(inner) == ["loss", "n", "ppl", "num_updates", "gnorm"]
    assert inner["loss"] == 3.5 and inner["ppl"] == 2**3.5 and inner["n"] == 2 and inner["num_updates"] == 150
    assert inner["gnorm"] == round(1.0, 3)
    assert metrics.get_smoothed_values("train")["loss"] == 3.5  # the new root kept validation out
    assert valid.get_smoothed_values() == {"loss": 9.0}
    assert metrics.get_smoothed_value("default", "loss") == 3.5
    metrics.reset_meters("train_inner")
    assert metrics.get_meter("train_inner", "loss").count == 0 and metrics.get_meter("train", "loss").count == 200
    state = metrics.state_dict()
    metrics.reset()
    metrics.load_state_dict(state)
    assert metrics.get_smoothed_values("train")["loss"] == 3.5
    with metrics.aggregate("speed") as agg:
        metrics.log_speed("wps", 100.0)  # the first value starts the clock
        time.sleep(0.05)
        metrics.log_speed("wps", 100.0)
    assert 0 < agg["wps"].n == 100.0 and agg.get_smoothed_value("wps") < 100 / 0.05
    metrics.reset()


def test_fairseq_import_paths_of_metrics():
    from fairseq_lite import metrics as old_home

    assert old_home.log_scalar is metrics.log_scalar and old_home.aggregate is metrics.aggregate
