"""Command-line overrides as fairseq users write them, made to work on any primary config.

- A dotted override of one of our groups (`optimization.max_update=5`) becomes a force-set
  (`++optimization.max_update=5`): it works even when a user's own YAML (--config-name) does not
  mention the key, and the schema check that follows still rejects keys that do not exist, with a
  better message than Hydra's "Could not override ... use +key=value".
- fairseq's list fields take a scalar too: `optimization.lr=0.001` means `[0.001]`.
"""

import re
import typing
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser

from fairseq_lite.dataclass.configs import COMPONENT_GROUPS, SETTINGS_GROUPS
from fairseq_lite.errors import ConfigError
from fairseq_lite.options.schema import set_field
from fairseq_lite.registry import COMPONENT_REGISTRIES, component_node, did_you_mean


def _is_list_field(group: str, field: str) -> bool:
    schema = SETTINGS_GROUPS.get(group)
    if schema is None or field not in schema.__dataclass_fields__:
        return False
    return typing.get_origin(schema.__dataclass_fields__[field].type) in (list,)


def normalize_overrides(overrides: Sequence[str]) -> list[str]:
    out = []
    for override in overrides:
        key, sep, value = override.partition("=")
        plain_key = key.lstrip("+~")
        head = plain_key.split(".", 1)[0]
        if (
            not sep
            or key.startswith("~")
            or "." not in plain_key
            or "@" in plain_key
            or "/" in plain_key
            or head not in SETTINGS_GROUPS
            and head not in COMPONENT_GROUPS
        ):
            out.append(override)
            continue
        group, _, field = plain_key.partition(".")
        stripped = value.strip()
        if (
            _is_list_field(group, field)
            and stripped
            and not stripped.startswith(("[", "${"))
            and "," not in stripped
            and stripped != "null"
        ):
            value = f"[{stripped}]"
        out.append(f"++{plain_key}={value}")
    return out


def _selected_components(overrides: Sequence[str]) -> dict:
    chosen = {}
    for override in overrides:
        key, sep, value = override.lstrip("+").partition("=")
        if sep and key in COMPONENT_GROUPS:
            chosen[key] = value.split("/", 1)[0]
    return chosen


def explain_override_error(overrides: Sequence[str], error: Exception) -> ConfigError:
    """Turn a failed composition into one line naming the override at fault, when we can tell."""
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    chosen = _selected_components(overrides)
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except Exception:  # a syntax error: Hydra's own message says where
            break
        group, _, field = parsed.key_or_group.partition(".")
        if parsed.is_delete() and field and (group in SETTINGS_GROUPS or group in COMPONENT_GROUPS):
            return ConfigError(
                f"{override}: a field of the config schema cannot be deleted; give it a value "
                f"instead ({parsed.key_or_group}=...)"
            )
        if parsed.is_sweep_override() or parsed.is_delete():
            continue
        if not field or "." in field:
            continue
        if group in SETTINGS_GROUPS:
            schema, node = SETTINGS_GROUPS[group], OmegaConf.structured(SETTINGS_GROUPS[group])
        elif group in chosen and chosen[group] in COMPONENT_REGISTRIES[group]:
            entry = COMPONENT_REGISTRIES[group].get(chosen[group])
            if entry.dataclass is None:
                continue
            schema, node = entry.dataclass, component_node(group, chosen[group])
        else:
            continue
        if field not in schema.__dataclass_fields__:
            continue  # reported by the schema check, with a suggestion
        try:
            set_field(node, schema, group, field, parsed.value())
        except ConfigError as e:
            return e
    message = hydra_message(error)
    missing_option = re.search(r"Could not find '([\w/]+)/([\w.\-]+)'", message)
    if missing_option:
        group, option = missing_option.groups()
        top = group.split("/", 1)[0]
        given = f"{group.partition('/')[2] + '/' if '/' in group else ''}{option}"
        choices = available_options(top)
        return ConfigError(
            f"{top}={given}: no such {top}{did_you_mean(given, choices)}; available: {', '.join(choices) or 'none'}"
        )
    bad_key = re.search(r"Could not (?:override|append to) '([\w.]+)'", message)
    if bad_key:
        head = bad_key.group(1).split(".", 1)[0]
        groups = list(SETTINGS_GROUPS) + list(COMPONENT_GROUPS)
        if head not in groups:
            return ConfigError(
                f"unknown config group '{head}' in '{bad_key.group(1)}'"
                f"{did_you_mean(head, groups)}; groups are: {', '.join(groups)}"
            )
    return ConfigError(message)


def available_options(group: str) -> list[str]:
    """What `group=...` accepts: registered names and the bundled `group/<model>/<arch>` files."""
    from pathlib import Path

    from fairseq_lite.options.initialize import bundled_config_dir

    options = set(COMPONENT_REGISTRIES[group].choices()) if group in COMPONENT_REGISTRIES else set()
    root = Path(bundled_config_dir()) / group
    if root.is_dir():
        options.update(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))
    return sorted(options)


def hydra_message(error: Exception) -> str:
    text = str(error).replace("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines) if lines else type(error).__name__


def first_sweep_values(overrides: Sequence[str]) -> list[str] | None:
    """One job of a sweep (its first value everywhere), to check a multirun before launching it."""
    parser = OverridesParser.create()
    out = []
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except Exception:
            return None
        if parsed.is_sweep_override():
            first = next(iter(parsed.sweep_string_iterator()))
            prefix = override[: len(override) - len(override.lstrip("+~"))]
            out.append(f"{prefix}{parsed.get_key_element().lstrip('+~')}={first}")
        else:
            out.append(override)
    return out
