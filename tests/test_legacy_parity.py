"""Every option of every registered training component is reachable as `--foo-bar` (fairseq-train) and
as `group.foo_bar=` (fairseq-hydra-train), and both spellings resolve to the same config."""

import dataclasses
import types
import typing
from enum import Enum

import pytest

from fairseq_cli.train import TRAIN_GROUPS, legacy_overrides
from fairseq_lite.dataclass.configs import SETTINGS_GROUPS
from fairseq_lite.dataclass.legacy import NO_FLAG
from fairseq_lite.options.compose import compose_config, to_plain_dict
from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY, COMPONENT_REGISTRIES

import_components()

SKIP = {"common.user_dir"}  # imports a plugin: covered by tests/test_hydra_cli.py


def _unwrap(tp):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1 else tp


def _default(field):
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def changed_value(name: str, field):
    """A value of the field's type that differs from its default."""
    tp, default = _unwrap(field.type), _default(field)
    if default == "???" or (isinstance(default, str) and default.startswith("${")):  # required, or follows another
        default = None
    if tp is bool or isinstance(default, bool):  # (a flag typed Any that also takes 0/1, as lightconv's --encoder-glu)
        return not default
    if isinstance(tp, type) and issubclass(tp, Enum):
        return next(m.value for m in tp if m.value != getattr(default, "value", default))
    if tp is int:
        return (default or 0) + 3
    if tp is float:
        return (default or 0.0) + 0.5
    if typing.get_origin(tp) is list:
        (inner,) = typing.get_args(tp)
        return [inner((default or [0])[0]) + inner(3)]
    if "betas" in name:
        return "(0.8, 0.9)"
    return f"x{default or ''}"


def settable_fields(schema):
    for f in dataclasses.fields(schema):
        default = _default(f)
        if (
            f.name.startswith("_")
            or default is dataclasses.MISSING
            # a field following the same name in another group (model.sentence_avg) has no flag of its own;
            # one following another name (model.max_target_positions: ${task.tokens_per_sample}) has
            or (isinstance(default, str) and default.startswith("${") and default[2:-1].rsplit(".", 1)[-1] == f.name)
            or typing.get_origin(_unwrap(f.type)) is dict  # a mapping (composite's groups): no flag in fairseq either
            or f.metadata.get(NO_FLAG)  # set by an architecture only, as in fairseq (lightconv's decoder_output_dim)
        ):
            continue
        yield f


def as_flag(name, value, field=None):
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool) and field is not None and _unwrap(field.type) is not bool:
        return [flag, str(value)]  # a flag that takes its value (fairseq's --left-pad-source False, --encoder-glu 0)
    if isinstance(value, bool):
        return [flag]  # store_true / store_false: the flag alone flips the default
    if isinstance(value, list):
        return [flag, ",".join(str(v) for v in value) + ("," if len(value) == 1 else "")]
    return [flag, str(value)]


def as_override(key, value):
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, list):
        return f"{key}=[{','.join(repr(v) for v in value)}]"
    if isinstance(value, str):
        return f"{key}='{value}'"
    return f"{key}={value!r}"


def selections():
    """One case per registered training component (each with all its options changed), plus the
    settings groups."""
    cases = [("settings", None)]
    for kind in ("task", "model", "criterion", "optimizer", "lr_scheduler"):
        for name in COMPONENT_REGISTRIES[kind].choices():
            cases.append((kind, name))
    return cases


def base_selection(kind, name):
    chosen = {
        "task": "language_modeling",
        "model": "transformer_lm",
        "criterion": "cross_entropy",
        "optimizer": "adam",
        "lr_scheduler": "fixed",
    }
    if kind not in (None, "settings"):
        chosen[kind] = name
    # a translation task with an encoder-decoder model, and a multilingual model with its own task
    model_of_task = {"translation": "transformer", "translation_multi_simple_epoch": "transformer"}
    model_of_task["multilingual_translation"] = "multilingual_transformer"
    task_of_model = {"transformer": "translation", "transformer_align": "translation", "lightconv": "translation"}
    task_of_model["multilingual_transformer"] = "multilingual_translation"
    if kind == "task" and name in model_of_task:
        chosen["model"] = model_of_task[name]
    elif chosen["model"] in task_of_model:
        chosen["task"] = task_of_model[chosen["model"]]
    return chosen


@pytest.mark.parametrize("kind, name", selections(), ids=lambda x: str(x))
def test_legacy_and_hydra_spellings_agree(kind, name):
    chosen = base_selection(kind, name)
    arch = sorted(a for a, e in ARCH_REGISTRY.items() if e.model == chosen["model"])[0]
    legacy = ["DATA", "--arch", arch] + [
        a for k in ("task", "criterion", "optimizer", "lr_scheduler") for a in ("--" + k.replace("_", "-"), chosen[k])
    ]
    hydra = ["task.data=DATA", f"task={chosen['task']}", f"model={chosen['model']}/{arch}"] + [
        f"{k}={chosen[k]}" for k in ("criterion", "optimizer", "lr_scheduler")
    ]

    if kind == "settings":
        groups = {g: SETTINGS_GROUPS[g] for g in TRAIN_GROUPS}
    else:
        groups = {kind: COMPONENT_REGISTRIES[kind].get(name).dataclass}
    # fairseq's flags are one flat namespace: a field name shared by two selected groups is set in both.
    owners = {}
    for group in ["task", "model", "criterion", "optimizer", "lr_scheduler"]:
        for f in settable_fields(COMPONENT_REGISTRIES[group].get(chosen[group]).dataclass):
            owners.setdefault(f.name, []).append(group)
    for g in TRAIN_GROUPS:
        for f in settable_fields(SETTINGS_GROUPS[g]):
            owners.setdefault(f.name, []).append(g)

    n = 0
    for group, schema in groups.items():
        for f in settable_fields(schema):
            if f"{group}.{f.name}" in SKIP or (group == "task" and f.name == "data"):
                continue
            value = changed_value(f.name, f)
            legacy += as_flag(f.name, value, f)
            hydra += [as_override(f"{owner}.{f.name}", value) for owner in owners[f.name]]
            n += 1
    if kind == "settings":
        assert n > 50, n
    assert to_plain_dict(compose_config(legacy_overrides(legacy))) == to_plain_dict(compose_config(hydra))
