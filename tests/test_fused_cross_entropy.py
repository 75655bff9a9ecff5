"""The fused softmax cross-entropy (fairseq_lite/kernels/cross_entropy.py): the compiled CPU and CUDA
kernels and the PyTorch reference give torch's cross entropy and fairseq's label-smoothed loss, with
their gradients, on fp32/bf16/fp16 logits; edge cases; and the criteria use it exactly when the model
normalizes with a plain log_softmax."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import OmegaConf

from fairseq_lite import kernels
from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterionConfig, normalizes_with_log_softmax
from fairseq_lite.criterions.label_smoothed_cross_entropy import (
    LabelSmoothedCrossEntropyCriterionConfig,
    label_smoothed_nll_loss,
)
from fairseq_lite.kernels.cross_entropy import (
    BACKWARD_OP,
    FORWARD_OP,
    cross_entropy_terms,
    reference_cross_entropy_terms,
    softmax_cross_entropy,
)
from fairseq_lite.models.fairseq_model import BaseFairseqModel, FairseqDecoder, FairseqLanguageModel
from fairseq_lite.registry import CRITERION_REGISTRY

PAD = 1
CPU_CHUNK = 2048  # the CPU kernel's vocabulary chunk (kChunk in fused_cross_entropy.cpp)
V_ODD = 2 * CPU_CHUNK + 37  # not a multiple of the CPU chunk nor of a 16-byte CUDA vector

needs_extension = pytest.mark.skipif(
    not kernels.extension_available(), reason="fairseq_lite._C is not built (pip install --no-build-isolation -e .)"
)


def cuda_kernel_available() -> bool:
    return (
        torch.cuda.is_available()
        and kernels.extension_available()
        and kernels.compiled_op(FORWARD_OP, torch.device("cuda")) is not None
    )


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
needs_cuda_kernel = pytest.mark.skipif(
    not cuda_kernel_available(), reason="needs a GPU and a CUDA build of fairseq_lite._C"
)


@pytest.fixture(
    params=[
        ("reference", "cpu"),
        pytest.param(("compiled", "cpu"), marks=needs_extension),
        pytest.param(("reference", "cuda"), marks=needs_cuda),
        pytest.param(("compiled", "cuda"), marks=needs_cuda_kernel),
    ],
    ids=lambda p: "-".join(p),
)
def path(request):
    """(which kernel path runs, device): every test below runs on each."""
    name, device = request.param
    with kernels.force_reference(name == "reference"):
        compiled = (
            kernels.compiled_op(FORWARD_OP, torch.device(device)) is not None
            and kernels.compiled_op(BACKWARD_OP, torch.device(device)) is not None
        )
        assert compiled == (name == "compiled")
        yield name, torch.device(device)


def make_inputs(n, v, dtype=torch.float32, device="cpu", scale=3.0, ignore_every=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(n, v, generator=g, dtype=torch.float64) * scale).to(dtype)
    target = torch.randint(0, v, (n,), generator=g)
    target[::ignore_every] = PAD if v > PAD else -100
    return logits.to(device), target.to(device)


def run(logits, target, eps=0.0, ignore_index=PAD, reduce=True, weights=(1.0, 0.5)):
    """(loss, nll_loss, grad of w0 * loss + w1 * nll_loss w.r.t. the logits); with reduce=False the
    per-row outputs are weighted by a fixed random vector so that each row's gradient is exercised."""
    x = logits.detach().clone().requires_grad_()
    loss, nll = softmax_cross_entropy(x, target, ignore_index=ignore_index, label_smoothing=eps, reduce=reduce)
    objective = weights[0] * loss + weights[1] * nll
    if not reduce:
        row_weights = torch.linspace(-1.0, 2.0, loss.numel(), dtype=loss.dtype, device=loss.device)
        objective = objective * row_weights
    objective.sum().backward()
    return loss.detach(), nll.detach(), x.grad


def truth(logits, target, eps=0.0, ignore_index=PAD, reduce=True, weights=(1.0, 0.5)):
    """The same from fairseq's formula on fp64 log_softmax (the criterion's old path), with torch's
    F.cross_entropy checked against it for the nll part."""
    x = logits.detach().double().requires_grad_()
    lprobs = F.log_softmax(x, dim=-1)
    loss, nll = label_smoothed_nll_loss(lprobs, target, eps, ignore_index=ignore_index, reduce=reduce)
    if eps == 0:
        loss = nll  # not 1 * nll + 0 * smooth: smooth is inf where some logit is -inf
    torch_nll = F.cross_entropy(x, target, ignore_index=ignore_index, reduction="sum" if reduce else "none")
    torch.testing.assert_close(nll, torch_nll, rtol=1e-12, atol=1e-12)
    objective = weights[0] * loss + weights[1] * nll
    if not reduce:
        objective = objective * torch.linspace(-1.0, 2.0, loss.numel(), dtype=loss.dtype, device=loss.device)
    objective.sum().backward()
    return loss.detach(), nll.detach(), x.grad


