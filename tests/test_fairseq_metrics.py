"""fairseq's criterion contract: `reduce_metrics(logging_outputs)` logs with `metrics.log_*`, and what a
plugin criterion logs shows in the train_inner, train and valid log lines, weighted as fairseq weights
it, whether its logging outputs can be summed or not."""

import json
import logging
import textwrap

import pytest
from conftest import tiny_lm_overrides

from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

PLUGIN = """\
    import math

    from fairseq_lite import metrics, utils
    from fairseq_lite.criterions import register_criterion
    from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig


    @register_criterion("counting_ce_{summed}", dataclass=CrossEntropyCriterionConfig)
    class CountingCrossEntropy(CrossEntropyCriterion):
        def forward(self, model, sample, reduce=True):
            loss, sample_size, logging_output = super().forward(model, sample, reduce)
            logging_output["n_batches"] = 1
            return loss, sample_size, logging_output

        @classmethod
        def reduce_metrics(cls, logging_outputs):
            super().reduce_metrics(logging_outputs)
            metrics.log_scalar("batches", sum(log.get("n_batches", 0) for log in logging_outputs), round=1)
            metrics.log_derived("ppl_again", lambda meters: utils.get_perplexity(meters["loss"].avg))

        @staticmethod
        def logging_outputs_can_be_summed():
            return {summed}
"""


@pytest.mark.parametrize("summed", [True, False])
def test_a_plugin_criterions_own_fields_are_in_the_log_lines(tiny_data_bin, tmp_path, caplog, summed):
    plugin = tmp_path / f"counting_{summed}"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(textwrap.dedent(PLUGIN).replace("{summed}", str(summed)))
    overrides = tiny_lm_overrides(
        tiny_data_bin,
        tmp_path / "ck",
        max_update=4,
        extra=[
            f"common.user_dir={plugin}",
            "common.log_format=json",
            "common.log_interval=2",
            "optimization.update_freq=[3]",
        ],
    )
    caplog.set_level(logging.INFO)
    overrides = [o for o in overrides if not o.startswith("criterion=")] + [f"criterion=counting_ce_{summed}"]
    train(compose_config(overrides))
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    by_kind = {
        "train_inner": [x for x in lines if "loss" in x],
        "train": [x for x in lines if "train_loss" in x],
        "valid": [x for x in lines if "valid_loss" in x],
    }
    assert all(by_kind.values()), lines
    # Three micro-batches an update: summed or not, reduce_metrics saw them all.
    for line in by_kind["train_inner"]:
        assert float(line["batches"]) == 3.0 and float(line["ppl_again"]) == float(line["ppl"])
    assert float(by_kind["train"][-1]["train_batches"]) == 3.0
    valid = by_kind["valid"][-1]
    assert float(valid["valid_batches"]) == 1.0  # one batch per validation step
    assert float(valid["valid_ppl_again"]) == float(valid["valid_ppl"])
    # fairseq's field order: the criterion's (priority 10, 20), then wps, ups, wpb, bsz, num_updates, lr, gnorm.
    keys = [k for k in by_kind["train_inner"][0] if k not in ("epoch", "update")]
    assert keys[:4] == ["loss", "batches", "ppl", "ppl_again"]
    assert keys[4:] == ["wps", "ups", "wpb", "bsz", "num_updates", "lr", "gnorm", "train_wall", "wall"]
