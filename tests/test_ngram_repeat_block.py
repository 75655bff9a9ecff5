"""n-gram repeat blocking (--no-repeat-ngram-size): the compiled CPU and CUDA kernels ban exactly the
tokens the PyTorch reference (NGramRepeatBlock.reference) bans, and those are the right ones."""

import pytest
import torch

from fairseq_lite import kernels
from fairseq_lite.generation import NGramRepeatBlock

needs_extension = pytest.mark.skipif(
    not kernels.extension_available(), reason="fairseq_lite._C is not built (pip install --no-build-isolation -e .)"
)


def cuda_kernel_available():
    return (
        torch.cuda.is_available()
        and kernels.extension_available()
        and kernels.compiled_op("ngram_repeat_block_", torch.device("cuda")) is not None
    )


needs_cuda_kernel = pytest.mark.skipif(
    not cuda_kernel_available(), reason="needs a GPU and a CUDA build of fairseq_lite._C"
)


@pytest.fixture(params=["reference", pytest.param("compiled", marks=needs_extension)])
def path(request):
    with kernels.force_reference(request.param == "reference"):
        if request.param == "compiled":
            assert kernels.compiled_op("ngram_repeat_block_", torch.device("cpu")) is not None
        yield request.param


def banned_by_definition(tokens, n, vocab):
    """Slow statement of the rule: per row, the tokens t such that (last n-1 tokens, t) is an
    n-gram already in the row."""
    out = []
    for row in tokens.tolist():
        length = len(row)
        if length < n:
            out.append(set())
            continue
        context = row[length - n + 1 :]
        out.append({row[k + n - 1] for k in range(length - n + 1) if row[k : k + n - 1] == context})
    return out


def banned_of(lprobs):
    return [set(torch.nonzero(torch.isneginf(row)).flatten().tolist()) for row in lprobs]


def random_case(gen, rows, length, vocab, device="cpu", dtype=torch.float32):
    # few distinct tokens so that repeats are common
    tokens = torch.randint(0, min(vocab, 5), (rows, length), generator=gen).to(device)
    lprobs = torch.randn(rows, vocab, generator=gen).to(device=device, dtype=dtype)
    return tokens, lprobs


def blocked_on_both_paths(n, tokens, lprobs):
    """(reference output, compiled output) of NGramRepeatBlock on copies of lprobs."""
    if not kernels.extension_available():
        pytest.skip("fairseq_lite._C is not built")
    block = NGramRepeatBlock(n)
    with kernels.force_reference(True):
        ref = block(tokens, lprobs.clone())
    with kernels.force_reference(False):
        got = block(tokens, lprobs.clone())
    return ref, got


def test_bans_the_tokens_that_would_repeat_an_ngram(path):
    tokens = torch.tensor([[2, 5, 6, 5, 6, 5], [2, 7, 7, 7, 7, 7]])
    lprobs = torch.zeros(2, 10)
    out = NGramRepeatBlock(3)(tokens, lprobs)
    assert out is lprobs  # in place
    # row 0 ends in (6, 5): "6 5 6" exists, so 6 is banned; row 1 ends in (7, 7): 7 is banned
    assert banned_of(out) == [{6}, {7}]
    out = NGramRepeatBlock(2)(tokens, torch.zeros(2, 10))
    assert banned_of(out) == [{6}, {7}]  # row 0 ends in 5: "5 6" exists
    out = NGramRepeatBlock(1)(tokens, torch.zeros(2, 10))
    assert banned_of(out) == [{2, 5, 6}, {2, 7}]
    assert not torch.isnan(out).any() and out[torch.isfinite(out)].eq(0).all()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 6])
