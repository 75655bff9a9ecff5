"""One generic registry: name -> (class, config dataclass), for every kind of component.

`register_task`, `register_model`, ... are all made from `Registry.register`. The top-level config
is assembled *from* these registries (fairseq_lite/dataclass/configs.py), never the other way round.
"""

import argparse
import copy
import dataclasses
import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.dataclass.legacy import dataclass_from_add_args, extend_dataclass, has_add_args, legacy_namespace
from fairseq_lite.errors import ConfigError, RegistryError, key
from fairseq_lite.targets import RESERVED_KEYS, TARGET_KEY, accepts, check_target, is_target, locate_target

# Kinds whose components may be written in fairseq's older add_args style (dataclass/legacy.py).
LEGACY_KINDS = ("task", "model", "criterion", "optimizer", "lr_scheduler")


@dataclass
class Entry:
    name: str
    cls: Any
    dataclass: type[FairseqDataclass] | None
    legacy: bool = False  # registered without a dataclass: its config made from add_args, built with `args`


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass
class TargetBuilder:
    """How a kind of component is built from a `_target_` node (targets.py): `build(cfg, *args, **kwargs)`
    takes what the registry's build got; the checks before a run know what it will pass."""

    build: Callable[..., Any]
    positional: int = 0  # positional arguments the target is called with (an optimizer: the parameters)
    task: bool = False  # whether it passes task= to a target that takes it


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # config group name: "task", "model", "optimizer", ...
        self.entries: dict[str, Entry] = {}
        self.target_builder: TargetBuilder | None = None

    def register_target_builder(self, builder: TargetBuilder) -> None:
        self.target_builder = builder

    def register(self, name: str, dataclass: type[FairseqDataclass] | None = None) -> Callable:
        def decorator(cls):
            existing = self.entries.get(name)
            if existing is not None:
                # Re-importing the same module (e.g. a --user-dir plugin loaded twice) is harmless.
                if getattr(existing.cls, "__qualname__", None) == getattr(cls, "__qualname__", None) and getattr(
                    existing.cls, "__module__", None
                ) == getattr(cls, "__module__", None):
                    self.entries[name] = self._entry(name, cls, dataclass)
                    _record_dataclass(cls, dataclass)
                    return cls
                raise RegistryError(
                    f"cannot register duplicate {self.kind} '{name}' "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__} has it)"
                )
            if dataclass is not None and not issubclass(dataclass, FairseqDataclass):
                raise RegistryError(
                    f"{self.kind} '{name}': dataclass {dataclass.__name__} must extend FairseqDataclass"
                )
            self.entries[name] = self._entry(name, cls, dataclass)
            cls.__registered_name__ = name  # lets an instance say what it is called
            _record_dataclass(cls, dataclass)
            return cls

        return decorator

    def _entry(self, name: str, cls: Any, dataclass: type[FairseqDataclass] | None) -> Entry:
        if dataclass is None and self.kind in LEGACY_KINDS and has_add_args(cls):
            # fairseq's older style: flags from add_args(parser), the component built with `args`.
            return Entry(name, cls, dataclass_from_add_args(cls, suppress_unset=self.kind == "model"), legacy=True)
        return Entry(name, cls, dataclass)

    def choices(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    # fairseq's registries are dicts of name -> class (TASK_REGISTRY["translation"]): read as one.
    def __getitem__(self, name: str) -> Any:
        return self.get(name).cls

    def __iter__(self):
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def keys(self) -> list[str]:
        return self.choices()

    def items(self) -> list[tuple[str, Any]]:
        return [(name, self.entries[name].cls) for name in self.choices()]

    def values(self) -> list[Any]:
        return [self.entries[name].cls for name in self.choices()]

    def get(self, name: str) -> Entry:
        if name not in self.entries:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.choices())}; "
                f"choose from: {', '.join(self.choices())}"
            )
        return self.entries[name]

    def build(self, cfg: Any, *args, **kwargs):
        """Instantiate the component named by `cfg._name` with `cfg` and any extra arguments, or the one a
        `_target_` node describes."""
        if is_target(cfg):
            registered = self.registered_config(cfg)
            if registered is not None:
                return self.build(registered, *args, **kwargs)
            return self.require_target_builder().build(cfg, *args, **kwargs)
        name = cfg_name(cfg)
        if name is None:
            raise RegistryError(
                f"no {self.kind} selected; set one, e.g. `{self.kind}={self.choices()[0]}`"
                if self.entries
                else f"no {self.kind} selected"
            )
        entry = self.get(name)
        if entry.legacy:
            cfg = self.legacy_args(cfg)
        builder = getattr(entry.cls, f"build_{self.kind}", None)
        if builder is not None:
            return builder(cfg, *args, **kwargs)
        return entry.cls(cfg, *args, **kwargs)

    def legacy_args(self, cfg: Any) -> argparse.Namespace:
        """fairseq's flat `args` for a legacy component configured by `cfg` (a node of the run's config:
        every group's values are in it; a detached node gives its own only)."""
        root = cfg._get_root() if isinstance(cfg, DictConfig) else cfg
        if root is cfg:
            root = {self.kind: cfg}
        by_group = {}
        for kind, registry in COMPONENT_REGISTRIES.items():
            node = root.get(kind) if hasattr(root, "get") else None
            name = cfg_name(node) if node is not None else None
            if name is not None and name in registry:
                by_group[kind] = registry.get(name).dataclass
        return legacy_namespace(root, self.kind, by_group)

    # --- `_target_` components -----------------------------------------------------------------------
    def require_target_builder(self) -> TargetBuilder:
        if self.target_builder is None:
            supported = [r.kind for r in COMPONENT_REGISTRIES.values() if r.target_builder is not None]
            raise ConfigError(
                f"{key(self.kind + '.' + TARGET_KEY)}: a {self.kind} cannot be a _target_ node (that works for "
                f"{', '.join(supported)}); name a registered {self.kind} with {self.kind}=NAME"
            )
        return self.target_builder

    def registered_config(self, cfg: Any) -> DictConfig | None:
        """A `_target_` naming one of this registry's classes, as the typed config of its registered name
        (so `_target_: fairseq_lite.criterions.cross_entropy.CrossEntropyCriterion` is `cross_entropy`)."""
        target = locate_target(cfg[TARGET_KEY], self.kind)
        name = next((e.name for e in self.entries.values() if e.cls is target), None)
        if name is None:
            return None
        values = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else dict(cfg)
        unsupported = [k for k in values if k in RESERVED_KEYS and k != TARGET_KEY]
        if unsupported:
            raise ConfigError(
                f"{key(self.kind + '.' + unsupported[0])}: {cfg[TARGET_KEY]} is the registered {self.kind} "
                f"'{name}', built from its config; drop {unsupported[0]}"
            )
        values = {k: v for k, v in values.items() if k != TARGET_KEY}
        root = cfg._get_root() if isinstance(cfg, DictConfig) and cfg._get_root() is not cfg else None
        return resolved_component_node(self.kind, name, values, self.kind, root)

    def check_target(self, cfg: Any) -> None:
        """Before a run: the target imports and takes the arguments it will be given."""
        registered = self.registered_config(cfg)
        if registered is not None:
            check = getattr(self.get(cfg_name(registered)).cls, "check_config", None)
            if check is not None:
                check(registered)
            return
        builder = self.require_target_builder()
        target = locate_target(cfg[TARGET_KEY], self.kind)
        passed = ["task"] if builder.task and accepts(target, "task") else []
        check_target(cfg, self.kind, passed=passed, positional=builder.positional)


