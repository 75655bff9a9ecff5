"""The training run, as fairseq-train runs it: resume, then epochs of updates, validating and saving
checkpoints as the config says, until max_epoch/max_update/stop_time_hours, the learning rate floor,
patience, or a signal. Both training commands call `train(cfg)`.

`TrainingLoop` owns what lives across updates and epochs: the trainer, the epoch iterator, the
checkpoint manager, the clocks, the stop signal and the best validation metric (with patience).
"""

import contextlib
import logging
import math
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from fairseq_lite.checkpoint import CheckpointManager
from fairseq_lite.data.iterators import GroupedIterator
from fairseq_lite.distributed import barrier, is_master
from fairseq_lite.errors import ConfigError, TrainingInterrupted, setting
from fairseq_lite.logging import metrics
from fairseq_lite.logging.meters import StopwatchMeter
from fairseq_lite.logging.progress_bar import progress_bar
from fairseq_lite.training.build import build_trainer, valid_subsets
from fairseq_lite.training.checks import check_training_config
from fairseq_lite.training.signals import DEFAULT_SIGNALS, GracefulStop
from fairseq_lite.training.step import Trainer

logger = logging.getLogger(__name__)


@dataclass
class Clocks:
    wall: StopwatchMeter = field(default_factory=StopwatchMeter)
    train_wall: StopwatchMeter = field(default_factory=StopwatchMeter)


class BestMetric:
    """The best validation value of checkpoint.best_checkpoint_metric so far, and patience."""

    def __init__(self, ckpt_cfg: Any):
        self.maximize = ckpt_cfg.maximize_best_checkpoint_metric
        self.patience = ckpt_cfg.patience
        self.best: float | None = None
        self.num_bad_validations = 0

    def update(self, value: float) -> bool:
        """Record a validation result; True when it is the best so far."""
        if self.best is None or (value > self.best if self.maximize else value < self.best):
            self.best = value
            self.num_bad_validations = 0
            return True
        self.num_bad_validations += 1
        return False

    def out_of_patience(self) -> bool:
        if self.patience > 0 and self.num_bad_validations >= self.patience:
            logger.info(f"early stop since valid performance hasn't improved for last {self.patience} runs")
            return True
        return False

    def state(self) -> dict[str, Any]:
        return {"best": self.best, "num_bad_validations": self.num_bad_validations}

    def load(self, extra: dict[str, Any]) -> None:
        self.best = extra.get("best")
        self.num_bad_validations = extra.get("num_bad_validations", 0)


@contextlib.contextmanager
def nvtx_profiling(enabled: bool):
    """common.profile, as fairseq: the run between cudaProfilerStart/Stop, each autograd op an NVTX range,
    for `nsys profile --capture-range=cudaProfilerApi` (checks.py refuses it without a GPU)."""
    if not enabled:
        yield
        return
    with torch.cuda.profiler.profile(), torch.autograd.profiler.emit_nvtx():
        yield


def train(cfg: Any, stop_signals: Sequence[int] = DEFAULT_SIGNALS) -> float | None:
    """Train as the config says; returns the best validation value of best_checkpoint_metric."""
    check_training_config(cfg)
    return TrainingLoop(cfg, build_trainer(cfg)).run(stop_signals)