# Loss tolerances are for fp32 accumulation; gradients are compared after rounding to the logits' dtype.
GRAD_TOL = {
    torch.float32: dict(rtol=1e-4, atol=1e-5),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
    torch.float16: dict(rtol=2e-3, atol=1e-3),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("eps", [0.0, 0.1])
@pytest.mark.parametrize("reduce", [True, False])
def test_matches_fp64_log_softmax_and_torch_cross_entropy(path, dtype, eps, reduce):
    _, device = path
    logits, target = make_inputs(37, V_ODD, dtype, device)
    loss, nll, grad = run(logits, target, eps, reduce=reduce)
    want_loss, want_nll, want_grad = truth(logits, target, eps, reduce=reduce)
    assert loss.dtype == nll.dtype == torch.float32  # fp32 whatever the logits' dtype
    assert grad.dtype == dtype and grad.shape == logits.shape
    torch.testing.assert_close(loss.double(), want_loss, rtol=2e-6, atol=2e-5)
    torch.testing.assert_close(nll.double(), want_nll, rtol=2e-6, atol=2e-5)
    torch.testing.assert_close(grad, want_grad.to(dtype), **GRAD_TOL[dtype])
    if not reduce:
        ignored = target.eq(PAD)
        assert loss[ignored].eq(0).all() and nll[ignored].eq(0).all()
    assert grad[target.eq(PAD)].eq(0).all()  # ignored rows get exactly no gradient


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=needs_cuda_kernel)])
@needs_extension
def test_compiled_matches_reference(dtype, device):
    logits, target = make_inputs(64, 50257 if device == "cuda" else 3001, dtype, device, seed=1)
    with kernels.force_reference(False):
        got = run(logits, target, eps=0.1, reduce=False)
        nll, smooth = cross_entropy_terms(logits, target, PAD)
    with kernels.force_reference(True):
        want = run(logits, target, eps=0.1, reduce=False)
    want_nll, want_smooth = reference_cross_entropy_terms(logits, target, PAD)
    for a, b in zip(got[:2], want[:2]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(nll, want_nll, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(smooth, want_smooth, rtol=1e-5, atol=1e-2)  # V * lse: large terms
    torch.testing.assert_close(got[2], want[2], **GRAD_TOL[dtype])


def test_gradcheck_fp64(path):
    _, device = path
    logits, target = make_inputs(6, 7, torch.float64, device, scale=2.0, ignore_every=4, seed=2)
    logits.requires_grad_()
    for eps in (0.0, 0.2):
        assert torch.autograd.gradcheck(
            lambda x: softmax_cross_entropy(x, target, ignore_index=PAD, label_smoothing=eps, reduce=False),
            (logits,),
            eps=1e-6,
            atol=1e-7,
            rtol=1e-5,
        )
    assert torch.autograd.gradcheck(lambda x: cross_entropy_terms(x, target, PAD), (logits,), eps=1e-6, atol=1e-7)
    loss, nll = softmax_cross_entropy(logits, target, ignore_index=PAD, label_smoothing=0.2)
    assert loss.dtype == nll.dtype == torch.float64


def test_all_rows_ignored(path):
    _, device = path
    logits, _ = make_inputs(9, 100, device=device)
    target = torch.full((9,), PAD, device=device)
    loss, nll, grad = run(logits, target, eps=0.1)
    assert loss.item() == 0 and nll.item() == 0
    assert grad.eq(0).all()


@pytest.mark.parametrize("reduce", [True, False])
def test_empty_input(path, reduce):
    _, device = path
    logits = torch.randn(0, 50, device=device)
    target = torch.zeros(0, dtype=torch.long, device=device)
    loss, nll, grad = run(logits, target, eps=0.1, reduce=reduce)
    assert loss.shape == nll.shape == ((0,) if not reduce else ())
    assert float(loss.sum()) == 0 and float(nll.sum()) == 0
    assert grad.shape == (0, 50)


def test_one_class(path):
    _, device = path
    logits, target = torch.randn(4, 1, device=device) * 5, torch.tensor([0, 0, -100, 0], device=device)
    loss, nll, grad = run(logits, target, ignore_index=-100, reduce=False)  # p = 1: everything is 0
    assert loss.abs().max().item() < 1e-6 and nll.abs().max().item() < 1e-6
    assert grad.abs().max().item() < 1e-6
    with pytest.raises(ValueError, match="V >= 2"):
        softmax_cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.1)


@pytest.mark.parametrize("eps", [0.0, 0.3])
def test_two_classes(path, eps):
    _, device = path
    logits, target = make_inputs(11, 2, device=device, ignore_every=4)  # PAD = 1 is also a class here
    got = run(logits, target, eps)
    want = truth(logits, target, eps)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-6)


