"""fairseq's SequenceScorer: score the reference instead of searching (`fairseq-generate --score-reference`).

Each sentence gets one "hypothesis", its reference, with the models' log-probability of every reference
token (an ensemble averages probabilities, as in generation) and the score fairseq gives it: their sum over
the reference's length (no length penalty).
"""

import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from fairseq_lite.generation.sequence_generator import (
    EnsembleModel,
    attention_asked,
    average_log_probs,
    decoder_attention,
)
from fairseq_lite.kernels.cross_entropy import softmax_cross_entropy
from fairseq_lite.models.fairseq_model import normalizes_with_log_softmax
from fairseq_lite.utils import extract_hard_alignment, extract_soft_alignment


def target_log_probs(
    model: Any, net_output: Any, sample: dict, pad_idx: int, fused: bool, softmax_batch: int = sys.maxsize
) -> Tensor:
    """Log-probability (natural log) of each target token, 0 at pads, B x T. With more than softmax_batch
    tokens the normalization runs on chunks of that many (fairseq's --softmax-batch, to fit memory).
    `fused`: the model normalizes with a plain log_softmax, so the fused kernel computes it from the logits."""
    target = sample["target"]
    logits = net_output[0]
    if target.numel() < softmax_batch:
        chunks = [(logits, target)]
    else:
        flat, flat_target = logits.reshape(1, -1, logits.size(-1)), target.reshape(1, -1)
        chunks = [
            (flat[:, s : s + softmax_batch], flat_target[:, s : s + softmax_batch])
            for s in range(0, flat.size(1), softmax_batch)
        ]
    pieces = []
    for chunk, chunk_target in chunks:
        if fused:
            # The fused kernel reads the logits once and accumulates in fp32 (bf16 logits would cost
            # perplexity digits), without an fp32 copy of the [tokens, vocab] logits.
            nll = softmax_cross_entropy(chunk, chunk_target, ignore_index=pad_idx, reduce=False)[1]
            pieces.append(-nll.reshape(-1))
        else:  # the model's own normalization (adaptive softmax, temperature, ...) sees the chunk's targets
            chunk_sample = {**sample, "target": chunk_target}
            lprobs = model.get_normalized_probs((chunk, *net_output[1:]), log_probs=True, sample=chunk_sample)
            safe = chunk_target.masked_fill(chunk_target.eq(pad_idx), 0)
            pieces.append(lprobs.float().gather(-1, safe.unsqueeze(-1)).reshape(-1))
    return torch.cat(pieces).view_as(target).masked_fill(target.eq(pad_idx), 0.0)


class SequenceScorer(nn.Module):
    def __init__(
        self,
        models: nn.Module | Sequence[nn.Module],
        tgt_dict: Any,
        softmax_batch: int | None = None,
        print_alignment: str | None = None,
        eos: int | None = None,
        symbols_to_strip_from_output: set | None = None,
    ):
        super().__init__()
        models = list(models) if isinstance(models, (list, tuple, nn.ModuleList)) else [models]
        self.model = EnsembleModel(models)
        self.pad = tgt_dict.pad()
        self.eos = tgt_dict.eos() if eos is None else eos
        self.softmax_batch = softmax_batch or sys.maxsize
        if self.softmax_batch <= 0:
            raise ValueError(f"--softmax-batch must be positive, got {softmax_batch}")
        if print_alignment not in (None, "hard", "soft"):
            raise ValueError(f"--print-alignment must be hard or soft, got {print_alignment!r}")
        self.print_alignment = print_alignment
        self.symbols_to_strip_from_output = set(symbols_to_strip_from_output or ()) | {self.eos}
        self.model.eval()

    @torch.no_grad()
    def generate(self, sample: dict[str, Any], *args: Any, **kwargs: Any) -> list[list[dict[str, Any]]]:
        """One hypothesis per sentence: its reference, scored. Options meant for search (prefix tokens)
        do not apply and are ignored, as in fairseq."""
        if isinstance(sample, (list, tuple, nn.Module)):  # fairseq's generate(models, sample, ...)
            sample = args[0]
        target = sample["target"]
        log_probs, attn = [], None
        for m in self.model.models:
            with attention_asked(m, self.print_alignment is not None):
                net_output = m(**sample["net_input"])
            fused = normalizes_with_log_softmax(m)
            log_probs.append(target_log_probs(m, net_output, sample, self.pad, fused, self.softmax_batch))
            model_attn = decoder_attention(net_output[1] if len(net_output) > 1 else None)
            if self.print_alignment is not None and model_attn is None:
                raise ValueError(f'--print-alignment needs the decoder\'s attention: {type(m).__name__} has no "attn"')
            if model_attn is not None:
                attn = model_attn.float() if attn is None else attn + model_attn.float()
        probs = average_log_probs(log_probs)
        if attn is not None:
            attn = attn / len(self.model.models)
        hypos = []
        src_tokens = sample["net_input"].get("src_tokens")
        extract = extract_hard_alignment if self.print_alignment == "hard" else extract_soft_alignment
        for i in range(target.size(0)):
            keep = target[i].ne(self.pad)
            ref = target[i][keep]
            positional = probs[i][keep]
            hypo_attn = attn[i][keep].cpu().t() if attn is not None else None  # source x target
            alignment = None
            if self.print_alignment is not None and src_tokens is not None:
                alignment = extract(hypo_attn.t(), src_tokens[i].cpu(), ref.cpu(), self.pad, self.eos)
            score = positional.sum() / max(ref.numel(), 1)
            hypos.append(
                [
                    {
                        "tokens": ref,
                        "score": score,
                        "attention": hypo_attn,
                        "alignment": alignment,
                        "positional_scores": positional,
                    }
                ]
            )
        return hypos
