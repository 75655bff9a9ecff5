"""One generic registry: name -> (class, config dataclass), for every kind of component.

`register_task`, `register_model`, ... are all made from `Registry.register`. The top-level config
is assembled *from* these registries (fairseq_lite/dataclass/configs.py), never the other way round.
"""

import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.errors import RegistryError


@dataclass
class Entry:
    name: str
    cls: Any
    dataclass: type[FairseqDataclass] | None


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(str(name), choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class Registry:
    def __init__(self, kind: str):
        self.kind = kind  # config group name: "task", "model", "optimizer", ...
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, dataclass: type[FairseqDataclass] | None = None) -> Callable:
        def decorator(cls):
            existing = self.entries.get(name)
            if existing is not None:
                # Re-importing the same module (e.g. a --user-dir plugin loaded twice) is harmless.
                if getattr(existing.cls, "__qualname__", None) == getattr(cls, "__qualname__", None) and getattr(
                    existing.cls, "__module__", None
                ) == getattr(cls, "__module__", None):
                    self.entries[name] = Entry(name, cls, dataclass)
                    return cls
                raise RegistryError(
                    f"cannot register duplicate {self.kind} '{name}' "
                    f"({existing.cls.__module__}.{existing.cls.__qualname__} has it)"
                )
            if dataclass is not None and not issubclass(dataclass, FairseqDataclass):
                raise RegistryError(
                    f"{self.kind} '{name}': dataclass {dataclass.__name__} must extend FairseqDataclass"
                )
            self.entries[name] = Entry(name, cls, dataclass)
            cls.__registered_name__ = name  # lets an instance say what it is called
            return cls

        return decorator

    def choices(self) -> list[str]:
        return sorted(self.entries)

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def get(self, name: str) -> Entry:
        if name not in self.entries:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.choices())}; "
                f"choose from: {', '.join(self.choices())}"
            )
        return self.entries[name]

    def build(self, cfg: Any, *args, **kwargs):
        """Instantiate the component named by `cfg._name` with `cfg` and any extra arguments."""
        name = cfg_name(cfg)
        if name is None:
            raise RegistryError(
                f"no {self.kind} selected; set one, e.g. `{self.kind}={self.choices()[0]}`"
                if self.entries
                else f"no {self.kind} selected"
            )
        entry = self.get(name)
        builder = getattr(entry.cls, f"build_{self.kind}", None)
        if builder is not None:
            return builder(cfg, *args, **kwargs)
        return entry.cls(cfg, *args, **kwargs)


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


# Named architectures: arch name -> (model name, function filling that architecture's defaults).
# The function takes a dict of values the user set and fills in those it leaves unset
# (`args.setdefault(...)`), exactly like fairseq's `@register_model_architecture` functions.
@dataclass
class Architecture:
    name: str
    model: str
    fill_defaults: Callable[[dict[str, Any]], None]

    def values(self, user_values: dict[str, Any] | None = None) -> dict[str, Any]:
        values = dict(user_values or {})
        self.fill_defaults(values)
        return values


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
        return fn

    return decorator


def get_architecture(arch_name: str) -> Architecture:
    if arch_name not in ARCH_REGISTRY:
        raise RegistryError(
            f"unknown architecture '{arch_name}'{did_you_mean(arch_name, sorted(ARCH_REGISTRY))}; "
            f"choose from: {', '.join(sorted(ARCH_REGISTRY))}"
        )
    return ARCH_REGISTRY[arch_name]
