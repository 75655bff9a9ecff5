"""`--optimizer composite`: a different optimizer, and optionally lr schedule, per group of parameters.

A parameter belongs to the group named by its `param_group` attribute (set by the model, e.g.
`p.param_group = "decoder"`), "default" when it has none; `optimizer.groups` configures every group:

    optimizer:
      _name: composite
      groups:
        default: {lr: [0.001], optimizer: {_name: adam}, lr_scheduler: {_name: inverse_sqrt, warmup_updates: 10}}
        decoder: {lr_float: 0.01, optimizer: {_name: sgd}, lr_scheduler: {_name: fixed}}
    lr_scheduler: pass_through        # each group follows its own schedule

A group's `lr` (default: optimization.lr) or `lr_float` is the lr of its optimizer and schedule.
The state is one torch optimizer state over all the parameters (torch's own checkpoint layout, so
--fp16, amp and FSDP save and resume it like any other); a checkpoint of fairseq's composite (one
state per group name) loads too.
"""

import dataclasses
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from fairseq_lite.dataclass.base import FairseqDataclass, cfg_field
from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq_lite.registry import (
    COMPONENT_REGISTRIES,
    LR_SCHEDULER_REGISTRY,
    OPTIMIZER_REGISTRY,
    cfg_name,
    did_you_mean,
    register_optimizer,
    resolved_component_node,
)

GROUP_KEYS = ("optimizer", "lr_scheduler", "lr", "lr_float")


@dataclass
class CompositeOptimizerConfig(FairseqDataclass):
    groups: dict[str, Any] = cfg_field(
        default_factory=dict,
        help="parameter group name -> {optimizer, lr_scheduler, lr, lr_float}: a different optimizer and "
        "(optionally) lr scheduler for each parameter group",
    )


def _root(cfg: Any) -> DictConfig | None:
    """The whole run config `cfg` sits in (its interpolations, e.g. ${optimization.lr}, resolve there)."""
    if not isinstance(cfg, DictConfig):
        return None
    root = cfg._get_root()
    return root if root is not cfg else None


def _group_component(kind: str, values: Any, lr: list[float], where: str, root: DictConfig | None) -> DictConfig:
    """The typed, resolved config of a group's optimizer or lr scheduler (`where` names it in errors)."""
    name = cfg_name(values)
    if name is None:
        example = "adam" if kind == "optimizer" else "fixed"
        raise ConfigError(f"{key(where)} needs a component name, e.g. {{_name: {example}}}")
    registry = COMPONENT_REGISTRIES[kind]
    if name not in registry:
        raise ConfigError(
            f"{key(where + '._name')}: unknown {kind} '{name}'{did_you_mean(name, registry.choices())}; "
            f"choose from: {', '.join(registry.choices())}"
        )
    if name in ("composite", "pass_through"):
        raise ConfigError(f"{key(where)}: a composite optimizer's group cannot be '{name}'")
    plain = {} if isinstance(values, str) else OmegaConf.to_container(OmegaConf.create(dict(values)), resolve=False)
    if "lr" in {f.name for f in dataclasses.fields(registry.get(name).dataclass)}:
        plain["lr"] = lr
    return resolved_component_node(kind, name, plain, where, root)


def _group_lr(values: Mapping, where: str, root: DictConfig | None) -> list[float]:
    if values.get("lr_float") is not None:
        return [float(values["lr_float"])]
    lr = values.get("lr")
    if lr is None:
        if root is None or OmegaConf.select(root, "optimization.lr") is None:
            raise ConfigError(f"{key(where + '.lr')} is not set (and there is no optimization.lr to default to)")
        lr = OmegaConf.select(root, "optimization.lr")
    lr = OmegaConf.to_container(lr, resolve=True) if OmegaConf.is_config(lr) else lr
    values_ = [lr] if isinstance(lr, (int, float)) else list(lr)
    try:
        return [float(v) for v in values_]
    except (TypeError, ValueError):
        raise ConfigError(f"{key(where + '.lr')} must be a number or a list of numbers, got {lr!r}") from None


