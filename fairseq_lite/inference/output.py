"""fairseq's output lines for generated hypotheses."""

import math
from collections.abc import Callable
from typing import Any

import torch


def hypothesis_lines(
    sample_id: int,
    hypo: dict[str, Any],
    tgt_dict: Any,
    post_process: str | None,
    strip: set,
    decode_fn: Callable[[str], str],
    replace: Callable[[str, dict[str, Any]], str] | None = None,
) -> tuple[list[str], str, str]:
    """fairseq's H- (tokens), D- (detokenized) and P- (per-token) lines; scores in base 2. `replace`:
    --replace-unk's rewrite of the hypothesis text (given the text and the hypothesis)."""
    hypo_str = tgt_dict.string(hypo["tokens"].int().cpu(), post_process, extra_symbols_to_ignore=strip)
    if replace is not None:
        hypo_str = replace(hypo_str, hypo)
    detok = decode_fn(hypo_str)
    # fairseq divides the float32 tensor and prints the result as a Python float.
    score = (torch.as_tensor(hypo["score"]).float().cpu() / math.log(2)).item()
    positional = (hypo["positional_scores"].float().cpu() / math.log(2)).tolist()
    lines = [
        f"H-{sample_id}\t{score}\t{hypo_str}",
        f"D-{sample_id}\t{score}\t{detok}",
        "P-{}\t{}".format(sample_id, " ".join(f"{p:.4f}" for p in positional)),
    ]
    return lines, hypo_str, detok


def alignment_line(sample_id: int, hypo: dict[str, Any], mode: str | None) -> list[str]:
    """fairseq's A- line with --print-alignment: hard "src-tgt" pairs, or soft rows of source probabilities."""
    alignment = hypo.get("alignment")
    if mode is None or alignment is None:
        return []
    if mode == "hard":
        return [f"A-{sample_id}\t" + " ".join(f"{src}-{tgt}" for src, tgt in alignment)]
    return [f"A-{sample_id}\t" + " ".join(",".join(probs) for probs in alignment)]


def strip_pad(tokens: torch.Tensor, pad: int) -> torch.Tensor:
    return tokens[tokens.ne(pad)]
