"""The ground floor of the config system: the dataclass base and enum choices.

Kept free of any registry or top-level config so that every component module can import it
without creating an import cycle (see docs/DESIGN.md).
"""

import dataclasses
from dataclasses import MISSING, dataclass, field
from enum import Enum, EnumMeta
from typing import Any


class StrEnumMeta(EnumMeta):
    # `"json" in LogFormat` should test values, as fairseq's ChoiceEnum does.
    def __contains__(cls, item):
        return item in cls._value2member_map_ or (isinstance(item, Enum) and super().__contains__(item))


class StrEnum(Enum, metaclass=StrEnumMeta):
    def __str__(self):
        return self.value

    def __eq__(self, other):
        return self.value == (other.value if isinstance(other, Enum) else other)

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return repr(self.value)


def ChoiceEnum(choices: list[str]) -> type[StrEnum]:
    """An Enum whose members are the given strings: OmegaConf validates values against it."""
    return StrEnum("Choices", {c: c for c in choices})


@dataclass
class FairseqDataclass:
    """Base of every config node. `_name` is the registered name of the component it configures."""

    _name: str | None = None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]

    @classmethod
    def field_help(cls, name: str) -> str | None:
        return cls.__dataclass_fields__[name].metadata.get("help")

    @classmethod
    def field_default(cls, name: str) -> Any:
        f = cls.__dataclass_fields__[name]
        if f.default_factory is not MISSING:
            return f.default_factory()
        return f.default


def cfg_field(default: Any = MISSING, help: str = "", *, default_factory: Any = MISSING, **metadata) -> Any:
    """A dataclass field with fairseq-style help metadata (used for --help and error messages)."""
    metadata = dict(metadata, help=help)
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def eval_str_list(value: Any, type=float) -> list[Any] | None:
    """Accept '[0.1, 0.2]', '(0.9, 0.98)', 0.25, [0.25] and return a list of `type`; for strings also
    bare comma-separated words ('TransformerEncoderLayer,TransformerDecoderLayer').

    fairseq users write list-valued options both ways (e.g. `--adam-betas '(0.9, 0.98)'`).
    """
    import ast

    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError) as e:
            if type is not str or not value.strip() or value.lstrip()[:1] in "[(\"'":
                raise ValueError(f"cannot parse {value!r} as a list of {type.__name__}") from e
            value = [word.strip() for word in value.split(",") if word.strip()]
    if isinstance(value, (int, float)):
        value = [value]
    try:
        return [type(v) for v in value]
    except (TypeError, ValueError) as e:
        raise ValueError(f"cannot parse {value!r} as a list of {type.__name__}") from e
