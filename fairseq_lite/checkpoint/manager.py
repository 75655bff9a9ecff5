"""A training run's checkpoints: what a save writes, and where a rerun resumes from.

A save writes the trainer's state (model, optimizer, scheduler, loss scaler, update count), the
config, and what the training loop hands it (iterator position, clocks, best metric) under the first
of fairseq's names for it (checkpoint/names.py), then copies that file to the other names, each file
atomically; old files are then removed as keep_* say. A rerun resumes from checkpoint_last.pt, or, when
that file is cut short or unreadable, from the newest checkpoint in save_dir that loads (it says which).

A fully_sharded (FSDP) run writes its model and optimizer state as a torch.distributed.checkpoint
directory under `<save_dir>/shards/`, one file per rank; its checkpoint_*.pt files hold everything else
and the name of that directory ("sharded_state"). A new save writes a new directory and only then
switches the .pt files to it, so a kill during a save leaves the previous checkpoint whole; directories
no checkpoint names any more are removed.
"""

import logging
import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
from omegaconf import DictConfig

import fairseq_lite
from fairseq_lite.checkpoint.io import (
    checkpoint_summary,
    copy_checkpoint,
    load_checkpoint_to_cpu,
    model_weights,
    torch_load_weights_only,
    write_checkpoint,
)
from fairseq_lite.checkpoint.names import checkpoint_files, last_name, names_to_write, remove_old_checkpoints
from fairseq_lite.distributed import is_master
from fairseq_lite.errors import CheckpointError, key, setting
from fairseq_lite.file_io import remove_stale_temp_files
from fairseq_lite.options.compose import to_plain_dict

logger = logging.getLogger(__name__)


def _copy_to_cpu(value: Any) -> Any:
    if torch.is_tensor(value):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _copy_to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_copy_to_cpu(v) for v in value)
    return value


