"""What fairseq-generate and fairseq-interactive share: flags -> (config, task, model, generator),
the bpe/tokenizer round trip, and fairseq's H-/D-/P- output lines."""

import importlib
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf

from fairseq_lite.dataclass.legacy_args import LegacyParser
from fairseq_lite.errors import CheckpointError, ConfigError
from fairseq_lite.registry import COMPONENT_REGISTRIES

logger = logging.getLogger(__name__)

# Components a generation command line may select besides the task (which the checkpoint names).
EXTRA_COMPONENTS = ("scoring", "bpe", "tokenizer")


@dataclass
class GenerationSetup:
    cfg: Any
    task: Any
    model: torch.nn.Module
    generator: Any
    device: torch.device
    encode_fn: Callable[[str], str]
    decode_fn: Callable[[str], str]


def rewrite_remove_bpe(argv: Sequence[str]) -> list[str]:
    """fairseq's `--remove-bpe [SYMBOL]` is `--post-process SYMBOL` (default "@@ ")."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--remove-bpe":
            if i + 1 < len(argv) and not argv[i + 1].startswith("-"):
                out += ["--post-process", argv[i + 1]]
                i += 2
                continue
            out += ["--post-process", "@@ "]
        elif arg.startswith("--remove-bpe="):
            out += ["--post-process", arg.split("=", 1)[1]]
        else:
            out.append(arg)
        i += 1
    return out


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def checkpoint_task_name(path: str) -> str:
    """The task a checkpoint was trained with, read without loading its weights into memory."""
    from fairseq_lite.checkpoint import torch_load_weights_only

    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch_load_weights_only(path, mmap=True)
        return str(state["cfg"]["task"]["_name"])
    except Exception as e:  # a truncated or foreign file: say so in one line
        raise CheckpointError(
            f"cannot read checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e


def build_component(kind: str, name: str | None, values: dict[str, Any]) -> Any:
    """A bpe/tokenizer/scoring config node: the component's dataclass with the flags given."""
    from fairseq_lite.dataclass.initialize import component_node

    if name is None:
        return None
    node = component_node(kind, name)
    for key, value in values.items():
        node[key] = value
    missing = [k for k in node.keys() if OmegaConf.is_missing(node, k)]
    if missing:
        raise ConfigError(f"--{kind} {name} needs --{missing[0].replace('_', '-')}")
    return node


def prepare(prog: str, description: str, argv: Sequence[str], groups: Sequence[str]) -> GenerationSetup:
    """Parse a generation command line, load the checkpoint and build the generator."""
    from fairseq_lite.checkpoint import load_for_command
    from fairseq_lite.dataclass.initialize import import_components
    from fairseq_lite.generation import build_generator
    from fairseq_lite.trainer import select_device

    argv = rewrite_remove_bpe(argv)
    path = _flag_value(argv, "--path")
    wants_help = "-h" in argv or "--help" in argv
    if not path and not wants_help:
        raise ConfigError("--path is required: the checkpoint to generate with (e.g. checkpoints/checkpoint_best.pt)")
    if path and os.pathsep in path and not os.path.isfile(path):
        raise ConfigError(f"--path {path}: generating with an ensemble of checkpoints is not supported; give one file")
    import_components(_flag_value(argv, "--user-dir"))
    for package in ("fairseq_lite.scoring", "fairseq_lite.data.encoders"):
        importlib.import_module(package)  # registers scorers and bpe, were start-up not to
    # The checkpoint decides the task, so its flags (--source-lang, --sample-break-mode, ...) exist.
    task_name = checkpoint_task_name(path) if path else "translation"
    parser = LegacyParser(
        prog,
        description,
        groups,
        ("task", *EXTRA_COMPONENTS),
        positional_data=True,
        defaults={"task": task_name, "scoring": "bleu"},
    )
    selectors, given, targets = parser.parse(argv)
    if selectors.task != task_name:
        raise ConfigError(f"--task {selectors.task}: the checkpoint {path} was trained with task '{task_name}'")
    values = {key: value for dest, value in given.items() for key in targets[dest]}

    cfg, task, model = load_for_command(path, values, groups)
    for kind in EXTRA_COMPONENTS:
        kind_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith(kind + ".")}
        cfg[kind] = build_component(kind, getattr(selectors, kind), kind_values)

    gen = cfg.generation
    if gen.sampling and gen.nbest != gen.beam:
        raise ConfigError(
            f"--sampling requires --nbest to be equal to --beam (got --nbest {gen.nbest}, --beam {gen.beam})"
        )
    if gen.nbest > gen.beam:
        raise ConfigError(f"--nbest {gen.nbest} cannot be larger than --beam {gen.beam}")

    torch.manual_seed(cfg.common.seed)  # sampling is reproducible for a given --seed
    device = select_device(cfg)
    model.to(device)
    model.eval()
    try:
        generator = build_generator(task, [model], gen)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    encode_fn, decode_fn = _text_codecs(cfg)
    return GenerationSetup(cfg, task, model, generator, device, encode_fn, decode_fn)


def _text_codecs(cfg: Any) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """encode: tokenizer then bpe (raw text -> model symbols); decode: the reverse."""
    bpe = COMPONENT_REGISTRIES["bpe"].build(cfg.bpe) if cfg.bpe is not None else None
    tokenizer = COMPONENT_REGISTRIES["tokenizer"].build(cfg.tokenizer) if cfg.tokenizer is not None else None

    def encode(text: str) -> str:
        if tokenizer is not None:
            text = tokenizer.encode(text)
        if bpe is not None:
            text = bpe.encode(text)
        return text

    def decode(text: str) -> str:
        if bpe is not None:
            text = bpe.decode(text)
        if tokenizer is not None:
            text = tokenizer.decode(text)
        return text

    return encode, decode


def resolve_max_positions(*limits: Any) -> Any:
    """The tightest of several limits, each None, an int or a tuple (source, target)."""
    result: Any = None
    for limit in limits:
        if limit is None:
            continue
        if result is None:
            result = limit
        elif isinstance(result, tuple) or isinstance(limit, tuple):
            a = result if isinstance(result, tuple) else (result, result)
            b = limit if isinstance(limit, tuple) else (limit, limit)
            result = tuple(min(x, y) for x, y in zip(a, b))
        else:
            result = min(result, limit)
    return result


def hypothesis_lines(
    sample_id: int,
    hypo: dict[str, Any],
    tgt_dict: Any,
    post_process: str | None,
    strip: set,
    decode_fn: Callable[[str], str],
) -> tuple[list[str], str, str]:
    """fairseq's H- (tokens), D- (detokenized) and P- (per-token) lines; scores in base 2."""
    hypo_str = tgt_dict.string(hypo["tokens"].int().cpu(), post_process, extra_symbols_to_ignore=strip)
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


def print_lines(lines: Sequence[str], out=None) -> None:
    out = out if out is not None else sys.stdout
    for line in lines:
        print(line, file=out)
