"""Reading checkpoints written by fairseq 0.12.2, for inference and checkpoint.finetune_from_model.

A fairseq checkpoint is {"cfg": {group: dict}, "model": weights, "optimizer_history": [...],
"last_optimizer_state": ..., "extra_state": ...}. Models fairseq still configures with argparse (the
translation `transformer`) keep an argparse.Namespace of every command-line flag as cfg["model"], with the
architecture's name in `_name`. The weights map one to one onto fairseq-lite's models, but for what fairseq
keeps beside them: `*.version` (a state-dict format marker), `*._float_tensor` (the device/dtype anchor of
the sinusoidal position table), and in each encoder layer the zero-initialized parameters of its
"BetterTransformer" inference path (`in_proj_weight`, `fc1_weight`, ...), which training never updates and
fairseq rebuilds from the real weights when it loads a checkpoint.

Only the model and its config are taken. fairseq's optimizer, scheduler and data-iterator states have other
layouts, so a fairseq run can be fine-tuned from (weights only) but not resumed.
"""

import argparse
import logging
import re
from collections.abc import Mapping
from typing import Any

from fairseq_lite.dataclass.configs import COMPONENT_GROUPS, SETTINGS_GROUPS
from fairseq_lite.errors import CheckpointError
from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY, COMPONENT_REGISTRIES

logger = logging.getLogger(__name__)

FAIRSEQ_ONLY_WEIGHTS = re.compile(
    r"(\.version|\._float_tensor"
    # a multilingual model's encoders are models.{pair}.encoder
    r"|^(models\.[^.]+\.)?encoder\.layers\.\d+\.(in_proj|out_proj|fc1|fc2)_(weight|bias))$"
)

# Model options fairseq-lite does not implement, with the value that means "not used". A checkpoint that
# uses one would load into a different network, so it is refused. (Training-only options such as layerdrop
# or quant-noise do not change the trained network and are ignored.)
UNSUPPORTED_MODEL_OPTIONS = {
    "character_embeddings": False,
    "cross_self_attention": False,
    "encoder_layers_to_keep": None,
    "decoder_layers_to_keep": None,
    "base_layers": 0,
    "scale_fc": False,
    "scale_attn": False,
    "scale_heads": False,
    "scale_resids": False,
    "decoder_xformers_att_config": None,
    "encoder_xformers_att_config": None,
}
# The same for the task: an LM whose output vocabulary is cut to the first N words has another output layer.
UNSUPPORTED_TASK_OPTIONS = {"output_dictionary_size": -1}


def is_fairseq_checkpoint(state: Mapping[str, Any]) -> bool:
    return "optimizer_history" in state


def convert_fairseq_checkpoint(state: dict[str, Any], path: str) -> dict[str, Any]:
    """{"model": weights, "cfg": plain dict} in fairseq-lite's terms, from a loaded fairseq checkpoint."""

    import_components(None)  # registers the models and architectures the config is checked against
    cfg = state.get("cfg")
    if not isinstance(cfg, Mapping):
        raise CheckpointError(
            f"{path} is a fairseq checkpoint without a 'cfg' entry (written before fairseq "
            f"0.10?); load and save it once with fairseq 0.12 to upgrade it"
        )
    plain: dict[str, Any] = {}
    for group, values in cfg.items():
        if isinstance(values, argparse.Namespace):
            values = vars(values)
        if group == "model":
            plain[group] = _model_config(values, path)
        elif group == "task":
            _refuse_unsupported(values, UNSUPPORTED_TASK_OPTIONS, "task", path)
            if isinstance(values.get("lang_pairs"), (list, tuple)):  # a legacy task's parsed --lang-pairs
                values = {**values, "lang_pairs": ",".join(values["lang_pairs"])}
            plain[group] = _known_fields(group, values)
        elif group in COMPONENT_GROUPS and not _is_registered(group, values):
            # The training run's criterion, optimizer, bpe, ... do not shape the network: one that
            # fairseq-lite lacks (nag, gpt2 bpe, moses, ...) is left out instead of failing the load.
            logger.info(f"{path}: leaving out the fairseq {group} {_name_of(values)!r}, which fairseq-lite lacks")
        elif group in SETTINGS_GROUPS or group in COMPONENT_GROUPS:
            plain[group] = _known_fields(group, values)
    if isinstance(plain.get("common"), dict):
        plain["common"].pop("user_dir", None)  # a fairseq plugin directory is not a fairseq-lite one
    weights = {name: tensor for name, tensor in state["model"].items() if not FAIRSEQ_ONLY_WEIGHTS.search(name)}
    return {"model": weights, "cfg": plain, "written_by": "fairseq"}


def _model_config(values: Any, path: str) -> dict[str, Any]:

    if not isinstance(values, Mapping) or not values.get("_name"):
        raise CheckpointError(f"{path}: its model config names no model or architecture")
    values = dict(values)
    _refuse_unsupported(values, UNSUPPORTED_MODEL_OPTIONS, "model", path)
    name = values["_name"]
    if name in ARCH_REGISTRY:
        # fairseq names the architecture; its values are all in the checkpoint already.
        values["_name"] = ARCH_REGISTRY[name].model
    return _known_fields("model", values)


def _refuse_unsupported(values: Any, unsupported: Mapping[str, Any], what: str, path: str) -> None:
    if not isinstance(values, Mapping):
        return
    for option, off in unsupported.items():
        if values.get(option, off) not in (off, None, False, 0, ""):
            raise CheckpointError(
                f"{path}: the fairseq {what} uses {option}={values[option]!r}, which fairseq-lite does not implement"
            )


def _name_of(values: Any) -> Any:
    return values.get("_name") if isinstance(values, Mapping) else values


def _is_registered(group: str, values: Any) -> bool:

    name = _name_of(values)
    return name is None or name in COMPONENT_REGISTRIES[group].entries


def _known_fields(group: str, values: Any) -> Any:
    """The fields fairseq-lite's config has; fairseq's many others (logging backends, TPU, pipeline
    parallelism, ...) are dropped quietly rather than warned about one by one."""
    if not isinstance(values, Mapping):
        return values
    from fairseq_lite.registry import COMPONENT_REGISTRIES

    if group in SETTINGS_GROUPS:
        schema = SETTINGS_GROUPS[group]
    else:
        name = values.get("_name")
        entries = COMPONENT_REGISTRIES[group].entries
        if name not in entries or entries[name].dataclass is None:
            return dict(values)  # unknown component: the config check names the choices
        schema = entries[name].dataclass
    return {k: v for k, v in values.items() if k == "_name" or k in schema.__dataclass_fields__}