def _record_dataclass(cls: Any, dataclass: type[FairseqDataclass] | None) -> None:
    """fairseq's `cls.__dataclass`: the base classes' `add_args` gives its flags, so a subclass registered
    without a dataclass keeps its parent's options."""
    if dataclass is not None:
        setattr(cls, "__dataclass", dataclass)


def resolved_component_node(
    kind: str, name: str, values: Mapping[str, Any], where: str, root: DictConfig | None
) -> DictConfig:
    """The typed config of component `name` with `values` set (each must be a field), its interpolations
    (e.g. ${optimization.lr}) resolved in a copy of the run's config `root`; `where` names it in errors."""
    node = component_node(kind, name)
    entry = COMPONENT_REGISTRIES[kind].get(name)
    fields = {f.name for f in dataclasses.fields(entry.dataclass)} if entry.dataclass is not None else None
    for field, value in values.items():
        if field == "_name":
            continue
        if fields is not None and field not in fields:
            raise ConfigError(
                f"{key(f'{where}.{field}')}: {kind} '{name}' has no such setting{did_you_mean(field, sorted(fields))}"
            )
        with open_dict(node):
            node[field] = value
    scratch = copy.deepcopy(root) if root is not None else OmegaConf.create({})
    with open_dict(scratch):
        scratch["_component"] = node
    try:
        OmegaConf.resolve(scratch["_component"])
    except Exception as e:
        raise ConfigError(f"{key(where)}: {str(e).splitlines()[0]}") from None
    return scratch["_component"]


