"""Sequence generation: beam search and sampling (SequenceGenerator), set up from a GenerationConfig as
fairseq's task.build_generator does, and one batch generated the way the task does (inference_step)."""

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from fairseq_lite.errors import ConfigError
from fairseq_lite.generation.search import (
    BeamSearch,
    DiverseBeamSearch,
    DiverseSiblingsSearch,
    LengthConstrainedBeamSearch,
    LexicallyConstrainedBeamSearch,
    NGramRepeatBlock,
    Sampling,
    Search,
)
from fairseq_lite.generation.sequence_generator import EnsembleModel, SequenceGenerator
from fairseq_lite.generation.sequence_scorer import SequenceScorer

logger = logging.getLogger(__name__)

__all__ = [
    "BeamSearch",
    "DiverseBeamSearch",
    "DiverseSiblingsSearch",
    "EnsembleModel",
    "LengthConstrainedBeamSearch",
    "LexicallyConstrainedBeamSearch",
    "NGramRepeatBlock",
    "Sampling",
    "Search",
    "SequenceGenerator",
    "SequenceScorer",
    "build_generator",
    "inference_step",
    "retain_dropout",
]


def _get(cfg: Any, name: str, default: Any) -> Any:
    value = getattr(cfg, name, default) if not isinstance(cfg, dict) else cfg.get(name, default)
    return default if value is None else value


