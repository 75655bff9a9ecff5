"""A model to run, rebuilt from a checkpoint: what fairseq-eval-lm, -generate and -interactive load.

The config stored in the checkpoint rebuilds the task and model through the registries (a fairseq
0.12.2 checkpoint's config is converted first), then the weights are loaded into it.
"""

import ast
import os
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.checkpoint.io import load_checkpoint_to_cpu, load_model_weights
from fairseq_lite.dataclass.configs import SETTINGS_GROUPS
from fairseq_lite.errors import CheckpointError, ConfigError
from fairseq_lite.options.compose import config_from_dict
from fairseq_lite.registry import TASK_REGISTRY


def load_model_for_inference(
    path: str,
    task_overrides: dict[str, Any] | None = None,
    user_dir: str | None = None,
    model_overrides: dict[str, Any] | None = None,
):
    """Rebuild (cfg, task, model) from a checkpoint, for eval-lm and generation. The plugin the run was
    trained with (its common.user_dir) is imported from where it was, or from `user_dir` when given.
    `model_overrides` (--model-overrides) sets, by field name, the model's (and any group's) stored
    values before the model is built, as fairseq's arg_overrides do."""
    state = load_checkpoint_to_cpu(path)
    stored = {k: dict(v) if isinstance(v, dict) else v for k, v in state["cfg"].items()}
    for name, value in (model_overrides or {}).items():
        groups = [g for g in stored.values() if isinstance(g, dict) and name in g]
        if not groups:
            raise CheckpointError(
                f"--model-overrides: '{name}' is not a setting of the checkpoint's model or task ({path})"
            )
        for group in groups:
            group[name] = value
    common = dict(stored.get("common") or {})
    common["user_dir"] = plugin_dir(path, common, user_dir)
    stored["common"] = common
    cfg = config_from_dict(stored)
    for key, value in (task_overrides or {}).items():
        cfg.task[key] = value
    task = TASK_REGISTRY.build(cfg.task)
    model = task.build_model(cfg.model)
    load_model_weights(model, state, path, strict=True)
    return cfg, task, model


def plugin_dir(path: str, stored_common: Any, user_dir: str | None = None) -> str | None:
    """The plugin (--user-dir) to import for the checkpoint at `path`: `user_dir` when given, else the one
    it was trained with (its common.user_dir); one that is not there any more is a one-line error."""
    if user_dir:
        return user_dir
    stored = (stored_common or {}).get("user_dir")
    if stored and not os.path.exists(os.path.expanduser(stored)):
        raise CheckpointError(
            f"{path} was trained with the plugin {stored} (--user-dir), which is not there any more: "
            f"give the plugin's path with --user-dir"
        )
    return stored or None


def parse_model_overrides(text: Any) -> dict[str, Any]:
    """--model-overrides: a Python dict literal, as fairseq reads it ('{"mem_len": 640, "same_length": True}')."""
    if isinstance(text, dict):
        return text
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, dict):
        raise ConfigError(f"--model-overrides {text!r} is invalid: it must be a dict like '{{\"mem_len\": 640}}'")
    return value


def load_for_command(path: str, values: dict[str, Any], groups) -> tuple[DictConfig, Any, Any]:
    """(cfg, task, model) for an inference command (eval-lm, generate, interactive).

    Task and model come from the checkpoint, with the command line's `task.*` values on top (a new
    data path, --tokens-per-sample, ...); the settings `groups` (dataset, generation, ...) come from the
    command line alone, not from the training run. `values` maps "group.field" to what was given.
    """
    task_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("task.")}
    cfg, task, model = load_model_for_inference(
        path,
        task_overrides=task_values,
        user_dir=values.get("common.user_dir"),
        model_overrides=parse_model_overrides(values.get("common_eval.model_overrides", "{}")),
    )
    for group in groups:
        cfg[group] = OmegaConf.structured(SETTINGS_GROUPS[group])
    for key, value in values.items():
        group, field = key.split(".", 1)
        if group in groups:
            cfg[group][field] = value
    return cfg, task, model
