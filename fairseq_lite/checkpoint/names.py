"""fairseq's checkpoint file names, which of them a save writes, and which old ones it removes.

    checkpoint{epoch}.pt              end of an epoch (every save_interval epochs; keep_last_epochs)
    checkpoint_{epoch}_{updates}.pt   every save_interval_updates updates (keep_interval_updates)
    checkpoint_best.pt                the best validation of best_checkpoint_metric so far
    checkpoint.best_{metric}_{value}.pt   the keep_best_checkpoints best ones
    checkpoint_last.pt                the newest, which a rerun of the same command resumes from

each with `checkpoint_suffix` before `.pt`.
"""

import os
import re
from typing import Any


def last_name(ckpt: Any) -> str:
    return f"checkpoint_last{ckpt.checkpoint_suffix}.pt"


def names_to_write(
    ckpt: Any, epoch: int, end_of_epoch: bool, updates: int, is_best: bool, val_metric: float | None
) -> list[str]:
    """The files one save writes (the first is written, the others are copies of it)."""
    suffix = ckpt.checkpoint_suffix
    names = []
    if end_of_epoch and not ckpt.no_epoch_checkpoints and epoch % ckpt.save_interval == 0:
        names.append(f"checkpoint{epoch}{suffix}.pt")
    if not end_of_epoch and ckpt.save_interval_updates > 0 and updates % ckpt.save_interval_updates == 0:
        names.append(f"checkpoint_{epoch}_{updates}{suffix}.pt")
    if is_best:
        names.append(f"checkpoint_best{suffix}.pt")
        if ckpt.keep_best_checkpoints > 0 and val_metric is not None:
            names.append(f"checkpoint.best_{ckpt.best_checkpoint_metric}_{val_metric:.4f}{suffix}.pt")
    if not ckpt.no_last_checkpoints:
        names.append(last_name(ckpt))
    return names


def remove_old_checkpoints(ckpt: Any) -> None:
    """Apply keep_interval_updates, keep_last_epochs and keep_best_checkpoints in save_dir."""
    suffix = re.escape(ckpt.checkpoint_suffix)
    metric = re.escape(ckpt.best_checkpoint_metric)
    keep = [
        (ckpt.keep_interval_updates, rf"checkpoint_\d+_(\d+){suffix}\.pt", False),
        (ckpt.keep_last_epochs, rf"checkpoint(\d+){suffix}\.pt", False),
        (ckpt.keep_best_checkpoints, rf"checkpoint\.best_{metric}_(-?[\d.]+){suffix}\.pt", True),
    ]
    for limit, pattern, is_score in keep:
        if limit is None or limit < 0:
            continue
        found = []
        for name in os.listdir(ckpt.save_dir):
            m = re.fullmatch(pattern, name)
            if m:
                found.append((float(m.group(1)), name))
        # Newest (or best) first; everything past `limit` goes.
        found.sort(reverse=not is_score or ckpt.maximize_best_checkpoint_metric)
        for _, name in found[limit:]:
            os.remove(os.path.join(ckpt.save_dir, name))


def checkpoint_files(ckpt: Any) -> list[str]:
    """Every file in save_dir with one of the names above (for this suffix), as paths."""
    suffix = re.escape(ckpt.checkpoint_suffix)
    pattern = re.compile(rf"checkpoint(_last|_best|\d+|_\d+_\d+|\.best_.+){suffix}\.pt")
    if not os.path.isdir(ckpt.save_dir):
        return []
    return sorted(os.path.join(ckpt.save_dir, n) for n in os.listdir(ckpt.save_dir) if pattern.fullmatch(n))