class CheckpointManager:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self.ckpt = cfg.checkpoint
        self._executor: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    # --- saving ---------------------------------------------------------------------------------
    def save(
        self, trainer: Any, epoch_itr: Any, val_metric: float | None, is_best: bool, extra: dict[str, Any]
    ) -> None:
        """Write the files this point of the run calls for. Ranks hold the same weights, so rank 0
        writes; with FSDP every rank writes its shard first."""
        if self.ckpt.no_save:
            return
        sharded = getattr(trainer, "sharded", False)
        if not is_master() and not sharded:
            return
        epoch, updates = epoch_itr.epoch, trainer.get_num_updates()
        names = names_to_write(self.ckpt, epoch, epoch_itr.end_of_epoch(), updates, is_best, val_metric)
        if not names:
            return
        os.makedirs(self.ckpt.save_dir, exist_ok=True)
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

    def _save_shards(self, trainer: Any) -> str:
        """All ranks write the model and optimizer shards into a new directory; returns its path."""
        import torch.distributed as dist

        # One name for all ranks, new for every save: an existing checkpoint's shards are never touched.
        name = [f"u{trainer.get_num_updates()}-{time.time_ns()}"]
        dist.broadcast_object_list(name, src=0)
        directory = os.path.join(self.ckpt.save_dir, "shards", name[0])
        trainer.save_sharded_state(directory)
        return directory

    def _write(self, state: dict[str, Any], paths: list[str], description: str) -> None:
        write_checkpoint(state, paths[0])
        for path in paths[1:]:
            copy_checkpoint(paths[0], path)
        copies = f" and copied it to {', '.join(os.path.basename(p) for p in paths[1:])}" if paths[1:] else ""
        logger.info(f"saved checkpoint {paths[0]} ({description}){copies}")
        remove_old_checkpoints(self.ckpt)
        self._remove_unused_shards()

    def wait(self) -> None:
        """Finish the checkpoint being written in the background, if any (re-raising its error)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _remove_unused_shards(self) -> None:
        """Delete shard directories that no checkpoint file names (replaced, or left by a killed save)."""
        root = os.path.join(self.ckpt.save_dir, "shards")
        if not os.path.isdir(root):
            return
        used = set()
        # Every checkpoint file, whatever its suffix: runs with other suffixes may share save_dir.
        names = [n for n in os.listdir(self.ckpt.save_dir) if n.startswith("checkpoint") and n.endswith(".pt")]
        for path in (os.path.join(self.ckpt.save_dir, n) for n in names):
            try:
                # mmap: only the small entries are read, not the tensors of a full checkpoint
                state = torch_load_weights_only(path, mmap=True)
            except Exception:  # not ours or unreadable: keep everything rather than guess
                return
            if isinstance(state, dict) and state.get("sharded_state"):
                used.add(os.path.normpath(os.path.join(self.ckpt.save_dir, state["sharded_state"])))
        for name in os.listdir(root):
            path = os.path.normpath(os.path.join(root, name))
            if path not in used:
                shutil.rmtree(path, ignore_errors=True)

    # --- resuming -------------------------------------------------------------------------------
    def restore_path(self) -> tuple[str, bool]:
        """The file to resume from, and whether the user named it explicitly."""
        if self.ckpt.restore_file == "checkpoint_last.pt":
            return os.path.join(self.ckpt.save_dir, last_name(self.ckpt)), False
        return self.ckpt.restore_file, True

    def restore(self, trainer: Any) -> dict[str, Any] | None:
        """Restore the trainer from the checkpoint to resume from; returns its extra_state (the
        loop's position, clocks and best metric), or None when the run starts fresh."""
        if is_master():
            for name in remove_stale_temp_files(self.ckpt.save_dir):
                logger.info(f"removed {name}, left by an interrupted checkpoint write")
            self._remove_unused_shards()
        path, explicit = self.restore_path()
        if not os.path.isfile(path):
            if explicit:
                raise CheckpointError(f"{key('checkpoint.restore_file')}: {path} does not exist")
            if self.ckpt.finetune_from_model:
                self._load_pretrained(trainer, self.ckpt.finetune_from_model)
            return None
        if explicit:
            state = load_checkpoint_to_cpu(path)
        else:
            state, path = self._newest_loadable(path)
        if state.get("written_by") == "fairseq":
            raise CheckpointError(
                f"{path} was written by fairseq: its optimizer and data-iterator states cannot be "
                f"resumed; start a new run from its weights with {setting('checkpoint.finetune_from_model', path)}"
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
                f"{key('checkpoint.save_dir')} to start a new run"
            ) from e
        extra = state.get("extra_state") or {}
        logger.info(f"loaded checkpoint {path} (epoch {extra.get('epoch')} @ {trainer.get_num_updates()} updates)")
        return extra

    def _newest_loadable(self, last: str) -> tuple[dict[str, Any], str]:
        """checkpoint_last's state; when it cannot be read (a crash cut it short, the disk corrupted
        it), the state of the newest other checkpoint in save_dir that can, saying so."""
        try:
            return load_checkpoint_to_cpu(last), last
        except CheckpointError as e:
            problem = str(e)
        for path, summary in readable_checkpoints(self.ckpt, exclude=last):
            try:
                state = load_checkpoint_to_cpu(path)
            except CheckpointError:
                continue
            logger.warning(
                f"{problem}; resuming from {path} instead (epoch {summary['epoch']} @ {summary['num_updates']} "
                f"updates), the newest checkpoint in {self.ckpt.save_dir} that loads"
            )
            return state, path
        raise no_checkpoint_loads(self.ckpt, last, problem)

    def _load_pretrained(self, trainer: Any, path: str) -> None:
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
                f"{key('checkpoint.finetune_from_model')}: {path} does not fit this model ({str(e).splitlines()[0]})"
            ) from e
        logger.info(f"loaded pretrained weights from {path} (optimizer, schedule and meters reset)")


def readable_checkpoints(ckpt: Any, exclude: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(path, checkpoint_summary) of the fairseq-lite checkpoints in save_dir that can be read, newest
    (most updates, then last written) first."""
    found = []
    for path in checkpoint_files(ckpt):
        if exclude is not None and os.path.abspath(path) == os.path.abspath(exclude):
            continue
        try:
            summary = checkpoint_summary(path)
        except CheckpointError:
            continue
        if summary["written_by"] is None:
            found.append((summary["num_updates"], os.path.getmtime(path), path, summary))
    return [(path, summary) for _, _, path, summary in sorted(found, reverse=True)]


def no_checkpoint_loads(ckpt: Any, last: str, problem: str) -> CheckpointError:
    return CheckpointError(
        f"{problem}, and no other checkpoint in {ckpt.save_dir} can be read: move {last} away to start the run "
        f"over, or resume from another file with {setting('checkpoint.restore_file', 'PATH')}"
    )