def group_configs(cfg: Any) -> dict[str, tuple[DictConfig, DictConfig | None]]:
    """name -> (typed optimizer config, typed lr scheduler config or None), each group's lr filled in."""
    groups = cfg.groups if "groups" in cfg else {}
    if not groups:
        raise ConfigError(
            f"optimizer composite needs {key('optimizer.groups')}: one entry per parameter group, e.g. "
            "{default: {optimizer: {_name: adam}, lr_scheduler: {_name: fixed}}}"
        )
    root = _root(cfg)
    out = {}
    for name, values in groups.items():
        where = f"optimizer.groups.{name}"
        if not isinstance(values, Mapping):
            raise ConfigError(f"{key(where)} must be a group like {{optimizer: {{_name: adam}}, lr: [0.001]}}")
        unknown = [k for k in values if k not in GROUP_KEYS]
        if unknown:
            raise ConfigError(
                f"{key(f'{where}.{unknown[0]}')} is not a setting of a composite group"
                f"{did_you_mean(unknown[0], list(GROUP_KEYS))}; a group has {', '.join(GROUP_KEYS)}"
            )
        if values.get("optimizer") is None:
            raise ConfigError(
                f"{key(where + '.optimizer')} is not set: name the group's optimizer, e.g. {{_name: adam}}"
            )
        lr = _group_lr(values, where, root)
        optimizer = _group_component("optimizer", values["optimizer"], lr, where + ".optimizer", root)
        scheduler = values.get("lr_scheduler")
        if scheduler is not None:
            scheduler = _group_component("lr_scheduler", scheduler, lr, where + ".lr_scheduler", root)
        out[str(name)] = (optimizer, scheduler)
    return out


class CompositeTorchOptimizer(torch.optim.Optimizer):
    """One torch optimizer over the groups of several: its param_groups are theirs (the same dicts) and they
    share its state, so torch's state_dict/load_state_dict, GradScaler and DCP work on it unchanged."""

    def __init__(self, optimizers: dict[str, FairseqOptimizer]):
        self.optimizers = optimizers
        groups = [g for opt in optimizers.values() for g in opt.param_groups]
        super().__init__([{"params": g["params"]} for g in groups], {})
        self.param_groups = groups
        self._share()

    def _share(self, from_wrapped: bool = False) -> None:
        """Point the wrapped optimizers at our param_groups and state (after building, or after torch's
        loader replaced ours); from_wrapped: first take theirs (each just loaded a state of its own)."""
        if from_wrapped:
            self.param_groups = [g for opt in self.optimizers.values() for g in opt.optimizer.param_groups]
            state: defaultdict = defaultdict(dict)
            for opt in self.optimizers.values():
                state.update(opt.optimizer.state)
            self.state = state
        start = 0
        for opt in self.optimizers.values():
            inner = opt.optimizer
            count = len(inner.param_groups)
            inner.param_groups = self.param_groups[start : start + count]
            start += count
            inner.state = self.state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "optimizers" in self.__dict__:
            self._share()

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers.values():
            opt.optimizer.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch's loader rebuilds param_groups and state: put the wrapped optimizers back on them.
        if not {"state", "param_groups"} <= set(state_dict) and set(state_dict) & set(self.optimizers):
            raise ValueError("a per-group state goes through FairseqCompositeOptimizer.load_state_dict")
        # A group setting the checkpoint lacks (an older save) keeps its current value.
        groups = [{**current, **saved} for saved, current in zip(state_dict["param_groups"], self.param_groups)]
        super().load_state_dict({**state_dict, "param_groups": groups + state_dict["param_groups"][len(groups) :]})
        self._share()