def test_label_smoothing_zero_gives_the_nll(path):
    _, device = path
    logits, target = make_inputs(13, 300, device=device)
    loss, nll = softmax_cross_entropy(logits, target, ignore_index=PAD, label_smoothing=0.0)
    assert torch.equal(loss, nll)
    want = F.cross_entropy(logits.double(), target, ignore_index=PAD, reduction="sum")
    assert nll.item() == pytest.approx(want.item(), rel=1e-6)


def test_large_and_infinite_logits(path):
    """Large logits do not overflow (log-sum-exp is shifted by the max); -inf logits (a masked
    vocabulary) have p = 0 and get no gradient."""
    _, device = path
    logits, target = make_inputs(8, 3000, device=device, scale=1e4, seed=3)
    got, want = run(logits, target), truth(logits, target)
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)
    masked = logits.clone() / 1e3
    masked[:, 2000:] = float("-inf")
    target = target % 2000
    loss, nll, grad = run(masked, target)
    want_loss, _, want_grad = truth(masked, target)
    assert math.isfinite(loss.item())
    torch.testing.assert_close(loss.double(), want_loss, rtol=1e-5, atol=1e-5)
    assert grad[:, 2000:].eq(0).all()
    torch.testing.assert_close(grad.double(), want_grad, rtol=1e-4, atol=1e-6)


def test_nan_logits_give_a_nan_loss(path):
    """A NaN logit (e.g. an fp16 overflow upstream) must reach the loss so that it is noticed."""
    _, device = path
    logits, target = make_inputs(4, 500, device=device, ignore_every=10)
    logits[2, 123] = float("nan")
    loss, nll = softmax_cross_entropy(logits, target, ignore_index=PAD, label_smoothing=0.1)
    assert math.isnan(loss.item()) and math.isnan(nll.item())


def test_non_contiguous_logits_and_expanded_shapes(path):
    _, device = path
    base, target = make_inputs(40, 301, device=device)
    logits = base.t().contiguous().t()  # the same values, column-major
    assert not logits.is_contiguous()
    for a, b in zip(run(logits, target, 0.1), run(base, target, 0.1)):
        torch.testing.assert_close(a, b)
    # [B, T, V] logits with [B, T] targets are flattened like the criteria do
    loss3, nll3 = softmax_cross_entropy(base.view(4, 10, 301), target.view(4, 10), PAD, 0.1)
    loss2, nll2 = softmax_cross_entropy(base, target, PAD, 0.1)
    assert torch.equal(loss3, loss2) and torch.equal(nll3, nll2)


def test_bad_inputs(path):
    _, device = path
    logits, target = make_inputs(5, 10, device=device)
    with pytest.raises(TypeError, match="int64"):
        softmax_cross_entropy(logits, target.int(), PAD)
    with pytest.raises(TypeError, match="floating point"):
        softmax_cross_entropy(logits.long(), target, PAD)
    with pytest.raises(ValueError, match="target must be"):
        cross_entropy_terms(logits, target[:3], PAD)
    with pytest.raises(ValueError, match="label_smoothing"):
        softmax_cross_entropy(logits, target, PAD, label_smoothing=1.0)
    if device.type == "cpu":  # on CUDA an out-of-range target is a device-side assert
        bad = target.clone()
        bad[1] = 10
        with pytest.raises((RuntimeError, IndexError), match="out of bounds"):
            softmax_cross_entropy(logits, bad, PAD)


# --- the criteria choose the fused path exactly for models that normalize with log_softmax ---


class FakeDictionary:
    def __len__(self):
        return 11

    def pad(self):
        return PAD


class FakeTask:
    target_dictionary = FakeDictionary()


class FixedLogitsModel(BaseFairseqModel):
    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(logits)

    def forward(self, src_tokens, src_lengths=None):
        return self.logits, {}


class TemperatureModel(FixedLogitsModel):
    """A user model with its own normalization: the criteria must go through get_normalized_probs."""

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        logits = net_output[0].float() / 2.0
        return F.log_softmax(logits, dim=-1) if log_probs else F.softmax(logits, dim=-1)


