"""Build the exact config a command would build, from Python (tests, notebooks, scripts).

    from fairseq_lite.dataclass.compose import compose_config
    cfg = compose_config(["task=language_modeling", "task.data=data-bin/x",
                          "model=transformer_lm/transformer_lm_gpt", "model.decoder_layers=2"])

`fairseq-hydra-train` and `fairseq-train` both end in `finalize_config`, so all three agree.
"""

import os
from pathlib import Path
from typing import List, Optional, Sequence

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

import fairseq_lite
from fairseq_lite.dataclass.configs import COMPONENT_GROUPS
from fairseq_lite.dataclass.initialize import component_node, hydra_init, import_components
from fairseq_lite.errors import ConfigError
from fairseq_lite.registry import COMPONENT_REGISTRIES, cfg_name, did_you_mean

CONFIG_NAME = "config"
# Components a run cannot do without; the others (bpe, tokenizer) are optional.
REQUIRED_COMPONENTS = ("task", "model", "criterion", "optimizer", "lr_scheduler")


def bundled_config_dir() -> str:
    """The config/ tree shipped with fairseq-lite, for both editable and regular installs."""
    package_dir = Path(fairseq_lite.__file__).resolve().parent
    for candidate in (package_dir / "config", package_dir.parent / "config"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return str(candidate)
    raise ConfigError(f"fairseq-lite's bundled config tree is missing (looked in {package_dir / 'config'} "
                      f"and {package_dir.parent / 'config'}); reinstall fairseq-lite")


def user_dir_from_overrides(overrides: Sequence[str]) -> Optional[str]:
    """The plugin dir must be imported before composing, so that its components can be selected."""
    for override in overrides:
        key, sep, value = override.lstrip("+~").partition("=")
        if sep and key == "common.user_dir" and value not in ("", "null"):
            return value.strip("'\"")
    return None


def compose_config(overrides: Sequence[str] = (), config_dir: Optional[str] = None,
                   config_name: str = CONFIG_NAME) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException

    import_components(user_dir_from_overrides(overrides))
    hydra_init()
    config_dir = os.path.abspath(os.path.expanduser(config_dir or bundled_config_dir()))
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            cfg = compose(config_name=config_name, overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from e
    return finalize_config(cfg)


def finalize_config(cfg: DictConfig) -> DictConfig:
    """Fill component nodes from their dataclasses, check required values, and resolve.

    A component may arrive as a bare name (`optimizer: adam` in a user's YAML) or as a dict with
    `_name` but no schema; both are merged onto the registered dataclass so that they are typed and
    validated like `optimizer=adam` on the command line.
    """
    try:
        for group in COMPONENT_GROUPS:
            node = cfg.get(group)
            name = cfg_name(node)
            if node is None or name is None:
                continue
            if OmegaConf.get_type(node) is dict or isinstance(node, str):
                registry = COMPONENT_REGISTRIES[group]
                registry.get(name)  # unknown name -> RegistryError listing the choices
                typed = component_node(group, name)
                if not isinstance(node, str):
                    typed = OmegaConf.merge(typed, node)
                with open_dict(cfg):
                    cfg[group] = typed
        for group in REQUIRED_COMPONENTS:
            if cfg_name(cfg.get(group)) is None:
                choices = COMPONENT_REGISTRIES[group].choices()
                example = _example_choice(group, choices)
                raise ConfigError(f"no {group} selected: add `{group}={example}` "
                                  f"(available: {', '.join(choices)})")
        missing = sorted(_missing_keys(cfg))
        if missing:
            key = missing[0]
            raise ConfigError(f"{key} is required but not set: add `{key}=...` to the command line "
                              f"(or `--{key.split('.')[-1].replace('_', '-')}` with fairseq-train)"
                              + (f"; also missing: {', '.join(missing[1:])}" if len(missing) > 1 else ""))
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(str(e).strip().splitlines()[0]) from e
    return cfg


def _example_choice(group: str, choices: List[str]) -> str:
    if group == "model":
        from fairseq_lite.registry import ARCH_REGISTRY

        archs = sorted(ARCH_REGISTRY)
        return f"transformer_lm/{archs[0]}" if archs else (choices[0] if choices else "NAME")
    return choices[0] if choices else "NAME"


def _missing_keys(cfg: DictConfig, prefix: str = "") -> List[str]:
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


def closest_key(cfg: DictConfig, dotted: str) -> str:
    """`did you mean` text for a key the config does not have (used by error messages)."""
    all_keys = []

    def walk(node, prefix):
        for k in node.keys():
            child = node._get_node(k)
            all_keys.append(f"{prefix}{k}")
            if isinstance(child, DictConfig) and not child._is_none() and not child._is_interpolation():
                walk(child, f"{prefix}{k}.")

    walk(cfg, "")
    return did_you_mean(dotted, all_keys)


def to_plain_dict(cfg: DictConfig) -> dict:
    """The resolved config as plain containers (what checkpoints store)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)



def config_from_dict(plain: dict) -> DictConfig:
    """Rebuild a typed config from the plain dict a checkpoint stores.

    Fields added since the checkpoint was written get their defaults; fields that no longer exist
    are dropped with a warning instead of failing the load.
    """
    import logging

    from fairseq_lite.dataclass.configs import FairseqConfig, SETTINGS_GROUPS

    log = logging.getLogger(__name__)
    import_components((plain.get("common") or {}).get("user_dir"))
    cfg = OmegaConf.structured(FairseqConfig)
    for group, values in plain.items():
        if values is None or group == "_name":
            continue
        if group in SETTINGS_GROUPS:
            target = cfg[group]
        elif group in COMPONENT_GROUPS:
            name = cfg_name(values)
            if name is None:
                continue
            try:
                target = component_node(group, name)
            except ConfigError as e:
                raise ConfigError(f"the checkpoint's {group} '{name}' is not available: {e}") from e
            with open_dict(cfg):
                cfg[group] = target
            target = cfg[group]
        else:
            log.warning(f"ignoring unknown config group '{group}' stored in the checkpoint")
            continue
        for key, value in values.items():
            if key == "_name":
                continue
            if key not in target.keys():  # `in` alone is False for a field whose value is still ???
                log.warning(f"ignoring {group}.{key}={value!r} stored in the checkpoint: no longer a config field")
                continue
            try:
                target[key] = value
            except OmegaConfBaseException as e:
                raise ConfigError(f"checkpoint config {group}.{key}={value!r} is invalid: "
                                  f"{str(e).splitlines()[0]}") from e
    return cfg