def component_node(kind: str, name: str) -> DictConfig:
    """The typed config node of component `name` of `kind` (its dataclass's defaults, `_name` set);
    an empty node with just `_name` for a component registered without a dataclass."""
    entry = COMPONENT_REGISTRIES[kind].get(name)
    if entry.dataclass is None:
        return OmegaConf.create({"_name": name})
    node = OmegaConf.structured(entry.dataclass)
    node._name = name
    return node


def cfg_name(cfg: Any) -> str | None:
    if cfg is None:
        return None
    if isinstance(cfg, str):
        return cfg
    try:
        return cfg["_name"]
    except (KeyError, TypeError):
        return getattr(cfg, "_name", None)


# The registries of every component kind. Modules under tasks/, models/, ... fill them on import.
TASK_REGISTRY = Registry("task")
MODEL_REGISTRY = Registry("model")
CRITERION_REGISTRY = Registry("criterion")
OPTIMIZER_REGISTRY = Registry("optimizer")
LR_SCHEDULER_REGISTRY = Registry("lr_scheduler")
BPE_REGISTRY = Registry("bpe")
TOKENIZER_REGISTRY = Registry("tokenizer")
SCORING_REGISTRY = Registry("scoring")

COMPONENT_REGISTRIES: dict[str, Registry] = {
    r.kind: r
    for r in (
        TASK_REGISTRY,
        MODEL_REGISTRY,
        CRITERION_REGISTRY,
        OPTIMIZER_REGISTRY,
        LR_SCHEDULER_REGISTRY,
        BPE_REGISTRY,
        TOKENIZER_REGISTRY,
        SCORING_REGISTRY,
    )
}

register_task = TASK_REGISTRY.register
register_model = MODEL_REGISTRY.register
register_criterion = CRITERION_REGISTRY.register
register_optimizer = OPTIMIZER_REGISTRY.register
register_lr_scheduler = LR_SCHEDULER_REGISTRY.register
register_bpe = BPE_REGISTRY.register
register_tokenizer = TOKENIZER_REGISTRY.register
register_scorer = SCORING_REGISTRY.register


class ArchitectureArgs(dict):
    """What an architecture function is given: the values set so far, read and set as attributes, as on
    fairseq's argparse Namespace (`args.x = getattr(args, "x", 512)`), or as a dict. A value not set is
    missing, so getattr's default applies."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


# Named architectures: arch name -> (model name, function filling that architecture's defaults).
# The function gets the values the user set and fills in those it leaves unset, exactly like fairseq's
# `@register_model_architecture` functions (`args.x = getattr(args, "x", default)`).
@dataclass
class Architecture:
    name: str
    model: str
    fill_defaults: Callable[[Any], None]

    def values(self, user_values: dict[str, Any] | None = None) -> dict[str, Any]:
        values = ArchitectureArgs(user_values or {})
        self.fill_defaults(values)
        return dict(values)


ARCH_REGISTRY: dict[str, Architecture] = {}


def register_model_architecture(model_name: str, arch_name: str) -> Callable:
    def decorator(fn):
        existing = ARCH_REGISTRY.get(arch_name)
        if existing is not None and (existing.fill_defaults.__module__, existing.fill_defaults.__qualname__) != (
            fn.__module__,
            fn.__qualname__,
        ):
            raise RegistryError(f"cannot register duplicate architecture '{arch_name}'")
        ARCH_REGISTRY[arch_name] = Architecture(arch_name, model_name, fn)
        _extend_legacy_model_config(model_name, fn)
        return fn

    return decorator


def _extend_legacy_model_config(model_name: str, fn: Callable[[Any], None]) -> None:
    """A legacy model's architecture may set attributes that are no add_args flag (fairseq's Namespace
    takes any): they become fields of its config, found by running the function on nothing set."""
    entry = MODEL_REGISTRY.entries.get(model_name)
    if entry is None or not entry.legacy:
        return
    values = ArchitectureArgs()
    try:
        fn(values)
    except Exception:  # it reads a value only a real run has: what it set until then still counts
        pass
    entry.dataclass = extend_dataclass(entry.dataclass, values)


def get_architecture(arch_name: str) -> Architecture:
    if arch_name not in ARCH_REGISTRY:
        raise RegistryError(
            f"unknown architecture '{arch_name}'{did_you_mean(arch_name, sorted(ARCH_REGISTRY))}; "
            f"choose from: {', '.join(sorted(ARCH_REGISTRY))}"
        )
    return ARCH_REGISTRY[arch_name]
