"""fairseq's `options` for scripts: `get_training_parser`, `get_generation_parser`, `get_eval_lm_parser`
and `parse_args_and_arch`, which give the flat argparse Namespace fairseq's scripts were written against:

    parser = options.get_generation_parser(default_task="simple_classification")
    args = options.parse_args_and_arch(parser)
    task = tasks.setup_task(args)

The parser has the flags of its settings groups with their defaults. `parse_args_and_arch` adds the
flags of the components the command line selects (`--task`, `--arch`, `--criterion`, ...) and parses.
The architecture then fills what the user left unset, as in fairseq. A plugin given by `--user-dir` is
imported first.
"""

import argparse
from collections.abc import Callable, Sequence

from fairseq_lite.dataclass.configs import SETTINGS_GROUPS
from fairseq_lite.dataclass.utils import gen_parser_from_dataclass
from fairseq_lite.options.initialize import import_components
from fairseq_lite.options.legacy_args import selected_architecture
from fairseq_lite.registry import COMPONENT_REGISTRIES, ArchitectureArgs

_COMPONENT_FLAGS = ("task", "criterion", "optimizer", "lr_scheduler")
TRAIN_GROUPS = ("common", "distributed_training", "dataset", "optimization", "checkpoint")
GENERATION_GROUPS = ("common", "common_eval", "dataset", "generation")
EVAL_LM_GROUPS = ("common", "common_eval", "dataset", "eval_lm")


class FairseqArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that knows its settings groups and which components it may select; scripts add
    their own flags to it as to any parser."""

    def __init__(self, description: str, groups: Sequence[str], components: Sequence[str], default_task: str):
        super().__init__(description=description, allow_abbrev=False, conflict_handler="resolve")
        self.groups = list(groups)
        self.components = list(components)
        self.default_task = default_task
        self.dests: set[str] = set()
        self.add_argument("--user-dir", default=None, help="path to a python module with custom components")
        for kind in components:
            default = default_task if kind == "task" else None
            self.add_argument(
                "--" + kind.replace("_", "-"), default=default, metavar=kind.upper(), help=f"{kind} to use"
            )
        if "model" in components:
            self.add_argument("--arch", "-a", default=None, metavar="ARCH", help="model architecture")
        for group in groups:
            gen_parser_from_dataclass(self.add_argument_group(group), SETTINGS_GROUPS[group], taken=self.dests)


def get_parser(desc: str, default_task: str = "translation") -> FairseqArgumentParser:
    return FairseqArgumentParser(desc, ["common"], ["task"], default_task)


def get_training_parser(default_task: str = "translation") -> FairseqArgumentParser:
    return FairseqArgumentParser("Trainer", TRAIN_GROUPS, ("task", "model", *_COMPONENT_FLAGS[1:]), default_task)


def get_generation_parser(interactive: bool = False, default_task: str = "translation") -> FairseqArgumentParser:
    groups = GENERATION_GROUPS + (("interactive",) if interactive else ())
    return FairseqArgumentParser("Generation", groups, ("task",), default_task)


def get_interactive_generation_parser(default_task: str = "translation") -> FairseqArgumentParser:
    return get_generation_parser(interactive=True, default_task=default_task)


def get_eval_lm_parser(default_task: str = "language_modeling") -> FairseqArgumentParser:
    return FairseqArgumentParser("Evaluate Language Model", EVAL_LM_GROUPS, ("task",), default_task)


def parse_args_and_arch(
    parser: FairseqArgumentParser,
    input_args: Sequence[str] | None = None,
    parse_known: bool = False,
    suppress_defaults: bool = False,
    modify_parser: Callable[[argparse.ArgumentParser], None] | None = None,
) -> argparse.Namespace | tuple[argparse.Namespace, list[str]]:
    """The Namespace of every flag of the parser and of the selected components, the architecture
    applied; with `parse_known`, (namespace, the arguments not recognized)."""
    selectors, _ = parser.parse_known_args(input_args)
    import_components(selectors.user_dir)
    for kind in parser.components:
        name = getattr(selectors, "arch" if kind == "model" else kind, None)
        if not name:
            continue
        entry = COMPONENT_REGISTRIES[kind].get(selected_architecture(name).model if kind == "model" else name)
        if entry.dataclass is not None:
            # Model flags leave unset values out, so that the architecture's defaults apply (as fairseq's
            # argument_default=SUPPRESS model group does).
            group = parser.add_argument_group(f"{kind}-specific configuration")
            gen_parser_from_dataclass(group, entry.dataclass, delete_default=kind == "model", taken=parser.dests)
    if modify_parser is not None:
        modify_parser(parser)
    if parse_known:
        args, extra = parser.parse_known_args(input_args)
    else:
        args, extra = parser.parse_args(input_args), []
    if suppress_defaults:  # only the values that differ from the parser's defaults
        defaults = vars(parser.parse_known_args([])[0])
        args = argparse.Namespace(**{k: v for k, v in vars(args).items() if defaults.get(k, object()) != v})
    if getattr(args, "arch", None):
        filled = ArchitectureArgs(vars(args))
        selected_architecture(args.arch).fill_defaults(filled)
        for name, value in filled.items():
            setattr(args, name, value)
    return (args, extra) if parse_known else args
