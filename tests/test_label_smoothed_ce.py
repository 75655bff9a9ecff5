"""label_smoothed_cross_entropy: fairseq's formula (literals from fairseq 0.12.2), its relation to
cross_entropy, logging fields and accuracy."""

import math

import pytest
import torch
import torch.nn as nn
from conftest import reduced_metrics
from omegaconf import OmegaConf

from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion
from fairseq_lite.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterion,
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq_lite.data.dictionary import Dictionary
from fairseq_lite.errors import ConfigError
from fairseq_lite.models.fairseq_model import BaseFairseqModel

V = 11
PAD = 1
TARGET = torch.tensor([[4, 7, 2, 1, 1], [10, 0, 5, 3, 2]])


def logits(dtype=torch.float64):
    # Deterministic, RNG-free input so the literals below do not depend on torch's generator.
    return (torch.sin(torch.arange(2 * 5 * V, dtype=torch.float64) * 0.37).view(2, 5, V) * 3).to(dtype)


@pytest.mark.parametrize("eps,loss", [(0.0, 31.786656387436118), (0.1, 31.65120353732129), (0.3, 31.380297837091632)])
def test_formula_matches_fairseq(eps, loss):
    lprobs = torch.log_softmax(logits(), -1).view(-1, V)
    got, nll = label_smoothed_nll_loss(lprobs, TARGET.view(-1), eps, ignore_index=PAD)
    assert got.item() == pytest.approx(loss, rel=1e-12)
    assert nll.item() == pytest.approx(31.786656387436118, rel=1e-12)


def test_unreduced_loss_matches_fairseq_and_is_zero_at_pads():
    lprobs = torch.log_softmax(logits(), -1).view(-1, V)
    got, _ = label_smoothed_nll_loss(lprobs, TARGET.view(-1), 0.1, ignore_index=PAD, reduce=False)
    expected = [
        1.609355494862018,
        2.9227221716965692,
        2.2817087093256676,
        0.0,
        0.0,
        6.399464443969152,
        6.019165867559302,
        5.116928664981952,
        2.1535225348398654,
        5.1483356500867625,
    ]
    assert got.tolist() == pytest.approx(expected, rel=1e-12)


class FixedModel(BaseFairseqModel):
    """Returns the same logits whatever the input: isolates the criterion."""

    def __init__(self, out):
        super().__init__()
        self.out = nn.Parameter(out.clone())

    def forward(self, **kwargs):
        return self.out, {}


class Task:
    def __init__(self):
        self.target_dictionary = Dictionary()  # pad index 1


def criterion(**values):
    cfg = OmegaConf.merge(
        OmegaConf.structured(LabelSmoothedCrossEntropyCriterionConfig), {"sentence_avg": False, **values}
    )
    return LabelSmoothedCrossEntropyCriterion.build_criterion(cfg, Task())


def sample():
    return {"net_input": {}, "target": TARGET, "ntokens": int(TARGET.ne(PAD).sum())}


def test_no_smoothing_equals_cross_entropy():
    model = FixedModel(logits(torch.float32))
    loss, size, log = criterion()(model, sample())
    ce_loss, ce_size, ce_log = CrossEntropyCriterion.build_criterion(OmegaConf.create({"sentence_avg": False}), Task())(
        model, sample()
    )
    assert size == ce_size == 8
    torch.testing.assert_close(loss, ce_loss, rtol=1e-6, atol=0)
    assert float(log["loss"]) == pytest.approx(float(ce_log["loss"]), rel=1e-6)
    assert float(log["nll_loss"]) == pytest.approx(float(log["loss"]), rel=1e-6)
    stats = reduced_metrics(LabelSmoothedCrossEntropyCriterion.reduce_metrics, [log])
    ce_stats = reduced_metrics(CrossEntropyCriterion.reduce_metrics, [ce_log])
    assert stats["nll_loss"] == pytest.approx(stats["loss"], rel=1e-6)
    for key in ("loss", "ppl"):
        assert stats[key] == pytest.approx(ce_stats[key], rel=1e-6)


def test_logging_outputs_and_reduced_metrics():
    model = FixedModel(logits(torch.float32))
    loss, size, log = criterion(label_smoothing=0.1)(model, sample())
    assert loss.dtype == torch.float32 and loss.item() == pytest.approx(31.65120353732129, rel=1e-5)
    assert log == {
        "loss": pytest.approx(31.65120353732129, rel=1e-5),
        "nll_loss": pytest.approx(31.786656387436118, rel=1e-5),
        "ntokens": 8,
        "nsentences": 2,
        "sample_size": 8,
    }
    stats = reduced_metrics(LabelSmoothedCrossEntropyCriterion.reduce_metrics, [log])
    assert stats["loss"] == pytest.approx(31.65120353732129 / 8 / math.log(2), rel=1e-5)
    assert stats["nll_loss"] == pytest.approx(31.786656387436118 / 8 / math.log(2), rel=1e-5)
    assert stats["ppl"] == pytest.approx(2 ** stats["nll_loss"], abs=0.005)
    assert "accuracy" not in stats
    _, size, _ = criterion(label_smoothing=0.1, sentence_avg=True)(model, sample())
    assert size == 2


def test_accuracy_counts_argmax_hits_on_non_pad_targets():
    out = torch.full((2, 5, V), -5.0)
    argmax = torch.tensor([[4, 0, 2, 1, 9], [10, 0, 6, 6, 2]])  # 5 of the 8 real targets
    out.scatter_(2, argmax.unsqueeze(-1), 5.0)
    _, _, log = criterion(report_accuracy=True)(FixedModel(out), sample())
    assert (log["n_correct"], log["total"]) == (5, 8)
    assert reduced_metrics(LabelSmoothedCrossEntropyCriterion.reduce_metrics, [log])["accuracy"] == 62.5


def test_ignore_prefix_size_and_config_errors():
    model = FixedModel(logits(torch.float32))
    _, _, log = criterion(ignore_prefix_size=1)(model, sample())
    full_lprobs = torch.log_softmax(logits(), -1)[:, 1:].reshape(-1, V)
    _, nll = label_smoothed_nll_loss(full_lprobs, TARGET[:, 1:].reshape(-1), 0.0, ignore_index=PAD)
    assert log["nll_loss"] == pytest.approx(nll.item(), rel=1e-5)
    with pytest.raises(ConfigError, match="label_smoothing"):
        criterion(label_smoothing=1.0)