def build_generator(
    task: Any,
    models: Sequence[torch.nn.Module],
    generation_cfg: Any,
    use_incremental: bool = True,
    seq_gen_cls: type | None = None,
    **extra: Any,
) -> SequenceGenerator | SequenceScorer:
    """A SequenceGenerator set up from a GenerationConfig (fairseq's `task.build_generator`):
    sampling with --sampling, length-constrained beam search with --match-source-len, else beam; with
    --score-reference, a SequenceScorer. `seq_gen_cls`: a SequenceGenerator subclass to build instead."""
    cfg = generation_cfg
    sampling = bool(_get(cfg, "sampling", False))
    topk, topp = int(_get(cfg, "sampling_topk", -1)), float(_get(cfg, "sampling_topp", -1.0))
    match_source_len = bool(_get(cfg, "match_source_len", False))
    groups, strength = int(_get(cfg, "diverse_beam_groups", -1)), float(_get(cfg, "diverse_beam_strength", 0.5))
    diversity_rate = float(_get(cfg, "diversity_rate", -1.0))
    chosen = [
        flag
        for flag, on in (
            ("--sampling", sampling),
            ("--diverse-beam-groups", groups > 0),
            ("--match-source-len", match_source_len),
            ("--diversity-rate", diversity_rate > 0),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ConfigError(f"{' and '.join(chosen)} choose different searches: use one (as in fairseq)")
    beam = int(_get(cfg, "beam", 5))
    if groups > 0 and beam % groups != 0:
        raise ConfigError(f"--beam {beam} must be divisible by --diverse-beam-groups {groups}")
    if not sampling and (topk > 0 or topp > 0):
        raise ConfigError("--sampling-topk/--sampling-topp need --sampling")
    if topp > 1:
        raise ConfigError(f"--sampling-topp must be in (0, 1], got {topp}")
    if _get(cfg, "no_early_stop", False):
        logger.warning(
            "--no-early-stop is deprecated and has no effect, as in fairseq 0.12.2: a sentence's search ends once "
            "it has --beam finished hypotheses"
        )
    print_alignment = _get(cfg, "print_alignment", None)
    if print_alignment not in (None, "hard", "soft"):
        raise ConfigError(f"--print-alignment={print_alignment!r} is invalid: it must be one of: hard, soft")
    tgt_dict = task.target_dictionary
    if _get(cfg, "score_reference", False):
        # fairseq's task.build_generator: the reference scored, not searched for
        return SequenceScorer(models, tgt_dict, print_alignment=print_alignment, **extra)
    search: Search
    if sampling:
        search = Sampling(tgt_dict, topk, topp)
    elif groups > 0:
        search = DiverseBeamSearch(tgt_dict, groups, strength)
    elif match_source_len:
        # Tagging-style outputs exactly as long as the source.
        search = LengthConstrainedBeamSearch(tgt_dict, min_len_a=1, min_len_b=0, max_len_a=1, max_len_b=0)
    elif diversity_rate > -1:
        search = DiverseSiblingsSearch(tgt_dict, diversity_rate)
    elif _get(cfg, "constraints", None):
        search = LexicallyConstrainedBeamSearch(tgt_dict, str(_get(cfg, "constraints", None)))
    else:
        search = BeamSearch(tgt_dict)
    return (seq_gen_cls or SequenceGenerator)(
        models,
        tgt_dict,
        beam_size=beam,
        max_len_a=float(_get(cfg, "max_len_a", 0)),
        max_len_b=int(_get(cfg, "max_len_b", 200)),
        min_len=int(_get(cfg, "min_len", 1)),
        normalize_scores=not bool(_get(cfg, "unnormalized", False)),
        len_penalty=float(_get(cfg, "lenpen", 1.0)),
        unk_penalty=float(_get(cfg, "unkpen", 0.0)),
        temperature=float(_get(cfg, "temperature", 1.0)),
        match_source_len=match_source_len,
        no_repeat_ngram_size=int(_get(cfg, "no_repeat_ngram_size", 0)),
        search_strategy=search,
        use_incremental=use_incremental,
        print_alignment=print_alignment,
        **extra,
    )


def retain_dropout(models: Sequence[torch.nn.Module], module_names: Sequence[str] | None = None) -> None:
    """--retain-dropout: dropout stays on while generating (for Monte-Carlo dropout), in every module or in
    those of the classes `module_names` names (--retain-dropout-modules); LayerDrop stays off, as in
    fairseq, where it is no dropout module."""
    names = set(module_names or ())
    for model in models:
        present = {type(m).__name__ for m in model.modules()}
        unknown = sorted(names - present)
        if unknown:
            raise ConfigError(
                f"--retain-dropout-modules: {type(model).__name__} has no module of class {unknown[0]}; it has: "
                f"{', '.join(sorted(present))}"
            )
        for module in model.modules() if names else [model]:
            if not names or type(module).__name__ in names:
                module.train()
        for module in model.modules():
            if isinstance(getattr(module, "layerdrop", None), float):
                module.layerdrop = 0.0


def inference_step(
    generator: SequenceGenerator,
    task: Any,
    sample: dict[str, Any],
    prefix_tokens: Tensor | None = None,
    constraints: Tensor | None = None,
) -> list[list[dict[str, Any]]]:
    """Generate for one batch the way the task does (fairseq's `task.inference_step`); `constraints`:
    the batch's packed lexical constraints (generation/constraints.py), for --constraints.

    A decoder-only language model has no source to encode: it continues its input, which becomes
    the forced prefix (less a leading bos), starting from bos (with --add-bos-token) or eos.
    """
    if isinstance(generator, SequenceScorer):
        return generator.generate(sample)
    if generator.model.has_encoder:
        return generator.generate(sample, prefix_tokens=prefix_tokens, constraints=constraints)
    task_cfg = getattr(task, "cfg", None)
    dictionary = task.source_dictionary
    bos_token = (
        dictionary.bos() if task_cfg is not None and _get(task_cfg, "add_bos_token", False) else dictionary.eos()
    )
    src_tokens = sample["net_input"]["src_tokens"]
    if prefix_tokens is None and src_tokens.nelement() > 0:
        prefix_tokens = src_tokens
        if prefix_tokens[:, 0].eq(bos_token).all():
            prefix_tokens = prefix_tokens[:, 1:]
    return generator.generate(sample, prefix_tokens=prefix_tokens, bos_token=bos_token, constraints=constraints)