class TrainingLoop:
    def __init__(self, cfg: Any, trainer: Trainer):
        self.cfg = cfg
        self.trainer = trainer
        self.task = trainer.task
        self.valid_subsets = valid_subsets(cfg)
        self.checkpoints = CheckpointManager(cfg)
        self.clocks = Clocks()
        self.best = BestMetric(cfg.checkpoint)
        self.stop: GracefulStop | None = None
        self.epoch_itr = self._resume()

    def _resume(self):
        extra = self.checkpoints.restore(self.trainer)
        if extra is not None and not self.cfg.checkpoint.reset_dataloader:
            itr_state = extra["train_iterator"]
            epoch_itr = self.trainer.get_train_iterator(itr_state["epoch"])
            epoch_itr.load_state_dict(itr_state)
        else:
            epoch_itr = self.trainer.get_train_iterator(epoch=1)
        if extra is not None and not self.cfg.checkpoint.reset_meters:
            self.clocks.wall.sum = extra.get("wall", 0.0)
            self.clocks.train_wall.sum = extra.get("train_wall", 0.0)
            self.best.load(extra)
        return epoch_itr

    # --- the run --------------------------------------------------------------------------------
    def run(self, stop_signals: Sequence[int] = DEFAULT_SIGNALS) -> float | None:
        metrics.reset()  # a run's statistics start empty (another run in this process leaves its own)
        self.clocks.wall.start()
        max_epoch = self.cfg.optimization.max_epoch or math.inf
        lr = self.trainer.get_lr()
        with GracefulStop(stop_signals) as self.stop, nvtx_profiling(self.cfg.common.profile):
            while self.epoch_itr.next_epoch_idx <= max_epoch:
                if lr <= self.cfg.optimization.stop_min_lr:
                    logger.info(
                        f"stopping training because the learning rate ({lr}) is smaller than or equal to "
                        f"the minimum ({self.cfg.optimization.stop_min_lr})"
                    )
                    break
                valid_metrics, should_stop = self.train_epoch()
                if should_stop:
                    break
                lr = self.trainer.lr_step(self.epoch_itr.epoch, valid_metrics[0] if valid_metrics else None)
                self.epoch_itr = self.trainer.get_train_iterator(
                    self.epoch_itr.next_epoch_idx, load_dataset=self._reload_each_epoch()
                )
        self.clocks.wall.stop()
        self.checkpoints.wait()
        barrier()  # the other ranks wait for rank 0's last save before they leave
        logger.info(f"done training in {self.clocks.wall.elapsed_time:.1f} seconds")
        return self.best.best

    def _reload_each_epoch(self) -> bool:
        return ":" in str(self.cfg.task.get("data", ""))  # several data dirs: one per epoch, round robin

    def train_epoch(self) -> tuple[list[float], bool]:
        cfg, trainer = self.cfg, self.trainer
        epoch = self.epoch_itr.next_epoch_idx
        itr = self.epoch_itr.next_epoch_itr(shuffle=True)
        update_freqs = list(cfg.optimization.update_freq)
        update_freq = update_freqs[epoch - 1] if epoch <= len(update_freqs) else update_freqs[-1]
        itr = GroupedIterator(itr, update_freq)
        progress = self._progress(itr, epoch=epoch)
        self.task.begin_epoch(epoch, trainer.model)
        trainer.lr_step_begin_epoch(epoch)
        logger.info(f"begin training epoch {epoch}")

        valid_metrics: list[float] = []
        should_stop = False
        # fairseq's aggregators: "train" for the epoch, "train_inner" for the updates of a log line.
        metrics.reset_meters("train")
        with metrics.aggregate("train"):
            for samples in progress:
                self.clocks.train_wall.start()
                with metrics.aggregate("train_inner"):
                    out = trainer.train_step(samples)
                self.clocks.train_wall.stop()
                if out is not None and trainer.get_num_updates() % cfg.common.log_interval == 0:
                    progress.log(self.train_stats("train_inner"), tag="train_inner", step=trainer.get_num_updates())
                    metrics.reset_meters("train_inner")
                valid_metrics, should_stop = self.validate_and_save(end_of_epoch=not itr.has_next())
                if should_stop:
                    break
                if self.stop is not None and self.stop.requested():
                    self.save_and_interrupt(self.stop.signum or signal.SIGTERM)
            progress.print(self.train_stats("train"), tag="train", step=trainer.get_num_updates())
        metrics.reset_meters("train")
        progress.close()
        return valid_metrics, should_stop

    def _progress(self, iterator, epoch: int, prefix: str | None = None):
        cfg = self.cfg
        return progress_bar(
            iterator,
            cfg.common.log_format if is_master() else "none",  # only rank 0 logs
            cfg.common.log_interval,
            epoch=epoch,
            prefix=prefix,
            tensorboard_logdir=cfg.common.tensorboard_logdir if is_master() else None,
            default_log_format="none" if cfg.common.no_progress_bar else "tqdm",
        )

    def train_stats(self, aggregator: str) -> dict[str, float]:
        """A training log line: what the aggregator holds (by priority), then the clocks."""
        stats = dict(metrics.get_smoothed_values(aggregator)) if metrics.get_meters(aggregator) is not None else {}
        stats["train_wall"] = round(self.clocks.train_wall.elapsed_time)  # whole seconds, as fairseq's
        stats["wall"] = round(self.clocks.wall.elapsed_time)
        return stats

    # --- validation and checkpoints -------------------------------------------------------------
    def validate_and_save(self, end_of_epoch: bool) -> tuple[list[float], bool]:
        cfg, num_updates = self.cfg, self.trainer.get_num_updates()
        max_update = cfg.optimization.max_update or math.inf
        should_stop = num_updates >= max_update
        if should_stop:
            logger.info(f"stopping training because num_updates ({num_updates}) reached max_update ({max_update})")
        hours = cfg.optimization.stop_time_hours
        if hours > 0 and self.clocks.wall.elapsed_time / 3600 > hours:
            logger.info(f"stopping training because the training time exceeded stop_time_hours={hours}")
            should_stop = True

        ckpt, ds = cfg.checkpoint, cfg.dataset
        epoch = self.epoch_itr.epoch
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
                    ds.validate_interval_updates > 0
                    and num_updates > 0
                    and num_updates % ds.validate_interval_updates == 0
                )
            )
            and not ds.disable_validation
            and num_updates >= ds.validate_after_updates
        )

        valid_metrics: list[float] = []
        is_best = False
        if do_validate:
            valid_metrics, is_best = self.validate()
        should_stop = should_stop or (do_validate and self.best.out_of_patience())
        if do_save or should_stop:
            self.clocks.wall.stop()
            self.clocks.wall.start()
            self.save(valid_metrics[0] if valid_metrics else None, is_best)
        return valid_metrics, should_stop

    def save(self, val_metric: float | None, is_best: bool) -> None:
        extra = {
            "wall": self.clocks.wall.elapsed_time,
            "train_wall": self.clocks.train_wall.elapsed_time,
            **self.best.state(),
        }
        self.checkpoints.save(self.trainer, self.epoch_itr, val_metric, is_best, extra=extra)

    def save_and_interrupt(self, signum: int) -> None:
        self.save(None, is_best=False)
        self.checkpoints.wait()
        barrier()  # no rank leaves (and has its launcher stop the others) before rank 0 has saved
        ckpt = self.cfg.checkpoint
        where = (
            "no checkpoint was written (checkpoint.no_save or no_last_checkpoints is set)"
            if ckpt.no_save or ckpt.no_last_checkpoints
            else f"saved {ckpt.save_dir}/checkpoint_last{ckpt.checkpoint_suffix}.pt; rerun the same command to resume"
        )
        raise TrainingInterrupted(
            signum, f"stopped by {signal.Signals(signum).name} after update {self.trainer.get_num_updates()}: {where}"
        )

    def validate(self) -> tuple[list[float], bool]:
        cfg, trainer = self.cfg, self.trainer
        metric_name = cfg.checkpoint.best_checkpoint_metric
        values: list[float] = []  # best_checkpoint_metric of each subset
        is_best = False
        rng_state = torch.get_rng_state()
        if cfg.dataset.fixed_validation_seed is not None:
            torch.manual_seed(cfg.dataset.fixed_validation_seed)
        for i, subset in enumerate(self.valid_subsets):
            logger.info(f'begin validation on "{subset}" subset')
            itr = trainer.get_valid_iterator(subset).next_epoch_itr(shuffle=False)
            progress = self._progress(itr, epoch=self.epoch_itr.epoch, prefix=f"valid on '{subset}' subset")
            with metrics.aggregate(new_root=True) as aggregator:  # kept out of "train"
                for step, sample in enumerate(progress):
                    if cfg.dataset.max_valid_steps is not None and step >= cfg.dataset.max_valid_steps:
                        break
                    trainer.log_valid_batch(trainer.valid_step(sample))
            stats = dict(aggregator.get_smoothed_values())  # the task's, with the criterion's (and BLEU)
            stats["num_updates"] = trainer.get_num_updates()
            if metric_name not in stats:  # the checks before the run compare with the declared statistics
                available = ", ".join(k for k in stats if k != "num_updates")
                raise ConfigError(
                    f"{setting('checkpoint.best_checkpoint_metric', repr(metric_name))} is not a validation statistic "
                    f"(available: {available})"
                )
            value = float(stats[metric_name])
            if i == 0:  # the first subset decides the best checkpoint, as in fairseq
                is_best = self.best.update(value)
            stats[f"best_{metric_name}"] = self.best.best if self.best.best is not None else value
            progress.print(stats, tag=subset, step=trainer.get_num_updates())
            progress.close()
            values.append(value)
        torch.set_rng_state(rng_state)
        return values, is_best
