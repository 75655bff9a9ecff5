"""argparse flags from config dataclasses: fairseq's `gen_parser_from_dataclass`, and what fairseq-train's
parser (options/legacy_args.py) builds its flags with.

A field `decoder_layers: int = 6` becomes `--decoder-layers N` with the field's help, type, choices and
default shown. Booleans become store_true (store_false when they default to True). Lists take fairseq's
'[0.1, 0.2]' / '(0.9, 0.98)' / '0.25' spellings. A field whose default follows another group
(`${optimization.lr}`) gets no flag of its own: the other group's flag sets it.
"""

import argparse
import dataclasses
import types
import typing
from enum import Enum
from typing import Any

from fairseq_lite.dataclass.base import FairseqDataclass, eval_str_list
from fairseq_lite.errors import flag_name


def is_interpolation(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("${")


def interpolated_name(value: str) -> str:
    """The field an interpolation follows: `${dataset.batch_size}` -> "batch_size"."""
    return value[2:-1].rsplit(".", 1)[-1]


def unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def parse_list(text: str, inner: type) -> list[Any]:
    try:
        return eval_str_list(text, inner)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e


def argparse_kwargs(f: dataclasses.Field, default: Any, suppress_default: bool = True) -> dict[str, Any]:
    """add_argument's keyword arguments for a field. `suppress_default`: leave the default out of the
    namespace (so that only flags the user gave appear), showing it in the help only."""
    tp = unwrap_optional(f.type)
    kwargs: dict[str, Any] = {"help": f.metadata.get("help", "")}
    shown = default.value if isinstance(default, Enum) else default
    if default is dataclasses.MISSING:
        shown = None
    kwargs["default"] = argparse.SUPPRESS if suppress_default else shown
    if tp is bool:
        kwargs["action"] = "store_false" if default is True else "store_true"
        return kwargs
    if isinstance(tp, type) and issubclass(tp, Enum):
        kwargs["choices"] = [m.value for m in tp]
        kwargs["type"] = str
    elif "choices" in f.metadata:
        kwargs["choices"] = list(f.metadata["choices"])
    if "type" in kwargs:
        pass
    elif typing.get_origin(tp) in (list,):
        (inner,) = typing.get_args(tp) or (str,)
        inner = inner if inner in (int, float, str) else str
        kwargs["type"] = lambda s, inner=inner: parse_list(s, inner)
        kwargs["metavar"] = "LIST"
    elif tp in (int, float, str):
        kwargs["type"] = tp
    elif "legacy_type" in f.metadata:
        kwargs["type"] = f.metadata["legacy_type"]
    else:
        kwargs["type"] = str
    if "argparse_const" in f.metadata:  # the flag alone means this value (fairseq's `--print-alignment`)
        kwargs["nargs"] = "?"
        kwargs["const"] = f.metadata["argparse_const"]
    if "metavar" in f.metadata:
        kwargs["metavar"] = f.metadata["metavar"]
    if is_interpolation(shown):  # follows another field: its help says which; argparse has no value for it
        if not suppress_default:
            kwargs["default"] = None
    elif shown is not None:
        kwargs["help"] += f" (default: {shown})"
    return kwargs


def field_flags(f: dataclasses.Field) -> list[str]:
    """The flag and its aliases: a legacy flag keeps the spellings add_args gave it (`--weight-decay`,
    `--wd`), a dataclass field its name and an `argparse_alias`."""
    if f.metadata.get("legacy_flags"):
        return list(f.metadata["legacy_flags"])
    return [flag_name(f.name)] + ([f.metadata["argparse_alias"]] if "argparse_alias" in f.metadata else [])


def field_default(dc: type, f: dataclasses.Field) -> Any:
    if isinstance(dc, type) and issubclass(dc, FairseqDataclass):
        return dc.field_default(f.name)
    return f.default


def gen_parser_from_dataclass(
    parser: Any,
    dataclass_instance: Any,
    delete_default: bool = False,
    with_prefix: str | None = None,
    taken: set[str] | None = None,
) -> None:
    """Add a flag to `parser` for every field of the dataclass (an instance or the class), as fairseq's
    function of that name; a field named `data` is the positional data directory. `delete_default`
    leaves defaults out of the parsed namespace; `with_prefix` puts a prefix before each flag name
    (`--<prefix>-<name>`); `taken`: names that already have a flag (fairseq's namespace is flat: one
    flag per name), updated with the ones added."""
    dc = dataclass_instance if isinstance(dataclass_instance, type) else type(dataclass_instance)
    taken = set() if taken is None else taken
    for f in dataclasses.fields(dc):
        if f.name.startswith("_") or f.name in taken or f.metadata.get("no_flag"):
            continue
        default = field_default(dc, f)
        if is_interpolation(default):
            continue
        taken.add(f.name)
        if f.name == "data":
            parser.add_argument("data", nargs="?", default=argparse.SUPPRESS if delete_default else None)
            continue
        flags = field_flags(f)
        if with_prefix:
            flags = [f"--{with_prefix}-{flag.lstrip('-')}" for flag in flags[:1]]
        parser.add_argument(*flags, dest=f.name, **argparse_kwargs(f, default, suppress_default=delete_default))


def add_registered_args(cls: Any, parser: Any, delete_default: bool = False) -> None:
    """fairseq's `Component.add_args(parser)`: the flags of the dataclass `cls` (or the registered class it
    extends) was registered with; none for a class registered without one. `delete_default`, as
    fairseq's models: only flags the user gave reach `args`, so architecture defaults still apply."""
    dc = getattr(cls, "__dataclass", None)
    if dc is not None:
        gen_parser_from_dataclass(parser, dc, delete_default=delete_default)
