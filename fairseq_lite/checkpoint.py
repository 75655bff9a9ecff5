"""Checkpoint files: fairseq's names, atomic writes, exact resume, and loading for inference.

A checkpoint holds only tensors and plain Python containers (the config included, resolved), so
`torch.load(path, weights_only=True)` reads it and loading one never runs code. Checkpoints written by
fairseq 0.12.2 load too, for inference and fine-tuning (see fairseq_checkpoint.py).

A fully_sharded (FSDP) run writes its model and optimizer state as a torch.distributed.checkpoint
directory under `<save_dir>/shards/`, one file per rank; its checkpoint_*.pt files hold everything else
and the name of that directory ("sharded_state"). A new save writes a new directory and only then
switches the .pt files to it, so a kill during a save leaves the previous checkpoint whole; directories
no checkpoint names any more are removed.
"""

import argparse
import logging
import os
import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from omegaconf import DictConfig

import fairseq_lite
from fairseq_lite.dataclass.compose import config_from_dict, to_plain_dict
from fairseq_lite.errors import CheckpointError
from fairseq_lite.fairseq_checkpoint import convert_fairseq_checkpoint, is_fairseq_checkpoint

logger = logging.getLogger(__name__)


def atomic_torch_save(obj: Any, path: str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over `path`: a kill at any
    moment leaves either the old file or the new one, never a half-written one."""
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_copy(src: str, dst: str) -> None:
    tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".{os.path.basename(dst)}.tmp{os.getpid()}")
    try:
        shutil.copyfile(src, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _copy_to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _copy_to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_to_cpu(v) for v in value)
    return value


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def torch_load_weights_only(path: str, mmap: bool = False) -> Any:
    """torch.load that unpickles tensors and plain containers only (never runs code from the file)."""
    # fairseq 0.12.2 keeps an argparse.Namespace in some configs: plain data, safe to allow.
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_checkpoint_to_cpu(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch_load_weights_only(path)
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"cannot read checkpoint {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from e
    if isinstance(state, dict) and is_fairseq_checkpoint(state):
        return convert_fairseq_checkpoint(state, path)
    if not isinstance(state, dict) or "model" not in state or "cfg" not in state:
        raise CheckpointError(f"{path} is not a fairseq-lite checkpoint (no 'model'/'cfg' entries)")
    return state


def model_weights(state: dict[str, Any], path: str, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The full weights of a checkpoint read by load_checkpoint_to_cpu, gathered from its shard
    directory when a fully_sharded run wrote it (`model` gives the names and shapes)."""
    if state.get("model") is not None or not state.get("sharded_state"):
        return state["model"]
    from fairseq_lite.distributed.fsdp import load_full_model_state

    directory = os.path.join(os.path.dirname(os.path.abspath(path)), state["sharded_state"])
    if not os.path.isdir(directory):
        raise CheckpointError(f"{path} keeps its weights in {directory}, which is missing")
    return load_full_model_state(directory, model)


class CheckpointManager:
    """Decides which files to write after a validation, and restores a run from checkpoint_last."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.ckpt = cfg.checkpoint
        self.best: float | None = None
        self.num_bad_validations = 0  # for --patience
        self._executor: ThreadPoolExecutor | None = None
        self._pending = None

    # --- best metric and early stopping ---------------------------------------------------------
    def is_better(self, a: float, b: float) -> bool:
        return a > b if self.ckpt.maximize_best_checkpoint_metric else a < b

    def update_best(self, metric: float | None) -> bool:
        """Record a validation result; True when it is the best so far."""
        if metric is None:
            return False
        if self.best is None or self.is_better(metric, self.best):
            self.best = metric
            self.num_bad_validations = 0
            return True
        self.num_bad_validations += 1
        return False

    def should_stop_early(self) -> bool:
        if self.ckpt.patience > 0 and self.num_bad_validations >= self.ckpt.patience:
            logger.info(f"early stop since valid performance hasn't improved for last {self.ckpt.patience} runs")
            return True
        return False

    # --- saving ---------------------------------------------------------------------------------
    def save(self, trainer, epoch_itr, val_metric: float | None, is_best: bool, extra: dict[str, Any]) -> None:
        from fairseq_lite.distributed import is_master

        if self.ckpt.no_save:
            return
        sharded = getattr(trainer, "sharded", False)
        if not is_master() and not sharded:  # ranks hold the same weights: rank 0 writes
            return
        os.makedirs(self.ckpt.save_dir, exist_ok=True)
        epoch = epoch_itr.epoch
        end_of_epoch = epoch_itr.end_of_epoch()
        updates = trainer.get_num_updates()
        suffix = self.ckpt.checkpoint_suffix
        names = []
        if end_of_epoch and not self.ckpt.no_epoch_checkpoints and epoch % self.ckpt.save_interval == 0:
            names.append(f"checkpoint{epoch}{suffix}.pt")
        if not end_of_epoch and self.ckpt.save_interval_updates > 0 and updates % self.ckpt.save_interval_updates == 0:
            names.append(f"checkpoint_{epoch}_{updates}{suffix}.pt")
        if is_best:
            names.append(f"checkpoint_best{suffix}.pt")
            if self.ckpt.keep_best_checkpoints > 0 and val_metric is not None:
                names.append(f"checkpoint.best_{self.ckpt.best_checkpoint_metric}_{val_metric:.4f}{suffix}.pt")
        if not self.ckpt.no_last_checkpoints:
            names.append(f"checkpoint_last{suffix}.pt")
        if not names:
            return
        shard_dir = self._save_shards(trainer) if sharded else None
        if not is_master():
            return

        state = trainer.state_dict()
        if shard_dir is not None:
            state["sharded_state"] = os.path.relpath(shard_dir, self.ckpt.save_dir)
            state["sharded_optimizer"] = not self.ckpt.no_save_optimizer_state
        state["cfg"] = to_plain_dict(self.cfg)
        state["version"] = fairseq_lite.__version__
        state["extra_state"] = {
            **extra,
            "epoch": epoch,
            "train_iterator": epoch_itr.state_dict(),
            "val_loss": val_metric,
            "best": self.best,
            "num_bad_validations": self.num_bad_validations,
            "torch_rng_state": torch.get_rng_state(),
        }
        paths = [os.path.join(self.ckpt.save_dir, n) for n in names]
        description = f"epoch {epoch} @ {updates} updates, score {val_metric}"
        if self.ckpt.write_checkpoints_asynchronously and not sharded:
            # Training goes on and changes the live tensors: write a copy, one file at a time.
            self.wait()
            snapshot = _copy_to_cpu(state)
            self._executor = self._executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="checkpoint")
            self._pending = self._executor.submit(self._write, snapshot, paths, description)
        else:
            self._write(state, paths, description)

    def _save_shards(self, trainer) -> str:
        """All ranks write the model and optimizer shards into a new directory; returns its path."""
        import torch.distributed as dist

        # One name for all ranks, new for every save: an existing checkpoint's shards are never touched.
        name = [f"u{trainer.get_num_updates()}-{time.time_ns()}"]
        dist.broadcast_object_list(name, src=0)
        directory = os.path.join(self.ckpt.save_dir, "shards", name[0])
        trainer.save_sharded_state(directory)
        return directory

    def _write(self, state: dict[str, Any], paths, description: str) -> None:
        atomic_torch_save(state, paths[0])
        for path in paths[1:]:
            atomic_copy(paths[0], path)
        logger.info(
            f"saved checkpoint {paths[0]} ({description}) "
            + (f"and copied it to {', '.join(os.path.basename(p) for p in paths[1:])}" if paths[1:] else "")
        )
        self._remove_old()
        self._remove_unused_shards()

    def wait(self) -> None:
        """Finish the checkpoint being written in the background, if any (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _remove_old(self) -> None:
        suffix = re.escape(self.ckpt.checkpoint_suffix)
        keep = [
            (self.ckpt.keep_interval_updates, rf"checkpoint_\d+_(\d+){suffix}\.pt", False),
            (self.ckpt.keep_last_epochs, rf"checkpoint(\d+){suffix}\.pt", False),
            (
                self.ckpt.keep_best_checkpoints,
                rf"checkpoint\.best_{re.escape(self.ckpt.best_checkpoint_metric)}"
                rf"_(-?[\d.]+){suffix}\.pt",
                True,
            ),
        ]
        for limit, pattern, is_score in keep:
            if limit is None or limit < 0:
                continue
            found = []
            for name in os.listdir(self.ckpt.save_dir):
                m = re.fullmatch(pattern, name)
                if m:
                    found.append((float(m.group(1)), name))
            # Newest (or best) first; everything past `limit` goes.
            reverse = not is_score or self.ckpt.maximize_best_checkpoint_metric
            found.sort(reverse=reverse)
            for _, name in found[limit:]:
                os.remove(os.path.join(self.ckpt.save_dir, name))

    def _remove_unused_shards(self) -> None:
        """Delete shard directories that no checkpoint file names (replaced, or left by a killed save)."""
        root = os.path.join(self.ckpt.save_dir, "shards")
        if not os.path.isdir(root):
            return
        used = set()
        for name in os.listdir(self.ckpt.save_dir):
            if name.startswith("checkpoint") and name.endswith(".pt"):
                try:
                    # mmap: only the small entries are read, not the tensors of a full checkpoint
                    state = torch.load(
                        os.path.join(self.ckpt.save_dir, name), map_location="cpu", weights_only=True, mmap=True
                    )
                except Exception:  # not ours or unreadable: keep everything rather than guess
                    return
                if isinstance(state, dict) and state.get("sharded_state"):
                    used.add(os.path.normpath(os.path.join(self.ckpt.save_dir, state["sharded_state"])))
        for name in os.listdir(root):
            path = os.path.normpath(os.path.join(root, name))
            if path not in used:
                shutil.rmtree(path, ignore_errors=True)

    # --- loading --------------------------------------------------------------------------------
    def restore_path(self) -> tuple[str, bool]:
        """The file to resume from, and whether the user named it explicitly."""
        restore_file = self.ckpt.restore_file
        if restore_file == "checkpoint_last.pt":
            return os.path.join(self.ckpt.save_dir, f"checkpoint_last{self.ckpt.checkpoint_suffix}.pt"), False
        return restore_file, True

    def remove_stale_temp_files(self) -> None:
        """A writer killed mid-write leaves its temp file (never a final name): clear those of dead
        processes so they don't pile up."""
        if not os.path.isdir(self.ckpt.save_dir):
            return
        for name in os.listdir(self.ckpt.save_dir):
            m = re.fullmatch(r"\..+\.pt\.tmp(\d+)", name)
            if m and not _process_alive(int(m.group(1))):
                os.remove(os.path.join(self.ckpt.save_dir, name))
                logger.info(f"removed {name}, left by an interrupted checkpoint write")
        self._remove_unused_shards()

    def load(self, trainer) -> dict[str, Any] | None:
        """Restore trainer state from the checkpoint to resume from; None when starting fresh."""
        from fairseq_lite.distributed import is_master

        if is_master():
            self.remove_stale_temp_files()
        path, explicit = self.restore_path()
        if not os.path.isfile(path):
            if explicit:
                raise CheckpointError(f"checkpoint.restore_file: {path} does not exist")
            if self.ckpt.finetune_from_model:
                self._load_pretrained(trainer, self.ckpt.finetune_from_model)
            return None
        state = load_checkpoint_to_cpu(path)
        if state.get("written_by") == "fairseq":
            raise CheckpointError(
                f"{path} was written by fairseq: its optimizer and data-iterator states cannot be "
                f"resumed; start a new run from its weights with "
                f"checkpoint.finetune_from_model={path}"
            )
        if state.get("sharded_state"):
            state["sharded_state"] = os.path.join(os.path.dirname(os.path.abspath(path)), state["sharded_state"])
        try:
            trainer.load_state_dict(
                state, reset_optimizer=self.ckpt.reset_optimizer, reset_lr_scheduler=self.ckpt.reset_lr_scheduler
            )
        except RuntimeError as e:
            raise CheckpointError(
                f"{path} does not fit this model ({str(e).splitlines()[0]}); use another "
                f"checkpoint.save_dir to start a new run"
            ) from e
        extra = state.get("extra_state") or {}
        if not self.ckpt.reset_meters:
            self.best = extra.get("best")
            self.num_bad_validations = extra.get("num_bad_validations", 0)
        logger.info(f"loaded checkpoint {path} (epoch {extra.get('epoch')} @ {trainer.get_num_updates()} updates)")
        return extra

    def _load_pretrained(self, trainer, path: str) -> None:
        state = load_checkpoint_to_cpu(path)
        try:
            if getattr(trainer, "sharded", False):
                from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

                set_model_state_dict(
                    trainer.model,
                    model_weights(state, path, trainer.model),
                    options=StateDictOptions(full_state_dict=True),
                )
            else:
                trainer.model.load_state_dict(model_weights(state, path, trainer.model), strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"checkpoint.finetune_from_model: {path} does not fit this model ({str(e).splitlines()[0]})"
            ) from e
        logger.info(f"loaded pretrained weights from {path} (optimizer, schedule and meters reset)")


def load_model_for_inference(path: str, task_overrides: dict[str, Any] | None = None):
    """Rebuild (cfg, task, model) from a checkpoint, for eval-lm and generation."""
    from fairseq_lite.registry import TASK_REGISTRY

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
    from omegaconf import OmegaConf

    from fairseq_lite.dataclass.configs import SETTINGS_GROUPS

    task_values = {k.split(".", 1)[1]: v for k, v in values.items() if k.startswith("task.")}
    cfg, task, model = load_model_for_inference(path, task_overrides=task_values)
    for group in groups:
        cfg[group] = OmegaConf.structured(SETTINGS_GROUPS[group])
    for key, value in values.items():
        group, field = key.split(".", 1)
        if group in groups:
            cfg[group][field] = value
    return cfg, task, model
