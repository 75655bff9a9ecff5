"""Every check of a training run's config, in one pass that runs before anything is built or printed.

The commands call `check_training_config(cfg)` right after composing the config, so a mistake is one
line (naming the key as the user wrote it) before the config dump, before any model, dataset or
directory exists; `train(cfg)` calls it too, for Python callers. What it checks, in order:

1. batching: a batch size, update_freq >= 1;
2. device and precision: the precision asked for runs on this machine, agrees with the DDP backend,
   and the processes asked for can be started here;
3. each selected component's own rules (`check_config` of the task, model, criterion, optimizer and
   lr scheduler classes: heads that divide the width, Adam's betas, warmup > 0 for inverse_sqrt, ...),
   the criterion's rules for the model (`check_model_config`: adaptive_loss needs an adaptive softmax) and
   the schedule's for the optimizer (`check_optimizer_config`: pass_through needs one that schedules itself);
4. the data: the task's `check_data` (data directory, dictionaries, the .bin/.idx of every split to be
   read, headers checked);
5. checkpoints: the file to resume from (or fine-tune from) exists and is one fairseq-lite can resume,
   and checkpoint.best_checkpoint_metric is a statistic validation reports.

The schema itself (unknown keys, wrong types, unknown component names) was checked when composing.
"""

import os
from typing import Any

import torch

from fairseq_lite.checkpoint.io import checkpoint_summary
from fairseq_lite.checkpoint.manager import no_checkpoint_loads, readable_checkpoints
from fairseq_lite.distributed import launched_by_torchrun
from fairseq_lite.errors import CheckpointError, ConfigError, key, setting
from fairseq_lite.optim.fp16_optimizer import MEMORY_EFFICIENT_OPTIMIZERS
from fairseq_lite.optim.precision import check_precision
from fairseq_lite.registry import COMPONENT_REGISTRIES, cfg_name
from fairseq_lite.targets import is_target
from fairseq_lite.training.build import valid_subsets
from fairseq_lite.utils import select_device

# Statistics every validation reports besides the criterion's (the task's reduce_metrics).
VALIDATION_STATISTICS = ["wps", "wpb", "bsz"]


def check_training_config(cfg: Any, resume: bool = True) -> None:
    """Raise the first mistake in `cfg` as a one-line FairseqLiteError; return when the run can start.
    `resume=False`: checkpoint.save_dir is not yet where the run will write (a Hydra run directory still
    to be made), so there is no checkpoint_last.pt of it to look at."""
    check_batching(cfg)
    check_device_and_precision(cfg)
    for group in ("task", "model", "criterion", "optimizer", "lr_scheduler"):
        if is_target(cfg[group]):
            COMPONENT_REGISTRIES[group].check_target(cfg[group])
            continue
        check = getattr(component_class(cfg, group), "check_config", None)
        if check is not None:
            check(cfg[group])
    check_model = getattr(component_class(cfg, "criterion"), "check_model_config", None)
    if check_model is not None:
        check_model(cfg.criterion, cfg.model)
    check_optimizer = getattr(component_class(cfg, "lr_scheduler"), "check_optimizer_config", None)
    if check_optimizer is not None:
        check_optimizer(cfg.lr_scheduler, cfg.optimizer)
    check_data = getattr(component_class(cfg, "task"), "check_data", None)
    if check_data is not None:
        check_data(cfg.task, cfg.dataset.train_subset, valid_subsets(cfg))
    check_checkpoints(cfg, resume)


def component_class(cfg: Any, group: str) -> Any:
    """The registered class of the component `cfg[group]` names (None for a `_target_` component: its own
    checks are Registry.check_target's)."""
    node = cfg[group]
    if is_target(node):
        registered = COMPONENT_REGISTRIES[group].registered_config(node)
        return None if registered is None else COMPONENT_REGISTRIES[group].get(cfg_name(registered)).cls
    return COMPONENT_REGISTRIES[group].get(cfg_name(node)).cls


def check_batching(cfg: Any) -> None:
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        raise ConfigError(
            "set dataset.max_tokens (--max-tokens) or dataset.batch_size (--batch-size) to say how large a batch may be"
        )
    if any(f <= 0 for f in cfg.optimization.update_freq):
        raise ConfigError(
            f"{setting('optimization.update_freq', list(cfg.optimization.update_freq))}: every value must be >= 1"
        )


# torch.distributed's backends (fairseq's --distributed-backend); nccl needs GPUs, gloo runs anywhere.
DISTRIBUTED_BACKENDS = ("nccl", "gloo", "mpi", "ucc")