def test_random_inputs_match_the_definition_and_the_reference(n):
    gen = torch.Generator().manual_seed(n)
    for length in [0, 1, n - 1, n, n + 1, 7, 30]:
        for rows in [1, 5, 33]:
            tokens, lprobs = random_case(gen, rows, length, vocab=9)
            ref, got = blocked_on_both_paths(n, tokens, lprobs)
            assert torch.equal(got, ref), (n, length, rows)
            assert banned_of(got) == banned_by_definition(tokens, n, 9)
            # nothing but the banned entries changed
            assert torch.equal(got[torch.isfinite(got)], lprobs[torch.isfinite(got)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_other_dtypes(dtype):
    gen = torch.Generator().manual_seed(0)
    tokens, lprobs = random_case(gen, 16, 20, vocab=11, dtype=dtype)
    ref, got = blocked_on_both_paths(3, tokens, lprobs)
    assert got.dtype == dtype and torch.equal(got, ref)


def test_ngram_longer_than_the_hypothesis_changes_nothing(path):
    tokens = torch.tensor([[2, 5, 5, 5]])
    lprobs = torch.randn(1, 8)
    assert torch.equal(NGramRepeatBlock(5)(tokens, lprobs.clone()), lprobs)
    assert torch.equal(NGramRepeatBlock(4)(tokens[:, :3], lprobs.clone()), lprobs)


def test_all_padding_and_empty_inputs(path):
    pad = 1
    tokens = torch.full((4, 12), pad)
    out = NGramRepeatBlock(3)(tokens, torch.zeros(4, 6))
    assert banned_of(out) == [{pad}] * 4  # "pad pad pad" already occurs
    empty = torch.zeros(0, 6)
    assert NGramRepeatBlock(2)(torch.zeros(0, 5, dtype=torch.long), empty).shape == (0, 6)
    assert NGramRepeatBlock(2)(torch.zeros(3, 0, dtype=torch.long), torch.zeros(3, 6)).eq(0).all()


def test_strided_tokens_and_lprobs():
    # the generator passes tokens[:, :step+1] of a wider buffer; lprobs may be a view too
    gen = torch.Generator().manual_seed(1)
    buffer, wide = random_case(gen, 12, 40, vocab=16)
    tokens = buffer[:, :25]
    ref, got = blocked_on_both_paths(2, tokens, wide[:, :9])
    assert torch.equal(got, ref)
    view = wide.clone()
    with kernels.force_reference(False):
        NGramRepeatBlock(2)(tokens, view[:, :9])
    assert torch.equal(view[:, :9], ref) and torch.equal(view[:, 9:], wide[:, 9:])
    transposed = wide[:, :9].t().contiguous().t()  # column-major lprobs
    ref, got = blocked_on_both_paths(2, tokens, transposed)
    assert torch.equal(got, ref)


def test_invalid_inputs(path):
    with pytest.raises(ValueError):
        NGramRepeatBlock(0)
    # a banned token outside the vocabulary is an error on both paths
    with pytest.raises(RuntimeError):
        NGramRepeatBlock(2)(torch.tensor([[3, 9, 3]]), torch.zeros(1, 5))


@needs_extension
def test_compiled_op_checks_its_inputs():
    op = torch.ops.fairseq_lite.ngram_repeat_block_
    with pytest.raises(RuntimeError, match="rows"):
        op(torch.zeros(2, 4, dtype=torch.long), torch.zeros(3, 5), 2)
    with pytest.raises(RuntimeError, match="int64"):
        op(torch.zeros(2, 4, dtype=torch.int32), torch.zeros(2, 5), 2)
    with pytest.raises(RuntimeError, match="floating-point"):
        op(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5, dtype=torch.long), 2)
    with pytest.raises(RuntimeError, match=">= 1"):
        op(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 5), 0)
    with pytest.raises(RuntimeError, match="outside the vocabulary"):
        op(torch.tensor([[3, 9, 3]]), torch.zeros(1, 5), 2)


def test_beam_search_like_steps_agree():
    """Hypotheses grown one token at a time from a peaked distribution, as in beam search."""
    gen = torch.Generator().manual_seed(2)
    rows, vocab, n = 40, 50, 3
    tokens = torch.full((rows, 1), 2)
    for _ in range(30):
        lprobs = torch.log_softmax(4 * torch.randn(rows, vocab, generator=gen), dim=1)
        ref, got = blocked_on_both_paths(n, tokens, lprobs)
        assert torch.equal(got, ref)
        tokens = torch.cat([tokens, got.argmax(dim=1, keepdim=True)], dim=1)
    for row in tokens.tolist():  # with blocking, greedy picks never repeat a 3-gram
        grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
        assert len(grams) == len(set(grams))


# -- CUDA ------------------------------------------------------------------------------------


@needs_cuda_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_cuda_kernel_matches_reference_and_cpu(n, dtype):
    gen = torch.Generator().manual_seed(3)
    for rows, length, vocab in [(1, n, 7), (640, 51, 32000), (33, 300, 9), (3, 7000, 5)]:
        # 7000 tokens do not fit the kernel's shared-memory staging: the global-memory path
        tokens, lprobs = random_case(gen, rows, length, vocab, device="cuda", dtype=dtype)
        block = NGramRepeatBlock(n)
        with kernels.force_reference(True):
            ref = block(tokens, lprobs.clone())
            cpu = block(tokens.cpu(), lprobs.cpu().clone())
        with kernels.force_reference(False):
            got = block(tokens, lprobs.clone())
        torch.cuda.synchronize()
        assert torch.equal(got, ref), (rows, length, vocab)
        assert torch.equal(got.cpu(), cpu)


@needs_cuda_kernel
def test_cuda_kernel_strided_tokens_and_empty_rows():
    gen = torch.Generator().manual_seed(4)
    buffer, wide = random_case(gen, 24, 64, vocab=20, device="cuda")
    ref, got = blocked_on_both_paths(3, buffer[:, :40], wide[:, :17])
    assert torch.equal(got, ref)
    empty = torch.zeros(0, 8, device="cuda")
    with kernels.force_reference(False):
        assert NGramRepeatBlock(2)(torch.zeros(0, 4, dtype=torch.long, device="cuda"), empty).shape == (0, 8)
