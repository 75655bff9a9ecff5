"""The training run: build everything from the config, resume, then epochs of updates with
validation and checkpoints, as fairseq-train does. Both training commands call `train(cfg)`."""

import logging
import math
import random
import signal
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from fairseq_lite.checkpoint import CheckpointManager
from fairseq_lite.data.iterators import GroupedIterator
from fairseq_lite.distributed import all_reduce_sums, get_world_size, is_master
from fairseq_lite.errors import ConfigError, TrainingInterrupted
from fairseq_lite.logging.meters import StopwatchMeter, UpdateStats
from fairseq_lite.logging.progress_bar import progress_bar
from fairseq_lite.registry import TASK_REGISTRY
from fairseq_lite.trainer import Trainer

logger = logging.getLogger(__name__)


@dataclass
class Clocks:
    wall: StopwatchMeter = field(default_factory=StopwatchMeter)
    train_wall: StopwatchMeter = field(default_factory=StopwatchMeter)


class GracefulStop:
    """SIGTERM (a SLURM preemption, `kill`) or Ctrl-C: finish the update in progress, write
    checkpoint_last.pt, and stop; the same command then resumes. A second signal stops at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def requested(self) -> bool:
        """Whether to stop now; with several ranks, all of them agree (one may see the signal an
        update before another, and must not leave the others waiting in a collective)."""
        wanted = self.signum is not None
        if get_world_size() > 1:
            wanted = all_reduce_sums({"stop": float(wanted)})["stop"] > 0
        return wanted

    def _handle(self, signum, frame):
        self.signum = signum
        logger.warning(
            f"received {signal.Signals(signum).name}: stopping after the current update (send it again to stop at once)"
        )
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))


def check_run_config(cfg) -> None:
    """Reject settings this build cannot run, before any data is read."""
    if cfg.dataset.max_tokens is None and cfg.dataset.batch_size is None:
        raise ConfigError(
            "set dataset.max_tokens (--max-tokens) or dataset.batch_size (--batch-size) to say how large a batch may be"
        )
    if any(f <= 0 for f in cfg.optimization.update_freq):
        raise ConfigError(f"optimization.update_freq={list(cfg.optimization.update_freq)}: every value must be >= 1")


def train(cfg) -> float | None:
    """Train as the config says; returns the best validation value of best_checkpoint_metric."""
    check_run_config(cfg)
    seed = cfg.common.seed
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)

    task = TASK_REGISTRY.build(cfg.task)
    valid_subsets = [s for s in cfg.dataset.valid_subset.split(",") if s]
    if not cfg.dataset.disable_validation:
        for subset in valid_subsets:
            task.load_dataset(subset, combine=False, epoch=1)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    num_params = sum(p.numel() for p in model.parameters())
    logger.info(f"task: {type(task).__name__}, model: {type(model).__name__}, criterion: {type(criterion).__name__}")
    logger.info(
        f"num. model params: {num_params:,} (num. trained: "
        f"{sum(p.numel() for p in model.parameters() if p.requires_grad):,})"
    )

    trainer = Trainer(cfg, task, model, criterion)
    logger.info(
        f"training on {trainer.device} ({trainer.precision.mode}); max tokens per batch = "
        f"{cfg.dataset.max_tokens} and max sentences per batch = {cfg.dataset.batch_size}"
    )
    manager = CheckpointManager(cfg)
    clocks = Clocks()
    extra = manager.load(trainer)
    if extra is not None and not cfg.checkpoint.reset_dataloader:
        itr_state = extra["train_iterator"]
        epoch_itr = trainer.get_train_iterator(itr_state["epoch"])
        epoch_itr.load_state_dict(itr_state)
    else:
        epoch_itr = trainer.get_train_iterator(epoch=1)
    if extra is not None and not cfg.checkpoint.reset_meters:
        clocks.wall.sum = extra.get("wall", 0.0)
        clocks.train_wall.sum = extra.get("train_wall", 0.0)
    clocks.wall.start()

    max_epoch = cfg.optimization.max_epoch or math.inf
    lr = trainer.get_lr()
    with GracefulStop() as stop:
        while epoch_itr.next_epoch_idx <= max_epoch:
            if lr <= cfg.optimization.stop_min_lr:
                logger.info(
                    f"stopping training because the learning rate ({lr}) is smaller than or equal to "
                    f"the minimum ({cfg.optimization.stop_min_lr})"
                )
                break
            valid_metrics, should_stop = train_epoch(
                cfg, trainer, task, epoch_itr, valid_subsets, manager, clocks, stop
            )
            if should_stop:
                break
            lr = trainer.lr_step(epoch_itr.epoch, valid_metrics[0] if valid_metrics else None)
            epoch_itr = trainer.get_train_iterator(epoch_itr.next_epoch_idx, load_dataset=_reload_each_epoch(task, cfg))
    clocks.wall.stop()
    manager.wait()
    logger.info(f"done training in {clocks.wall.elapsed_time:.1f} seconds")
    return manager.best


def _reload_each_epoch(task, cfg) -> bool:
    return ":" in str(cfg.task.get("data", ""))  # several data dirs: one per epoch, round robin


def train_epoch(
    cfg,
    trainer: Trainer,
    task,
    epoch_itr,
    valid_subsets: list[str],
    manager: CheckpointManager,
    clocks: Clocks,
    stop: GracefulStop | None = None,
) -> tuple[list[float], bool]:
    epoch = epoch_itr.next_epoch_idx
    itr = epoch_itr.next_epoch_itr(shuffle=True)
    update_freqs = list(cfg.optimization.update_freq)
    update_freq = update_freqs[epoch - 1] if epoch <= len(update_freqs) else update_freqs[-1]
    itr = GroupedIterator(itr, update_freq)
    progress = progress_bar(
        itr,
        log_format(cfg),
        cfg.common.log_interval,
        epoch=epoch,
        tensorboard_logdir=cfg.common.tensorboard_logdir if is_master() else None,
        default_log_format="none" if cfg.common.no_progress_bar else "tqdm",
    )
    task.begin_epoch(epoch, trainer.model)
    trainer.lr_step_begin_epoch(epoch)
    logger.info(f"begin training epoch {epoch}")

    interval, whole_epoch = UpdateStats(), UpdateStats()
    valid_metrics: list[float] = []
    should_stop = False
    for samples in progress:
        clocks.train_wall.start()
        out = trainer.train_step(samples)
        clocks.train_wall.stop()
        if out is not None:
            gnorm, clipped = out.pop("gnorm"), bool(out.pop("clipped"))
            interval.add(out, gnorm, clipped)
            whole_epoch.add(out, gnorm, clipped)
            if trainer.get_num_updates() % cfg.common.log_interval == 0:
                progress.log(
                    train_stats(cfg, trainer, interval, clocks), tag="train_inner", step=trainer.get_num_updates()
                )
                interval = UpdateStats()
        end_of_epoch = not itr.has_next()
        valid_metrics, should_stop = validate_and_save(
            cfg, trainer, task, epoch_itr, valid_subsets, end_of_epoch, manager, clocks
        )
        if should_stop:
            break
        if stop is not None and stop.requested():
            save_and_interrupt(cfg, trainer, epoch_itr, manager, clocks, stop.signum or signal.SIGTERM)
    progress.print(train_stats(cfg, trainer, whole_epoch, clocks), tag="train", step=trainer.get_num_updates())
    progress.close()
    return valid_metrics, should_stop


def save_and_interrupt(
    cfg, trainer: Trainer, epoch_itr, manager: CheckpointManager, clocks: Clocks, signum: int
) -> None:
    manager.save(
        trainer,
        epoch_itr,
        None,
        is_best=False,
        extra={"wall": clocks.wall.elapsed_time, "train_wall": clocks.train_wall.elapsed_time},
    )
    manager.wait()
    where = (
        "no checkpoint was written (checkpoint.no_save or no_last_checkpoints is set)"
        if cfg.checkpoint.no_save or cfg.checkpoint.no_last_checkpoints
        else f"saved {cfg.checkpoint.save_dir}/checkpoint_last{cfg.checkpoint.checkpoint_suffix}.pt; "
        "rerun the same command to resume"
    )
    raise TrainingInterrupted(
        signum, f"stopped by {signal.Signals(signum).name} after update {trainer.get_num_updates()}: {where}"
    )


def log_format(cfg) -> str:
    return cfg.common.log_format if is_master() else "none"  # only rank 0 logs


def train_stats(cfg, trainer: Trainer, window: UpdateStats, clocks: Clocks) -> dict[str, float]:
    stats = window.stats(trainer.criterion.reduce_metrics, training=True)
    stats["num_updates"] = trainer.get_num_updates()
    stats["lr"] = trainer.get_lr()
    stats.update(window.gnorm_stats(cfg.optimization.clip_norm))
    if trainer.precision.loss_scale is not None:
        stats["loss_scale"] = trainer.precision.loss_scale
    stats["train_wall"] = clocks.train_wall.elapsed_time
    stats["wall"] = clocks.wall.elapsed_time
    return stats


def validate_and_save(
    cfg,
    trainer: Trainer,
    task,
    epoch_itr,
    valid_subsets: list[str],
    end_of_epoch: bool,
    manager: CheckpointManager,
    clocks: Clocks,
) -> tuple[list[float], bool]:
    num_updates = trainer.get_num_updates()
    max_update = cfg.optimization.max_update or math.inf
    should_stop = num_updates >= max_update
    if should_stop:
        logger.info(f"stopping training because num_updates ({num_updates}) reached max_update ({max_update})")
    hours = cfg.optimization.stop_time_hours
    if hours > 0 and clocks.wall.elapsed_time / 3600 > hours:
        logger.info(f"stopping training because the training time exceeded stop_time_hours={hours}")
        should_stop = True

    ckpt, ds = cfg.checkpoint, cfg.dataset
    epoch = epoch_itr.epoch
    every_updates = (
        ckpt.save_interval_updates > 0
        and num_updates > 0
        and num_updates % ckpt.save_interval_updates == 0
        and num_updates >= ds.validate_after_updates
    )
    do_save = (end_of_epoch and epoch % ckpt.save_interval == 0) or should_stop or every_updates
    do_validate = (
        (
            (not end_of_epoch and do_save)
            or (end_of_epoch and epoch % ds.validate_interval == 0)
            or should_stop
            or (
                ds.validate_interval_updates > 0 and num_updates > 0 and num_updates % ds.validate_interval_updates == 0
            )
        )
        and not ds.disable_validation
        and num_updates >= ds.validate_after_updates
    )

    valid_metrics: list[float] = []
    is_best = False
    if do_validate:
        valid_metrics, is_best = validate(cfg, trainer, task, epoch_itr, valid_subsets, manager)
    should_stop = should_stop or (do_validate and manager.should_stop_early())
    if do_save or should_stop:
        clocks.wall.stop()
        clocks.wall.start()
        manager.save(
            trainer,
            epoch_itr,
            valid_metrics[0] if valid_metrics else None,
            is_best,
            extra={"wall": clocks.wall.elapsed_time, "train_wall": clocks.train_wall.elapsed_time},
        )
    return valid_metrics, should_stop


def validate(
    cfg, trainer: Trainer, task, epoch_itr, subsets: list[str], manager: CheckpointManager
) -> tuple[list[float], bool]:
    metric_name = cfg.checkpoint.best_checkpoint_metric
    metrics: list[float] = []
    is_best = False
    rng_state = torch.get_rng_state()
    if cfg.dataset.fixed_validation_seed is not None:
        torch.manual_seed(cfg.dataset.fixed_validation_seed)
    for i, subset in enumerate(subsets):
        logger.info(f'begin validation on "{subset}" subset')
        itr = trainer.get_valid_iterator(subset).next_epoch_itr(shuffle=False)
        progress = progress_bar(
            itr,
            log_format(cfg),
            cfg.common.log_interval,
            epoch=epoch_itr.epoch,
            prefix=f"valid on '{subset}' subset",
            tensorboard_logdir=cfg.common.tensorboard_logdir if is_master() else None,
            default_log_format="none" if cfg.common.no_progress_bar else "tqdm",
        )
        window = UpdateStats()
        for step, sample in enumerate(progress):
            if cfg.dataset.max_valid_steps is not None and step >= cfg.dataset.max_valid_steps:
                break
            out = trainer.valid_step(sample)
            if out:
                out["_batches"] = 1
                window.add(out)
        # The task may add its own statistics (translation: BLEU) to the criterion's.
        window.totals = all_reduce_sums(window.totals)  # every rank validated its own shard
        stats = window.stats(lambda totals: task.reduce_metrics(totals, trainer.criterion), training=False)
        stats.pop("wps", None)
        stats["num_updates"] = trainer.get_num_updates()
        if metric_name not in stats:
            raise ConfigError(
                f"checkpoint.best_checkpoint_metric='{metric_name}' is not a validation statistic "
                f"(available: {', '.join(k for k in stats if k != 'num_updates')})"
            )
        value = float(stats[metric_name])
        if i == 0:  # the first subset decides the best checkpoint, as in fairseq
            is_best = manager.update_best(value)
        stats[f"best_{metric_name}"] = manager.best if manager.best is not None else value
        progress.print(stats, tag=subset, step=trainer.get_num_updates())
        progress.close()
        metrics.append(value)
    torch.set_rng_state(rng_state)
    return metrics, is_best
