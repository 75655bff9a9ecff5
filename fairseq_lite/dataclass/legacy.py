"""fairseq's older component style: flags declared by `add_args(parser)` instead of a dataclass, and an
argparse Namespace (`args`) instead of a config.

A component registered without a dataclass that has `add_args` gets one, made from its flags by
`dataclass_from_add_args`. Each flag becomes a field with the flag's type, default and help. So
fairseq-train shows and parses the flags, and fairseq-hydra-train sets them as
`model.encoder_embed_dim=256`. When the component is built, `legacy_namespace` gives it fairseq's flat
`args`: every group's values as attributes of one Namespace, its own group's last.

A flag that has no default and that the user did not set is absent from `args`. fairseq's parser leaves
such flags out too (argparse.SUPPRESS), so `getattr(args, "x", default)` in an architecture function
or a `build_model` works as written.
"""

import argparse
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.errors import ConfigError, key

UNSET = "legacy_unset"  # field metadata: the flag had no default, so "not set" leaves it out of args
NO_FLAG = "no_flag"  # field metadata: set by an architecture function, no flag of its own (as in fairseq)
PLAIN_TYPES = (int, float, str)


def has_add_args(cls: Any) -> bool:
    return callable(getattr(cls, "add_args", None))


def _flag_actions(cls: Any, suppress: bool) -> list[argparse.Action]:
    # suppress: argument_default=SUPPRESS, as fairseq's model-specific group, where a flag without
    # default= has none (absent from args until set), so an architecture's getattr default applies. Other
    # kinds' flags go on fairseq's main parser, where no default means None.
    default = argparse.SUPPRESS if suppress else None
    parser = argparse.ArgumentParser(add_help=False, argument_default=default, allow_abbrev=False)
    cls.add_args(parser)
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def _field_for(action: argparse.Action) -> tuple[str, Any, dataclasses.Field]:
    metadata: dict[str, Any] = {"help": action.help or "", "legacy_flags": list(action.option_strings)}
    if action.metavar is not None:
        metadata["metavar"] = action.metavar
    default = action.default
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        # A suppressed switch is unset until given (fairseq's model flags), so that an architecture's
        # `getattr(args, "x", True)` still applies.
        tp: Any = bool | None if default is argparse.SUPPRESS else bool
    elif isinstance(action, argparse._StoreAction):
        convert = action.type or str
        inner = convert if convert in PLAIN_TYPES else Any
        if convert not in PLAIN_TYPES:
            metadata["legacy_type"] = convert  # applied to a string from Hydra, as argparse would
        many = action.nargs in ("+", "*") or isinstance(action.nargs, int) and action.nargs > 1
        tp = list[inner] | None if many else (inner | None if inner is not Any else Any)
        if action.choices is not None:
            metadata["choices"] = list(action.choices)
    else:
        raise ConfigError(
            f"flag {'/'.join(action.option_strings)} uses argparse action {type(action).__name__}: only plain "
            "values and store_true/store_false flags map to a config field; give the component a dataclass"
        )
    if default is argparse.SUPPRESS:
        metadata[UNSET] = True
        default = None
    if isinstance(default, (list, dict)):
        value = default
        return action.dest, tp, dataclasses.field(default_factory=lambda: list(value), metadata=metadata)
    return action.dest, tp, dataclasses.field(default=default, metadata=metadata)


def dataclass_from_add_args(
    cls: Any, suppress_unset: bool = False, base: type[FairseqDataclass] = FairseqDataclass
) -> type[FairseqDataclass]:
    """The config dataclass of a component that declares its flags with `add_args(parser)`.
    `suppress_unset`: a flag without a default is left out of args until set (fairseq does so for
    models); otherwise it is None."""
    fields = [_field_for(a) for a in _flag_actions(cls, suppress_unset)]
    seen: set[str] = set()
    unique = [f for f in fields if not (f[0] in seen or seen.add(f[0]))]
    made = dataclasses.make_dataclass(f"{cls.__name__}Config", unique, bases=(base,))
    made.__module__ = cls.__module__
    made.__legacy__ = True
    return made


def extend_dataclass(dc: type[FairseqDataclass], extra: Mapping[str, Any]) -> type[FairseqDataclass]:
    """`dc` with more fields (an architecture function sets attributes that are no flag), unset by default."""
    have = {f.name for f in dataclasses.fields(dc)}
    new = [
        (
            name,
            Any,
            dataclasses.field(default=None, metadata={"help": "set by an architecture", UNSET: True, NO_FLAG: True}),
        )
        for name in extra
        if name not in have and not name.startswith("_")
    ]
    if not new:
        return dc
    made = dataclasses.make_dataclass(dc.__name__, new, bases=(dc,))
    made.__module__ = dc.__module__
    made.__legacy__ = True
    return made


def is_legacy(dc: Any) -> bool:
    return bool(getattr(dc, "__legacy__", False))


def _plain(node: Any) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return OmegaConf.to_container(node, resolve=True)
    return dict(node) if isinstance(node, Mapping) else dict(vars(node))


def _own_values(values: Mapping[str, Any], dc: type | None, where: str) -> dict[str, Any]:
    """The group's values as args: unset flags left out, string values converted by the flag's type,
    choices checked."""
    fields = {f.name: f for f in dataclasses.fields(dc)} if dc is not None and dataclasses.is_dataclass(dc) else {}
    out = {}
    for name, value in values.items():
        f = fields.get(name)
        if f is not None and value is None and f.metadata.get(UNSET):
            continue
        if f is not None:
            convert: Callable[[Any], Any] | None = f.metadata.get("legacy_type")
            if convert is not None and isinstance(value, str):
                try:
                    value = convert(value)
                except Exception as e:
                    raise ConfigError(f"{key(where + '.' + name)}={value!r} is invalid: {e}") from None
            choices = f.metadata.get("choices")
            if choices is not None and value is not None and value not in choices:
                allowed = ", ".join(map(str, choices))
                raise ConfigError(f"{key(where + '.' + name)}={value!r} is invalid: it must be one of: {allowed}")
        out[name] = value
    return out


def legacy_namespace(root: Any, group: str, dataclasses_by_group: Mapping[str, type | None]) -> argparse.Namespace:
    """fairseq's flat `args` for a component of `group`: every group's values as attributes, the
    component groups (task, model, criterion, ...) after the settings, `group` itself last; each component
    group's registered name as fairseq's selector (`args.task`, `args.arch`, `args.criterion`, ...)."""
    root_values = _plain(root)
    args = argparse.Namespace()
    order = [g for g in root_values if g != group] + [group]
    for name in order:
        values = root_values.get(name)
        if not isinstance(values, Mapping):
            continue
        component = values.get("_name")
        for field_name, value in _own_values(values, dataclasses_by_group.get(name), name).items():
            if not field_name.startswith("_"):
                setattr(args, field_name, value)
        if component is not None and name != "model":
            setattr(args, name, component)
    model = root_values.get("model")
    if isinstance(model, Mapping) and model.get("_name") is not None and not hasattr(args, "arch"):
        args.arch = model["_name"]
    return args
