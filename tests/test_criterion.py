import math

import pytest
import torch
import torch.nn as nn
from conftest import reduced_metrics
from omegaconf import OmegaConf

import fairseq_lite.criterions  # noqa: F401  (registers the criteria)
from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion, CrossEntropyCriterionConfig
from fairseq_lite.models.fairseq_model import BaseFairseqModel
from fairseq_lite.registry import CRITERION_REGISTRY

PAD = 1
VOCAB = 11


class FakeDictionary:
    def __len__(self) -> int:
        return VOCAB

    def pad(self) -> int:
        return PAD


class FakeTask:
    target_dictionary = FakeDictionary()


class FixedLogitsModel(BaseFairseqModel):
    """Returns the logits it was given, whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, src_tokens, src_lengths=None):
        return self.logits, {}


def make_sample(seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(3, 5, VOCAB, generator=g).to(dtype)
    target = torch.randint(2, VOCAB, (3, 5), generator=g)
    target[0, 3:] = PAD
    target[2, 4:] = PAD
    sample = {"net_input": {"src_tokens": target.clone()}, "target": target, "ntokens": int(target.ne(PAD).sum())}
    return FixedLogitsModel(logits), sample


def make_criterion(sentence_avg: bool = False) -> CrossEntropyCriterion:
    cfg = OmegaConf.structured(CrossEntropyCriterionConfig(sentence_avg=sentence_avg, _name="cross_entropy"))
    return CRITERION_REGISTRY.build(cfg, FakeTask())


def manual_nll(logits: torch.Tensor, target: torch.Tensor) -> float:
    lprobs = torch.log_softmax(logits.float(), dim=-1)
    picked = lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return float(-(picked * target.ne(PAD)).sum())


def test_matches_manual_log_softmax_nll_and_ignores_padding():
    model, sample = make_sample()
    loss, sample_size, log = make_criterion()(model, sample)
    expected = manual_nll(model.logits.detach(), sample["target"])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert sample_size == sample["ntokens"] == 12
    assert log == {"loss": pytest.approx(expected, rel=1e-6), "ntokens": 12, "nsentences": 3, "sample_size": 12}
    # Numbers, or 0-dim tensors with no autograd history (read by the trainer in one sync per update).
    assert all(
        isinstance(v, (int, float)) or (torch.is_tensor(v) and v.dim() == 0 and not v.requires_grad)
        for v in log.values()
    )
    # Logits at padded targets must not matter.
    changed = model.logits.detach().clone()
    changed[0, 3:] += 100.0
    loss2, _, _ = make_criterion()(FixedLogitsModel(changed), sample)
    assert loss2.item() == pytest.approx(loss.item(), rel=1e-6)


def test_gradient_flows_and_unreduced_loss():
    model, sample = make_sample()
    loss, _, _ = make_criterion()(model, sample)
    loss.backward()
    assert model.logits.grad[0, 3:].abs().sum() == 0  # pads get no gradient
    per_token, _, _ = make_criterion()(model, sample, reduce=False)
    assert per_token.shape == (15,)
    assert per_token.sum().item() == pytest.approx(loss.item(), rel=1e-6)


def test_sentence_avg_uses_nsentences():
    model, sample = make_sample()
    _, sample_size, log = make_criterion(sentence_avg=True)(model, sample)
    assert sample_size == 3 and log["sample_size"] == 3 and log["ntokens"] == 12


def test_bf16_logits_computed_in_fp32():
    model, sample = make_sample(dtype=torch.bfloat16)
    loss, _, _ = make_criterion()(model, sample)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(manual_nll(model.logits.detach(), sample["target"]), rel=1e-5)


def test_reduce_metrics_reports_base_2_like_fairseq():
    logs = []
    for seed in (0, 1):
        model, sample = make_sample(seed)
        logs.append(make_criterion()(model, sample)[2])
    agg = {k: sum(log[k] for log in logs) for k in logs[0]}
    assert CrossEntropyCriterion.logging_outputs_can_be_summed()
    metrics = reduced_metrics(CrossEntropyCriterion.reduce_metrics, [agg])
    assert reduced_metrics(CrossEntropyCriterion.reduce_metrics, logs) == pytest.approx(metrics)  # summed or not
    expected = float(agg["loss"]) / agg["ntokens"] / math.log(2)
    assert metrics["loss"] == pytest.approx(expected)
    assert "nll_loss" not in metrics  # the same as loss when sample_size is ntokens: fairseq leaves it out
    # Perplexity is exp of the mean loss in nats, rounded to 2 digits as fairseq logs it.
    assert metrics["ppl"] == pytest.approx(math.exp(float(agg["loss"]) / agg["ntokens"]), abs=0.005)
    shown = reduced_metrics(CrossEntropyCriterion.reduce_metrics, [agg], rounded=True)
    assert list(shown) == ["loss", "ppl"] and shown["loss"] == round(expected, 3)


def test_reduce_metrics_with_sentence_avg():
    agg = {"loss": 120.0, "ntokens": 60, "nsentences": 4, "sample_size": 4}
    metrics = reduced_metrics(CrossEntropyCriterion.reduce_metrics, [agg])
    assert metrics["loss"] == pytest.approx(120.0 / 4 / math.log(2))
    assert metrics["nll_loss"] == pytest.approx(120.0 / 60 / math.log(2))
    assert metrics["ppl"] == pytest.approx(math.exp(2.0), abs=0.005)


def test_padding_idx_from_target_dictionary():
    assert make_criterion().padding_idx == PAD


def test_a_model_returning_a_plain_tensor_trains_with_cross_entropy():
    """fairseq's BaseFairseqModel contract: forward may return the scores themselves ([B, C], as the
    classifying-names tutorial's model does), and the criterion normalizes them."""

    class Classifier(BaseFairseqModel):
        def __init__(self, scores):
            super().__init__()
            self.scores = nn.Parameter(scores)

        def forward(self, src_tokens, src_lengths):
            return torch.log_softmax(self.scores, dim=-1)

    scores = torch.randn(3, 7)
    target = torch.tensor([[4], [5], [6]])
    sample = {"net_input": {"src_tokens": torch.zeros(3, 2), "src_lengths": torch.tensor([2, 2, 2])}}
    sample.update(target=target, ntokens=3)
    loss, size, _ = make_criterion()(Classifier(scores), sample)
    expected = -torch.log_softmax(scores, -1).gather(1, target).sum()
    assert size == 3 and loss.item() == pytest.approx(expected.item(), rel=1e-5)
