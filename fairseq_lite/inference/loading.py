"""What fairseq-generate and fairseq-interactive start from: their command line -> (config, task,
model, generator) loaded from the checkpoint, and the bpe/tokenizer round trip of their text."""

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import OmegaConf

from fairseq_lite.checkpoint.inference import load_for_command, plugin_dir
from fairseq_lite.checkpoint.io import read_checkpoint
from fairseq_lite.errors import CheckpointError, ConfigError
from fairseq_lite.generation import retain_dropout
from fairseq_lite.options.initialize import import_components
from fairseq_lite.options.legacy_args import LegacyParser
from fairseq_lite.registry import COMPONENT_REGISTRIES, component_node
from fairseq_lite.utils import select_device

logger = logging.getLogger(__name__)

# Components a generation command line may select besides the task (which the checkpoint names).
EXTRA_COMPONENTS = ("scoring", "bpe", "tokenizer")


@dataclass
class GenerationSetup:
    cfg: Any
    task: Any
    models: list[torch.nn.Module]  # one per checkpoint of --path a.pt:b.pt (an ensemble)
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


def checkpoint_task_name(path: str, user_dir: str | None = None) -> str:
    """The task a checkpoint was trained with, read without loading its weights into memory; the plugin
    it was trained with (or `user_dir`) is imported first, as that task may be the plugin's."""
    state = read_checkpoint(path, mmap=True)
    try:
        task = state["cfg"]["task"]
        # fairseq's legacy tasks (multilingual_translation, ...) store their args as a Namespace
        name = str(task["_name"] if isinstance(task, dict) else vars(task)["_name"])
    except (KeyError, TypeError) as e:  # a foreign file: say so in one line
        raise CheckpointError(f"{path} is not a fairseq-lite checkpoint (its config names no task)") from e
    import_components(plugin_dir(path, state["cfg"].get("common"), user_dir))
    return name


def build_component(kind: str, name: str | None, values: dict[str, Any]) -> Any:
    """A bpe/tokenizer/scoring config node: the component's dataclass with the flags given."""
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
    argv = rewrite_remove_bpe(argv)
    path = _flag_value(argv, "--path")
    wants_help = "-h" in argv or "--help" in argv
    if not path and not wants_help:
        raise ConfigError("--path is required: the checkpoint to generate with (e.g. checkpoints/checkpoint_best.pt)")
    paths = checkpoint_paths(path) if path else []
    user_dir = _flag_value(argv, "--user-dir")
    import_components(user_dir)
    for package in ("fairseq_lite.scoring", "fairseq_lite.data.encoders"):
        importlib.import_module(package)  # registers scorers and bpe, were start-up not to
    # The checkpoint decides the task, so its flags (--source-lang, --sample-break-mode, ...) exist.
    task_name = checkpoint_task_name(paths[0], user_dir) if paths else "translation"
    for other in paths[1:]:
        other_task = checkpoint_task_name(other, user_dir)
        if other_task != task_name:
            raise ConfigError(
                f"--path: the checkpoints of an ensemble must share a task: {paths[0]} was trained with "
                f"'{task_name}', {other} with '{other_task}'"
            )
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
    # what a command cannot do is said before any checkpoint is loaded
    if prog == "fairseq-generate" and values.get("generation.constraints"):
        raise ConfigError(
            "--constraints reads constraints after each input line (tab-separated): use fairseq-interactive"
        )
    if values.get("generation.print_step") and (values.get("generation.score_reference") or prog != "fairseq-generate"):
        raise ConfigError(
            "--print-step prints fairseq-generate's I- lines (the decoding steps of its search): not in "
            "fairseq-interactive, nor with --score-reference"
        )
    if prog == "fairseq-interactive" and values.get("generation.score_reference"):
        raise ConfigError("--score-reference scores a reference translation: use fairseq-generate on a binarized split")

    # fairseq's ensemble: the first checkpoint's config and task, every checkpoint's model
    cfg, task, model = load_for_command(paths[0], values, groups)
    models = [model]
    for other in paths[1:]:
        _, other_task, other_model = load_for_command(other, values, groups)
        if other_task.target_dictionary != task.target_dictionary:
            raise ConfigError(
                f"--path: the checkpoints of an ensemble must share the target dictionary; {other}'s differs "
                f"from {paths[0]}'s"
            )
        models.append(other_model)
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
    for m in models:
        m.to(device)
        m.eval()
    if gen.replace_unk is not None and gen.print_alignment == "soft":
        raise ConfigError("--replace-unk needs hard alignments: drop --print-alignment soft")
    # --replace-unk reads each hypothesis's hard alignment; the A- lines are printed only when asked
    alignment = gen.print_alignment or ("hard" if gen.replace_unk is not None else None)
    try:
        generator = task.build_generator(models, {**OmegaConf.to_container(gen), "print_alignment": alignment})
    except ValueError as e:
        raise ConfigError(str(e)) from e
    if gen.retain_dropout:
        retain_dropout(models, gen.retain_dropout_modules)
    encode_fn, decode_fn = _text_codecs(cfg)
    return GenerationSetup(cfg, task, models, generator, device, encode_fn, decode_fn)


def checkpoint_paths(path: str) -> list[str]:
    """--path: one checkpoint, or an ensemble as fairseq writes it (a.pt:b.pt)."""
    return [path] if os.path.isfile(path) else [p for p in path.split(os.pathsep) if p]


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