def check_device_and_precision(cfg: Any) -> None:
    dt = cfg.distributed_training
    world_size = dt.distributed_world_size
    mode = check_precision(cfg.common, select_device(cfg))
    if mode == "fp16" and cfg.common.memory_efficient_fp16 and dt.ddp_backend == "fully_sharded" and world_size > 1:
        raise ConfigError(
            f"{key('common.memory_efficient_fp16')} does not work with "
            f"{setting('distributed_training.ddp_backend', 'fully_sharded')} (its shards are already the only "
            f"fp32 copy); use {setting('common.fp16', True)}"
        )
    optimizer_class = component_class(cfg, "optimizer")
    optimizer = getattr(optimizer_class, "__registered_name__", None)
    built_in = optimizer_class is not None and optimizer_class.__module__.startswith("fairseq_lite.")
    if (
        mode == "fp16"
        and cfg.common.memory_efficient_fp16
        and built_in
        and optimizer not in MEMORY_EFFICIENT_OPTIMIZERS
    ):
        raise ConfigError(
            f"{key('common.memory_efficient_fp16')} does not work with optimizer '{optimizer}' (it works with "
            f"{', '.join(MEMORY_EFFICIENT_OPTIMIZERS)}); use {setting('common.fp16', True)}"
        )
    on_gpu = torch.cuda.is_available() and not cfg.common.cpu
    if cfg.common.profile and not on_gpu:
        raise ConfigError(
            f"{key('common.profile')} emits NVTX ranges for CUDA profilers (nsys, nvprof): it needs a GPU; for a "
            "CPU profile run under `python -m cProfile` or torch.profiler"
        )
    if dt.distributed_backend is not None and dt.distributed_backend not in DISTRIBUTED_BACKENDS:
        raise ConfigError(
            f"{setting('distributed_training.distributed_backend', dt.distributed_backend)} is invalid: it must be "
            f"one of: {', '.join(DISTRIBUTED_BACKENDS)}"
        )
    if dt.distributed_backend == "nccl" and not on_gpu and world_size > 1:
        raise ConfigError(
            f"{setting('distributed_training.distributed_backend', 'nccl')} needs CUDA GPUs; on CPU use gloo"
        )
    if launched_by_torchrun():
        return
    if world_size > 1 and dt.distributed_no_spawn:
        raise ConfigError(
            f"{key('distributed_training.distributed_no_spawn')} is set but this process was not started by "
            "torchrun: launch with `torchrun --nproc_per_node N ...`"
        )
    if world_size > 1 and torch.cuda.is_available() and not cfg.common.cpu and world_size > torch.cuda.device_count():
        raise ConfigError(
            f"{setting('distributed_training.distributed_world_size', world_size)} but only "
            f"{torch.cuda.device_count()} GPUs are visible"
        )


def check_checkpoints(cfg: Any, resume: bool = True) -> None:
    ckpt = cfg.checkpoint
    if ckpt.restore_file != "checkpoint_last.pt":  # a file the user named: it must be there and resumable
        path = ckpt.restore_file
        if not os.path.isfile(path):
            raise CheckpointError(f"{key('checkpoint.restore_file')}: {path} does not exist")
        _check_resumable(path, checkpoint_summary(path))
    else:
        last = os.path.join(ckpt.save_dir, f"checkpoint_last{ckpt.checkpoint_suffix}.pt")
        if resume and os.path.isfile(last):
            try:
                summary = checkpoint_summary(last)
            except CheckpointError as e:
                # Unreadable (cut short by a crash): resuming falls back to the newest checkpoint that loads.
                if not readable_checkpoints(ckpt, exclude=last):
                    raise no_checkpoint_loads(ckpt, last, str(e)) from e
            else:
                _check_resumable(last, summary)
        elif ckpt.finetune_from_model:  # weights to start from: there and readable (fairseq's too)
            if not os.path.isfile(ckpt.finetune_from_model):
                raise CheckpointError(
                    f"{key('checkpoint.finetune_from_model')}: {ckpt.finetune_from_model} does not exist"
                )
            try:
                checkpoint_summary(ckpt.finetune_from_model)
            except CheckpointError as e:
                raise CheckpointError(f"{key('checkpoint.finetune_from_model')}: {e}") from e
    check_best_checkpoint_metric(cfg)


def _check_resumable(path: str, summary: dict[str, Any]) -> None:
    if summary["written_by"] == "fairseq":
        raise CheckpointError(
            f"{path} was written by fairseq: its optimizer and data-iterator states cannot be "
            f"resumed; start a new run from its weights with {setting('checkpoint.finetune_from_model', path)}"
        )


def check_best_checkpoint_metric(cfg: Any) -> None:
    """best_checkpoint_metric must be a statistic validation reports (when the criterion says which)."""
    if cfg.dataset.disable_validation:
        return
    declared = getattr(component_class(cfg, "criterion"), "validation_metrics", None)
    criterion_metrics = declared(cfg.criterion) if declared is not None else None
    if criterion_metrics is None:
        return  # a criterion that does not declare them: validation itself will say
    task_metrics = getattr(component_class(cfg, "task"), "validation_metrics", None)
    metrics = task_metrics(cfg.task, list(criterion_metrics)) if task_metrics else list(criterion_metrics)
    available = metrics + [m for m in VALIDATION_STATISTICS if m not in metrics]
    name = cfg.checkpoint.best_checkpoint_metric
    if name not in available:
        raise ConfigError(
            f"{setting('checkpoint.best_checkpoint_metric', repr(name))} is not a validation statistic "
            f"(available: {', '.join(available)})"
        )
