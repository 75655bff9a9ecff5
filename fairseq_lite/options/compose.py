"""Build the exact config a command would build, from Python (tests, notebooks, scripts).

    from fairseq_lite.options.compose import compose_config
    cfg = compose_config(["task=language_modeling", "task.data=data-bin/x",
                          "model=transformer_lm/transformer_lm_gpt", "model.decoder_layers=2"])

`fairseq-hydra-train` and `fairseq-train` both end in `finalize_config`, so all three agree.
"""

import os
import re
from collections.abc import Sequence

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

from fairseq_lite.errors import ConfigError, flag_name
from fairseq_lite.options.initialize import CONFIG_NAME, bundled_config_dir, hydra_init, import_components
from fairseq_lite.options.overrides import explain_override_error, hydra_message, normalize_overrides
from fairseq_lite.options.schema import typed_config
from fairseq_lite.options.yaml_source import as_source_path
from fairseq_lite.registry import COMPONENT_REGISTRIES, cfg_name, component_node
from fairseq_lite.targets import is_target

# Components a run cannot do without; the others (bpe, tokenizer) are optional.
REQUIRED_COMPONENTS = ("task", "model", "criterion", "optimizer", "lr_scheduler")
# What a run uses when its config names none (config/config.yaml's defaults list says the same, and a
# test keeps the two equal); a user's own primary config (--config-name) gets them from here.
DEFAULT_COMPONENTS = {"criterion": "cross_entropy", "optimizer": "adam", "lr_scheduler": "fixed"}