@register_optimizer("composite", dataclass=CompositeOptimizerConfig)
class FairseqCompositeOptimizer(FairseqOptimizer):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        for optimizer, scheduler in group_configs(cfg).values():
            check = getattr(OPTIMIZER_REGISTRY.get(cfg_name(optimizer)).cls, "check_config", None)
            if check is not None:
                check(optimizer)
            if scheduler is not None:
                check = getattr(LR_SCHEDULER_REGISTRY.get(cfg_name(scheduler)).cls, "check_config", None)
                if check is not None:
                    check(scheduler)

    @classmethod
    def supports_flat_params(cls, cfg: Any) -> bool:
        return all(
            OPTIMIZER_REGISTRY.get(cfg_name(optimizer)).cls.supports_flat_params(optimizer)
            for optimizer, _ in group_configs(cfg).values()
        )

    @classmethod
    def has_own_lr_scheduler(cls, cfg: Any) -> bool:
        """Whether every group has a schedule (what lr_scheduler=pass_through hands the schedule to)."""
        return all(scheduler is not None for _, scheduler in group_configs(cfg).values())

    def __init__(self, cfg: Any, params: Iterable[Any]):
        super().__init__(cfg)
        configs = group_configs(cfg)
        by_group: dict[str, list[torch.Tensor]] = {}
        for p in params:
            if isinstance(p, dict):
                raise ConfigError("optimizer composite takes parameters, not parameter groups")
            by_group.setdefault(getattr(p, "param_group", "default"), []).append(p)
        if set(by_group) != set(configs):
            missing, extra = sorted(set(by_group) - set(configs)), sorted(set(configs) - set(by_group))
            raise ConfigError(
                f"{key('optimizer.groups')} names {sorted(configs)} but the model's parameters are in groups "
                f"{sorted(by_group)}"
                + (f"; add {missing}" if missing else "")
                + (
                    f"; no parameter is in {extra} (a parameter's group is its `param_group` attribute)"
                    if extra
                    else ""
                )
            )
        self.optimizers: dict[str, FairseqOptimizer] = {}
        self.lr_schedulers: dict[str, FairseqLRScheduler] = {}
        for name, (optimizer_cfg, scheduler_cfg) in configs.items():
            self.optimizers[name] = OPTIMIZER_REGISTRY.build(optimizer_cfg, by_group[name])
            if scheduler_cfg is not None:
                self.lr_schedulers[name] = LR_SCHEDULER_REGISTRY.build(scheduler_cfg, self.optimizers[name])
        if self.lr_schedulers and len(self.lr_schedulers) != len(self.optimizers):
            without = sorted(set(self.optimizers) - set(self.lr_schedulers))
            raise ConfigError(
                f"optimizer composite: groups {without} have no lr_scheduler; give every group one "
                f"(as {key('optimizer.groups')}.NAME.lr_scheduler) or none"
            )
        self.lr_scheduler = CompositeLRScheduler(self.lr_schedulers) if self.lr_schedulers else None
        self._optimizer = CompositeTorchOptimizer(self.optimizers)

    def primary_group(self) -> str:
        return "default" if "default" in self.optimizers else next(iter(self.optimizers))

    def get_lr(self) -> float:
        return self.optimizers[self.primary_group()].get_lr()

    def group_lrs(self) -> dict[str, float]:
        return {name: opt.get_lr() for name, opt in self.optimizers.items()}

    @property
    def optimizer_config(self) -> dict[str, Any]:
        # Per group, applied by load_state_dict below: a resumed run takes today's lr and settings.
        return {name: opt.optimizer_config for name, opt in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict[str, Any], optimizer_overrides: dict[str, Any] | None = None) -> None:
        if set(state_dict) & set(self.optimizers) and "param_groups" not in state_dict:
            # fairseq's composite: one state per group name, loaded by each group's optimizer on its own.
            for name, state in state_dict.items():
                if name in self.optimizers:
                    inner = self.optimizers[name].optimizer
                    own = {p for g in inner.param_groups for p in g["params"]}
                    inner.state = defaultdict(dict, {p: v for p, v in self.optimizer.state.items() if p in own})
                    self.optimizers[name].load_state_dict(state)
            self._optimizer._share(from_wrapped=True)
        else:
            self.optimizer.load_state_dict(state_dict)
        for name, overrides in (optimizer_overrides or {}).items():
            if name in self.optimizers and isinstance(overrides, Mapping):
                for group in self.optimizers[name].param_groups:
                    group.update(overrides)


class CompositeLRScheduler(FairseqLRScheduler):
    """The groups' schedules, stepped together; `step_update` returns each group's lr."""

    def __init__(self, lr_schedulers: dict[str, FairseqLRScheduler]):
        self.cfg = None
        self.optimizer = None
        self.best = None
        self.lr_schedulers = lr_schedulers

    def state_dict(self) -> dict[str, Any]:
        return {name: s.state_dict() for name, s in self.lr_schedulers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, state in state_dict.items():
            if name in self.lr_schedulers:
                self.lr_schedulers[name].load_state_dict(state)

    def step_begin_epoch(self, epoch: int) -> dict[str, float]:
        return {name: s.step_begin_epoch(epoch) for name, s in self.lr_schedulers.items()}

    def step(self, epoch: int, val_loss: float | None = None) -> dict[str, float]:
        return {name: s.step(epoch, val_loss) for name, s in self.lr_schedulers.items()}

    def step_update(self, num_updates: int) -> dict[str, float]:
        return {name: s.step_update(num_updates) for name, s in self.lr_schedulers.items()}
