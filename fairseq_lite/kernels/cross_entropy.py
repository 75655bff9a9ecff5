"""Softmax cross-entropy from logits without the [N, V] log-probabilities (fused kernel + reference).

`softmax_cross_entropy(logits, target, ignore_index, label_smoothing)` gives fairseq's
label-smoothed loss and the plain nll loss straight from the logits. Both come from two per-row
terms, computed with the log-sum-exp lse of each row of logits x:

    nll    = -log p[target]       = lse - x[target]
    smooth = sum_v -log p[v]      = V * lse - sum_v x[v]

(zero at rows whose target is ignore_index), combined on [N]-vectors as fairseq does:
    eps_i = eps / (V - 1);  loss = (1 - eps - eps_i) * nll + eps_i * smooth.

The compiled kernel (fairseq_lite/csrc/fused_cross_entropy*.{cpp,cu}) computes the two terms with an
online, chunked log-sum-exp in fp32 (fp64 for fp64 logits) and writes the gradient of the logits in
their own dtype: it never holds fp32 log-probabilities, nor an fp32 copy of bf16/fp16 logits, which
log_softmax + nll_loss keeps for the backward (three [N, V] fp32 buffers at the peak of its backward).
The reference next to it is log_softmax-based PyTorch, the computation the criteria did before.
Which one runs is chosen by `fairseq_lite.kernels.compiled_op` (see fairseq_lite/kernels/__init__.py).
"""

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from fairseq_lite.kernels import compiled_op

FORWARD_OP = "fused_cross_entropy_forward"
BACKWARD_OP = "fused_cross_entropy_backward"


def softmax_cross_entropy(
    logits: Tensor, target: Tensor, ignore_index: int = -100, label_smoothing: float = 0.0, reduce: bool = True
) -> tuple[Tensor, Tensor]:
    """(loss, nll_loss) of log_softmax(logits) against `target`, with fairseq's label smoothing.

    logits: [..., V] in fp32/bf16/fp16/fp64; target: int64 [...] (same leading shape). Returns sums
    over the positions when `reduce`, else per-position values flattened to [N] (zero where target ==
    ignore_index). The result is fp32 (fp64 for fp64 logits), whatever the logits' dtype; the
    gradient reaching `logits` has their dtype. With label_smoothing == 0, loss is nll_loss.
    """
    V = logits.size(-1)
    if V < 1:
        raise ValueError(f"softmax_cross_entropy needs at least one class, got logits of shape {tuple(logits.shape)}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing > 0 and V < 2:
        raise ValueError("label smoothing spreads eps over the other V - 1 classes: it needs V >= 2")
    nll, smooth = cross_entropy_terms(logits.reshape(-1, V), target.reshape(-1), ignore_index)
    if reduce:
        nll, smooth = nll.sum(), smooth.sum()
    if label_smoothing == 0:
        return nll, nll
    eps_i = label_smoothing / (V - 1)
    loss = (1.0 - label_smoothing - eps_i) * nll + eps_i * smooth
    return loss, nll


def cross_entropy_terms(logits: Tensor, target: Tensor, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """Per-row (nll, smooth) for logits [N, V] and int64 targets [N]; see the module docstring.
    The compiled kernel when there is one for the logits' device, else the reference."""
    _check_inputs(logits, target)
    if compiled_op(FORWARD_OP, logits.device) is not None and compiled_op(BACKWARD_OP, logits.device) is not None:
        return _FusedSoftmaxCrossEntropy.apply(logits, target, int(ignore_index))
    return reference_cross_entropy_terms(logits, target, ignore_index)


def reference_cross_entropy_terms(logits: Tensor, target: Tensor, ignore_index: int = -100) -> tuple[Tensor, Tensor]:
    """The pure-PyTorch reference: log_softmax in fp32 (fp64 for fp64 logits), then gather and sum;
    autograd provides the backward."""
    _check_inputs(logits, target)
    lprobs = F.log_softmax(logits.to(_accumulation_dtype(logits.dtype)), dim=-1)
    ignored = target.eq(ignore_index)
    # ignore_index may be outside [0, V) (e.g. -100): gather at a valid index, then zero those rows.
    picked = lprobs.gather(-1, target.masked_fill(ignored, 0).unsqueeze(-1)).squeeze(-1)
    nll = (-picked).masked_fill(ignored, 0.0)
    smooth = (-lprobs.sum(dim=-1)).masked_fill(ignored, 0.0)
    return nll, smooth


class _FusedSoftmaxCrossEntropy(torch.autograd.Function):
    """The compiled forward (per-row nll, smooth and the lse it saves) and backward (grad_logits from
    the logits and lse: p = exp(logits - lse) is recomputed, never stored)."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, ignore_index: int) -> tuple[Tensor, Tensor]:
        nll, smooth, lse = getattr(torch.ops.fairseq_lite, FORWARD_OP)(logits, target, ignore_index)
        ctx.save_for_backward(logits, target, lse)
        ctx.ignore_index = ignore_index
        return nll, smooth

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_nll: Tensor, grad_smooth: Tensor):
        logits, target, lse = ctx.saved_tensors
        grad_logits = None
        if ctx.needs_input_grad[0]:
            grad_logits = getattr(torch.ops.fairseq_lite, BACKWARD_OP)(
                grad_nll, grad_smooth, logits, target, lse, ctx.ignore_index
            )
        return grad_logits, None, None


def _accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """fp32 for fp32/bf16/fp16 logits, fp64 for fp64: the kernels' accumulation (and output) dtype."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _check_inputs(logits: Tensor, target: Tensor) -> None:
    # The same checks as the compiled op, so that both paths fail alike (and before any work).
    if logits.dim() != 2 or logits.size(1) < 1:
        raise ValueError(f"logits must be [N, V] with V >= 1, got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got {logits.dtype}")
    if target.dtype != torch.int64:
        raise TypeError(f"target must be int64, got {target.dtype}")
    if target.shape != logits.shape[:1]:
        raise ValueError(f"target must be [N] = [{logits.size(0)}], got shape {tuple(target.shape)}")