def user_dir_from_overrides(overrides: Sequence[str]) -> str | None:
    """The plugin dir must be imported before composing, so that its components can be selected."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key == "common.user_dir" and value not in ("", "null"):
            return value.strip("'\"")
    return None


def compose_config(
    overrides: Sequence[str] = (),
    config_dir: str | None = None,
    config_name: str = CONFIG_NAME,
    config_path: str | None = None,
) -> DictConfig:
    """The config `fairseq-hydra-train [--config-dir DIR] [--config-path PATH] [--config-name NAME]
    OVERRIDES...` trains with.

    `config_dir` adds a directory of the user's YAML to Hydra's search path, next to the bundled tree
    (so `model=transformer_lm/transformer_lm_gpt` still works there); `config_path` replaces the bundled
    tree (a directory; the components' dataclasses still give every default); `config_name` picks the
    primary config (`NAME` or `NAME.yaml`). YAML files may carry fairseq's `# @package _group_` header.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    import_components(user_dir_from_overrides(overrides))
    hydra_init()
    overrides = normalize_overrides(overrides)
    config_name = strip_yaml_suffix(config_name)
    primary_dir = bundled_config_dir()
    if config_path is not None:
        primary_dir = os.path.abspath(os.path.expanduser(config_path))
        if not os.path.isdir(primary_dir):
            raise ConfigError(f"--config-path {config_path}: no such directory")
    if config_dir is not None:
        # As with `--config-dir`: the user's directory is searched first and the bundled tree stays
        # reachable, so a user's YAML can select bundled options and add options of its own.
        user_dir = os.path.abspath(os.path.expanduser(config_dir))
        if not os.path.isdir(user_dir):
            raise ConfigError(f"--config-dir {config_dir}: no such directory")
        if os.path.isfile(os.path.join(user_dir, f"{config_name}.yaml")):
            primary_dir, extra_dir = user_dir, primary_dir
        else:
            extra_dir = user_dir
        overrides = [f"hydra.searchpath=[{as_source_path(extra_dir)}]", *overrides]
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=primary_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as e:
        raise explain_override_error(overrides, e) from e
    choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return finalize_config(cfg, choices)


def is_selected(node) -> bool:
    """A component is configured: a registered name, or a `_target_` node."""
    return cfg_name(node) is not None or is_target(node)


def strip_yaml_suffix(config_name: str) -> str:
    """Hydra names a config without its suffix; fairseq's docs write `--config-name wiki103.yaml` too."""
    return config_name[: -len(".yaml")] if config_name.endswith(".yaml") else config_name


def finalize_config(cfg: DictConfig, choices: dict[str, str] | None = None) -> DictConfig:
    """Check the composed config against the schema, fill every component from its dataclass,
    require what a run needs, and resolve interpolations.

    A component may arrive as a bare name (`optimizer: adam` in a user's YAML) or as a dict with
    `_name` and no schema; both come out typed and validated like `optimizer=adam` on the command line.
    `choices` are Hydra's (group -> the option composed, `hydra.runtime.choices`): an option file in
    `model/<model>/` without a `_name` (as fairseq's own YAML files are) configures `<model>`.
    """
    cfg = typed_config(name_components_by_their_option(cfg, choices or {}), strict=True)
    for group, name in DEFAULT_COMPONENTS.items():
        if not is_selected(cfg.get(group)):
            cfg[group] = component_node(group, name)
    try:
        for group in REQUIRED_COMPONENTS:
            if not is_selected(cfg.get(group)):
                choices = ", ".join(COMPONENT_REGISTRIES[group].choices())
                if group == "model":
                    raise ConfigError(
                        f"no model selected: add `model=MODEL` or `model=MODEL/ARCH` (models: "
                        f"{choices}; architectures are listed by `--help`)"
                    )
                raise ConfigError(f"no {group} selected: add `{group}=NAME` (available: {choices})")
        missing = sorted(_missing_keys(cfg))
        if missing:
            name = missing[0]
            legacy = "the data directory as its first argument" if name == "task.data" else f"`{flag_name(name)}`"
            raise ConfigError(
                f"{name} is required but not set: add `{name}=...` to the command line (or {legacy} with "
                f"fairseq-train)" + (f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else "")
            )
        OmegaConf.resolve(cfg)
    except InterpolationKeyError as e:
        raise ConfigError(_missing_interpolation_message(cfg, e)) from e
    except OmegaConfBaseException as e:
        raise ConfigError(hydra_message(e)) from e
    return cfg


def _key_holding(values: object, text: str, prefix: str = "") -> str | None:
    """The dotted key whose raw value is `text` (an interpolation), or None."""
    if isinstance(values, dict):
        for k, v in values.items():
            found = _key_holding(v, text, f"{prefix}{k}.")
            if found:
                return found
    elif values == text:
        return prefix[:-1]
    return None


def _missing_interpolation_message(cfg: DictConfig, error: InterpolationKeyError) -> str:
    """`model.add_bos_token` follows `${task.add_bos_token}` and the selected task has no such field: say
    which components have it (the model belongs with another task), instead of OmegaConf's words."""
    match = re.search(r"Interpolation key '([\w.]+)' not found", str(error))
    if match is None:
        return hydra_message(error)
    target = match.group(1)
    where = error.full_key or _key_holding(OmegaConf.to_container(cfg, resolve=False), "${" + target + "}") or "a value"
    group, _, field = target.partition(".")
    registry = COMPONENT_REGISTRIES.get(group)
    if registry is None or not field:
        return f"{where} follows {target}, which is not set"
    selected = cfg_name(cfg.get(group)) if group in cfg else None
    having = [
        name
        for name in registry.choices()
        if registry.get(name).dataclass is not None and field in registry.get(name).dataclass.__dataclass_fields__
    ]
    hint = f"; {group}s that have it: {', '.join(having)} ({group}=NAME, or {flag_name(group)} NAME)" if having else ""
    return f"{where} follows {target}, which {group} '{selected}' does not have{hint}"


def name_components_by_their_option(cfg: DictConfig, choices: dict[str, str]) -> DictConfig:
    """`model=transformer_lm/2_layers` selects the model transformer_lm, whether or not 2_layers.yaml
    says `_name: transformer_lm`."""
    for group, registry in COMPONENT_REGISTRIES.items():
        node, choice = cfg.get(group), choices.get(group)
        if not isinstance(node, DictConfig) or node.get("_name") is not None or not choice:
            continue
        head = str(choice).split("/", 1)[0]
        if head in registry:
            with open_dict(cfg):
                node._name = head
    return cfg


def _missing_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    found = []
    for key in cfg.keys():
        full = f"{prefix}{key}"
        if OmegaConf.is_missing(cfg, key):
            found.append(full)
            continue
        value = cfg._get_node(key)
        if isinstance(value, DictConfig) and not value._is_none() and not value._is_interpolation():
            found.extend(_missing_keys(value, f"{full}."))
    return found


def to_plain_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def config_from_dict(plain: dict) -> DictConfig:
    """Rebuild a typed config from the plain dict a checkpoint stores.

    Fields added since the checkpoint was written get their defaults, renamed fields are mapped
    (RENAMED_FIELDS), and fields that no longer exist are dropped with a warning instead of failing the
    load; an architecture or task that is not registered any more is a clear error.
    """
    import_components((plain.get("common") or {}).get("user_dir"))
    return typed_config(plain, strict=False)
