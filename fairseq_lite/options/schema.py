"""Check a composed config against the dataclass schema, with one-line messages a user can act on.

Whatever Hydra composed — our bundled config, a user's own YAML from --config-dir, or the plain dict
stored in a checkpoint — is rebuilt field by field on top of the typed `FairseqConfig`: every key must
be a field (else: which key, and the nearest valid one), every value must fit the field's type (else:
which value, and what is allowed), and every component name must be registered (else: the choices).
"""

import difflib
import enum
import logging
import types
import typing
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from fairseq_lite.dataclass.configs import COMPONENT_GROUPS, SETTINGS_GROUPS, FairseqConfig
from fairseq_lite.errors import ConfigError
from fairseq_lite.registry import COMPONENT_REGISTRIES, cfg_name, component_node, did_you_mean
from fairseq_lite.targets import is_target, locate_target

logger = logging.getLogger(__name__)

# Fields fairseq renamed; old checkpoints and configs still load. "group.old" -> "group.new".
RENAMED_FIELDS = {
    "dataset.max_sentences": "dataset.batch_size",
    "dataset.max_sentences_valid": "dataset.batch_size_valid",
}


def describe_type(annotation: Any) -> str:
    """What a value of this field must look like, in a user's words."""
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return f"{describe_type(args[0])} (or null)"
    if origin in (list,):
        inner = args[0] if args else None
        plural = {int: "integers", float: "numbers", str: "strings"}.get(inner, "values")
        return f"a list of {plural} like [{1 if inner is int else 0.001}]"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in annotation)
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(annotation, "a value")


def field_type(schema: type, key: str) -> Any:
    return schema.__dataclass_fields__[key].type


def set_field(target: DictConfig, schema: type, path: str, key: str, value: Any) -> None:
    """Set one field with a clear error; fairseq's list fields (lr, update_freq) also take a scalar."""
    node = target._get_node(key)
    if isinstance(node, ListConfig) or typing.get_origin(field_type(schema, key)) in (list,):
        if (
            value is not None
            and not isinstance(value, (list, tuple, ListConfig))
            and not (isinstance(value, str) and (value.startswith("${") or value == "???"))
        ):
            value = [value]
    try:
        target[key] = value
    except OmegaConfBaseException as e:
        shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
        raise ConfigError(
            f"{path}.{key}={shown!r} is invalid: it must be {describe_type(field_type(schema, key))}"
        ) from e


def check_keys(values: Mapping, schema: type, path: str, strict: bool) -> dict[str, Any]:
    known = [k for k in schema.__dataclass_fields__ if k != "_name"]
    kept = {}
    for key, value in values.items():
        if key == "_name":
            continue
        full = f"{path}.{key}"
        if full in RENAMED_FIELDS:
            new_group, new_key = RENAMED_FIELDS[full].split(".", 1)
            if new_group == path:
                logger.info(f"{full} is now {RENAMED_FIELDS[full]}")
                kept.setdefault(new_key, value)
                continue
        if key not in known:
            if strict:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean '{path}.{close[0]}'?)" if close else ""
                listed = ", ".join(known[:10]) + (", ..." if len(known) > 10 else "")
                raise ConfigError(f"unknown config key '{full}'{hint}; {path} has: {listed}")
            logger.warning(f"ignoring {full}={value!r}: not a config field (any more)")
            continue
        kept[key] = value
    return kept


def typed_config(cfg: Any, strict: bool = True) -> DictConfig:
    """Rebuild `cfg` (DictConfig or dict) on the FairseqConfig schema. strict=False (checkpoints)
    drops unknown keys with a warning instead of failing."""
    plain = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True) if isinstance(cfg, DictConfig) else dict(cfg)
    if isinstance(plain.get("_group_"), Mapping):
        # A primary config with fairseq's `# @package _group_` header lands under '_group_';
        # what the command line set sits at the top level and wins.
        nested = plain.pop("_group_")
        plain = OmegaConf.to_container(OmegaConf.merge(nested, plain), resolve=False)
    typed = OmegaConf.structured(FairseqConfig)
    groups = list(SETTINGS_GROUPS) + list(COMPONENT_GROUPS)
    for group, values in plain.items():
        if group in ("hydra", "_name", "defaults"):
            continue
        if group in SETTINGS_GROUPS:
            if values is None:
                continue
            if not isinstance(values, Mapping):
                raise ConfigError(f"'{group}' must be a group of settings like {group}.FIELD=VALUE, got {values!r}")
            schema = SETTINGS_GROUPS[group]
            target = typed[group]
        elif group in COMPONENT_GROUPS:
            name = cfg_name(values)
            if is_target(values):
                # A Hydra _target_ node: kept as written (interpolations too); the target is checked here,
                # its arguments before the run (Registry.check_target).
                if name is not None:
                    raise ConfigError(
                        f"'{group}' has both _name ({name}) and _target_ ({values['_target_']}): a component is "
                        f"a registered name or a _target_ node, not both"
                    )
                COMPONENT_REGISTRIES[group].require_target_builder()  # a kind without them: its one-line error
                locate_target(values["_target_"], group)
                typed[group] = values
                continue
            if name is None:
                if isinstance(values, Mapping) and any(k != "_name" for k in values):
                    raise ConfigError(
                        f"'{group}' has settings but no component name: select one with "
                        f"`{group}=NAME` or set `{group}._name` (choices: "
                        f"{', '.join(COMPONENT_REGISTRIES[group].choices())})"
                    )
                continue
            entry = COMPONENT_REGISTRIES[group].get(name)  # unknown name: lists the choices
            typed[group] = component_node(group, name)
            if entry.dataclass is None or isinstance(values, str):
                continue
            schema = entry.dataclass
            target = typed[group]
        else:
            if strict:
                raise ConfigError(
                    f"unknown config group '{group}'{did_you_mean(group, groups)}; groups are: {', '.join(groups)}"
                )
            logger.warning(f"ignoring unknown config group '{group}'")
            continue
        for key, value in check_keys(values, schema, group, strict).items():
            set_field(target, schema, group, key, value)
    return typed
