"""A model to run, rebuilt from a checkpoint: what fairseq-eval-lm, -generate and -interactive load.

The config stored in the checkpoint rebuilds the task and model through the registries (a fairseq
0.12.2 checkpoint's config is converted first), then the weights are loaded into it.
"""

from typing import Any

from omegaconf import DictConfig, OmegaConf

from fairseq_lite.checkpoint.io import load_checkpoint_to_cpu, model_weights
from fairseq_lite.dataclass.configs import SETTINGS_GROUPS
from fairseq_lite.errors import CheckpointError
from fairseq_lite.options.compose import config_from_dict
from fairseq_lite.registry import TASK_REGISTRY


def load_model_for_inference(path: str, task_overrides: dict[str, Any] | None = None):
    """Rebuild (cfg, task, model) from a checkpoint, for eval-lm and generation."""
    state = load_checkpoint_to_cpu(path)
    cfg = config_from_dict(state["cfg"])
    for key, value in (task_overrides or {}).items():
        cfg.task[key] = value
    task = TASK_REGISTRY.build(cfg.task)
    model = task.build_model(cfg.model)
    try:
        model.load_state_dict(model_weights(state, path, model), strict=True)
    except RuntimeError as e:
        raise CheckpointError(
            f"{path}: weights do not fit the model its config describes ({str(e).splitlines()[0]})"
        ) from e
    return cfg, task, model


def load_for_command(path: str, values: dict[str, Any], groups) -> tuple[DictConfig, Any, Any]:
    """(cfg, task, model) for an inference command (eval-lm, generate, interactive).

    Task and model come from the checkpoint, with the command line's `task.*` values on top (a new
    data path, --tokens-per-sample, ...); the settings `groups` (dataset, generation, ...) come from the
    command line alone, not from the training run. `values` maps "group.field" to what was given.
    """
    task_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("task.")}
    cfg, task, model = load_model_for_inference(path, task_overrides=task_values)
    for group in groups:
        cfg[group] = OmegaConf.structured(SETTINGS_GROUPS[group])
    for key, value in values.items():
        group, field = key.split(".", 1)
        if group in groups:
            cfg[group][field] = value
    return cfg, task, model
