"""Log lines in fairseq's formats and tensorboard scalars."""

import json
import logging

import pytest

from fairseq_lite.logging.meters import UpdateStats
from fairseq_lite.logging.progress_bar import format_stat, progress_bar

STATS = {
    "loss": 5.123456,
    "ppl": 34.87654,
    "wps": 1234.6,
    "ups": 1.2345,
    "wpb": 2047.7,
    "bsz": 15.9,
    "num_updates": 10,
    "lr": 0.0005,
    "gnorm": 1.23456,
    "train_wall": 12.7,
    "wall": 14.2,
}


def test_stats_are_rounded_like_fairseq():
    assert format_stat("loss", 5.123456) == "5.123"
    assert format_stat("ppl", 34.87654) == "34.88"
    assert format_stat("wps", 1234.6) == "1235"
    assert format_stat("num_updates", 10) == 10
    assert format_stat("lr", 0.0005) == "0.0005"
    assert format_stat("valid_loss", 2.00049) == "2.0"


def test_json_lines(caplog):
    caplog.set_level(logging.INFO)
    bar = progress_bar(list(range(10)), log_format="json", epoch=2)
    for i in bar:
        if i == 4:
            bar.log(STATS, tag="train_inner", step=10)
    bar.print(STATS, tag="valid", step=10)
    inner, end = [json.loads(r.getMessage()) for r in caplog.records]
    assert inner["epoch"] == 2 and inner["update"] == 1.5 and inner["loss"] == "5.123" and inner["num_updates"] == 10
    assert end["epoch"] == 2 and end["valid_loss"] == "5.123" and end["valid_ppl"] == "34.88"


def test_simple_lines(caplog):
    caplog.set_level(logging.INFO)
    bar = progress_bar(list(range(10)), log_format="simple", epoch=1, prefix="valid on 'valid' subset")
    for _ in bar:
        pass
    bar.log({"loss": 1.0}, step=1)
    bar.print({"loss": 1.0, "ppl": 2.0})
    log_line, print_line = [r.getMessage() for r in caplog.records]
    assert "loss=1.0" in log_line and "10 / 10" in log_line
    assert print_line == "epoch 001 | valid on 'valid' subset | loss 1.0 | ppl 2.0"


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


def test_update_stats_give_fairseq_fields():
    stats = UpdateStats()
    stats.add({"loss": 100.0, "ntokens": 50, "nsentences": 2, "sample_size": 50}, gnorm=2.0, clipped=True)
    stats.add({"loss": 100.0, "ntokens": 50, "nsentences": 2, "sample_size": 50}, gnorm=4.0, clipped=False)

    def reduce(t):
        return {"loss": t["loss"] / t["sample_size"]}

    out = stats.stats(reduce)
    assert out["loss"] == 2.0 and out["wpb"] == 50 and out["bsz"] == 2 and out["wps"] > 0 and out["ups"] > 0
    assert stats.gnorm_stats(clip_norm=1.0) == {"gnorm": 3.0, "clip": 50.0}
