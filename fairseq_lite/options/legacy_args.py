"""fairseq-train's flat argparse flags, generated from the same dataclasses as the Hydra config.

Flags the user gives are turned into Hydra overrides (`--decoder-layers 2` -> `model.decoder_layers=2`)
and composed exactly like `fairseq-hydra-train` would, so both commands always agree.
"""

import argparse
import dataclasses
from collections.abc import Sequence
from enum import Enum
from typing import Any

from fairseq_lite.dataclass.configs import SETTINGS_GROUPS
from fairseq_lite.dataclass.utils import (
    argparse_kwargs,
    field_default,
    field_flags,
    interpolated_name,
    is_interpolation,
)
from fairseq_lite.errors import ConfigError, flag_name
from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY, COMPONENT_REGISTRIES, MODEL_REGISTRY, Architecture, get_architecture

# Component-choosing flags, fairseq's names -> config group.
COMPONENT_FLAGS = {"task": "task", "criterion": "criterion", "optimizer": "optimizer", "lr_scheduler": "lr_scheduler"}


class LegacyParser:
    """Builds the parser for the components the command line selects, and maps flags back to
    `group.field` keys."""

    def __init__(
        self,
        prog: str,
        description: str,
        groups: Sequence[str],
        components: Sequence[str],
        positional_data: bool = True,
        defaults: dict[str, str] | None = None,
    ):
        self.prog = prog
        self.description = description
        self.groups = list(groups)
        self.components = list(components)
        self.positional_data = positional_data
        self.defaults = dict(defaults or {})

    def _selector_parser(self, add_help: bool, user_dir: bool = True) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(
            prog=self.prog,
            description=self.description,
            add_help=add_help,
            allow_abbrev=False,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        for flag in self.components:
            choices = COMPONENT_REGISTRIES[flag].choices()
            parser.add_argument(
                flag_name(flag),
                default=self.defaults.get(flag),
                metavar=flag.upper(),
                help=f"{flag} to use; one of: {', '.join(choices)}",
            )
        if "model" in self.components:
            parser.add_argument(
                "--arch",
                "-a",
                metavar="ARCH",
                default=self.defaults.get("arch"),
                help="model architecture (e.g. transformer_lm_gpt)",
            )
        if user_dir:  # needed before parsing the rest: plugins add components and their flags
            parser.add_argument("--user-dir", default=None, help="path to a python module with custom components")
        return parser

    def parse_values(self, argv: Sequence[str]) -> dict[str, Any]:
        """{config key ("group.field"): value} for every flag the user gave."""
        _, given, targets = self.parse(argv)
        return {key: value for dest, value in given.items() for key in targets[dest]}

    def parse(self, argv: Sequence[str]) -> tuple[argparse.Namespace, dict[str, Any], dict[str, list[str]]]:
        """Returns (selected components, {flag dest: value} for flags the user gave, dest -> keys)."""
        selectors, _ = self._selector_parser(add_help=False).parse_known_args(argv)
        import_components(selectors.user_dir)
        # With the `common` group, --user-dir comes from common.user_dir like any other field.
        parser = self._selector_parser(add_help=True, user_dir="common" not in self.groups)
        targets: dict[str, list[str]] = {}
        if self.positional_data:
            parser.add_argument(
                "data", nargs="?", default=argparse.SUPPRESS, help="path to the data directory (task.data)"
            )
            targets["data"] = ["task.data"]
        for group in self.groups:
            self._add_fields(parser.add_argument_group(group), group, SETTINGS_GROUPS[group], targets)
        for kind in self.components:
            name = self._selected_name(kind, selectors)
            if name is None:
                continue
            entry = COMPONENT_REGISTRIES[kind].get(name)
            if entry.dataclass is not None:
                self._add_fields(parser.add_argument_group(f"{kind} ({name})"), kind, entry.dataclass, targets)
        args = parser.parse_args(argv)
        given = {dest: value for dest, value in vars(args).items() if dest in targets}
        return selectors, given, targets

    def _selected_name(self, kind: str, selectors: argparse.Namespace) -> str | None:
        if kind == "model":
            return selected_architecture(selectors.arch).model if selectors.arch else None
        return getattr(selectors, kind)

    def _add_fields(self, group_parser, group: str, dc: type, targets: dict[str, list[str]]) -> None:
        for f in dataclasses.fields(dc):
            if (
                f.name.startswith("_")
                or f.metadata.get("no_flag")  # set by an architecture function: no flag, as in fairseq
                or (group.startswith("task") and f.name == "data" and self.positional_data)
            ):
                continue
            default = field_default(dc, f)
            if is_interpolation(default) and interpolated_name(default) == f.name:
                continue  # the same name in another group (model.sentence_avg follows optimization's): one flag
            dest = f.name
            if dest in targets:
                targets[dest].append(f"{group}.{f.name}")  # fairseq's namespace is flat: one flag sets both
                continue
            targets[dest] = [f"{group}.{f.name}"]
            group_parser.add_argument(*field_flags(f), dest=dest, **argparse_kwargs(f, default))

    def to_overrides(self, argv: Sequence[str]) -> list[str]:
        selectors, given, targets = self.parse(argv)
        overrides: list[str] = []
        if selectors.user_dir and "common" not in self.groups:
            overrides.append(f"common.user_dir={format_override_value(selectors.user_dir)}")
        for kind in self.components:
            if kind == "model":
                continue
            name = getattr(selectors, kind)
            if name is not None:
                COMPONENT_REGISTRIES[kind].get(name)
                overrides.append(f"{kind}={name}")
        if "model" in self.components:
            if not selectors.arch:
                raise ConfigError("--arch is required (e.g. --arch transformer_lm_gpt)")
            arch = selected_architecture(selectors.arch)
            overrides.append(f"model={arch.model}")
            user_model_values = {
                t.split(".", 1)[1]: v for dest, v in given.items() for t in targets[dest] if t.startswith("model.")
            }
            for key, value in sorted(arch.values(user_model_values).items()):
                if key not in user_model_values:
                    overrides.append(f"model.{key}={format_override_value(value)}")
        for dest, value in given.items():
            for key in targets[dest]:
                overrides.append(f"{key}={format_override_value(value)}")
        return overrides


def selected_architecture(name: str) -> Architecture:
    """--arch NAME: a named architecture, or (as fairseq accepts) a model registered without one, which
    then keeps its config's defaults."""
    if name not in ARCH_REGISTRY and name in MODEL_REGISTRY:
        return Architecture(name, name, lambda args: None)
    return get_architecture(name)


def format_override_value(value: Any) -> str:
    """A Python value as Hydra override grammar (strings quoted so ':', ',' or spaces survive)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_override_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"