class LinearDecoder(FairseqDecoder):
    def __init__(self, logits):
        super().__init__(FakeDictionary())
        self.logits = nn.Parameter(logits)

    def forward(self, prev_output_tokens, encoder_out=None, **kwargs):
        return self.logits, {}


class TemperatureDecoder(LinearDecoder):
    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return F.log_softmax(net_output[0].float() / 2.0, dim=-1)


def make_sample(dtype=torch.float32):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 5, 11, generator=g).to(dtype)
    target = torch.randint(2, 11, (3, 5), generator=g)
    target[0, 3:] = PAD
    return logits, {"net_input": {"src_tokens": target.clone()}, "target": target, "ntokens": int(target.ne(PAD).sum())}


def test_which_models_normalize_with_log_softmax():
    logits, _ = make_sample()
    assert normalizes_with_log_softmax(FixedLogitsModel(logits))
    assert normalizes_with_log_softmax(FairseqLanguageModel(LinearDecoder(logits)))
    assert not normalizes_with_log_softmax(TemperatureModel(logits))
    assert not normalizes_with_log_softmax(FairseqLanguageModel(TemperatureDecoder(logits)))
    patched = FixedLogitsModel(logits)
    patched.get_normalized_probs = lambda net_output, log_probs, sample=None: None
    assert not normalizes_with_log_softmax(patched)


def criteria(eps=0.1):
    ce = CRITERION_REGISTRY.build(
        OmegaConf.structured(CrossEntropyCriterionConfig(sentence_avg=False, _name="cross_entropy")), FakeTask()
    )
    ls = CRITERION_REGISTRY.build(
        OmegaConf.structured(
            LabelSmoothedCrossEntropyCriterionConfig(
                label_smoothing=eps, report_accuracy=True, sentence_avg=False, _name="label_smoothed_cross_entropy"
            )
        ),
        FakeTask(),
    )
    return ce, ls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_criteria_fused_path_matches_the_log_probs_path(path, dtype):
    """Same logged values and gradients whichever kernel path runs, and equal to the
    get_normalized_probs path (the criteria's computation before the fused kernel)."""
    _, device = path
    logits, sample = make_sample(dtype)
    sample = {k: (v.to(device) if torch.is_tensor(v) else v) for k, v in sample.items()}
    sample["net_input"] = {"src_tokens": sample["target"]}
    ce, ls = criteria()
    for criterion in (ce, ls):
        results = []
        for model_cls in (FixedLogitsModel, _LogSoftmaxOverride):
            model = model_cls(logits.clone()).to(device)
            loss, sample_size, log = criterion(model, sample)
            loss.backward()
            results.append((loss.detach().double(), sample_size, log, model.logits.grad.double()))
        (loss_a, size_a, log_a, grad_a), (loss_b, size_b, log_b, grad_b) = results
        assert size_a == size_b == sample["ntokens"]
        assert log_a.keys() == log_b.keys()
        for key in log_a:
            assert float(log_a[key]) == pytest.approx(float(log_b[key]), rel=1e-5), key
        torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(grad_a, grad_b, **GRAD_TOL[dtype])


class _LogSoftmaxOverride(FixedLogitsModel):
    """Overrides get_normalized_probs with the very same log_softmax: forces the criteria's
    log-probabilities path for comparison."""

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return F.log_softmax(net_output[0].float(), dim=-1)


def test_criteria_use_a_custom_normalization():
    logits, sample = make_sample()
    ce, ls = criteria(eps=0.0)
    want = F.cross_entropy(logits.view(-1, 11) / 2.0, sample["target"].view(-1), ignore_index=PAD, reduction="sum")
    for criterion in (ce, ls):
        loss, _, log = criterion(TemperatureModel(logits.clone()), sample)
        assert loss.item() == pytest.approx(want.item(), rel=1e-6)
        assert log["loss"] == pytest.approx(want.item(), rel=1e-6)


@pytest.mark.parametrize("model_cls", [FixedLogitsModel, TemperatureModel])
def test_eval_lm_scores_with_the_models_own_normalization(model_cls):
    """eval-lm takes the fused kernel only for a plain log_softmax model; a model with its own
    normalization is scored with get_normalized_probs."""
    from fairseq_lite.inference.eval_lm import score_batches

    logits, sample = make_sample()
    model = model_cls(logits)
    scores = score_batches(model, [sample], torch.device("cpu"), PAD)
    lprobs = model.get_normalized_probs((logits, {}), log_probs=True)
    mask = sample["target"].ne(PAD)
    expected = -lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)[mask].sum()
    assert scores["ntokens"] == int(mask.sum())
    assert scores["nll_sum"] == pytest.approx(float(expected), rel=1e-5)
