"""One training update: forward and backward of `update_freq` micro-batches through the task, then one
step of the optimizer; and the state of those (model, optimizer, schedule, loss scale) a checkpoint holds.

The loop around it (epochs, validation, checkpoints, stopping) is training/loop.py; what it is built
from is training/build.py.
"""

import logging
import math
from typing import Any

import torch

from fairseq_lite.data.iterators import EpochBatchIterator
from fairseq_lite.distributed import all_gather_list, all_reduce_sums, get_rank, get_world_size
from fairseq_lite.distributed.fsdp import load_sharded, save_sharded, to_local_value
from fairseq_lite.errors import CheckpointError, NonFiniteLossError, OutOfMemoryError, key, setting
from fairseq_lite.logging import metrics
from fairseq_lite.optim.fp16_optimizer import build_fp16_optimizer
from fairseq_lite.optim.precision import GradientOverflow, PrecisionOptimizer, autocast_context, check_precision
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY
from fairseq_lite.training.device import place_for_training
from fairseq_lite.training.nonfinite import first_nonfinite_module
from fairseq_lite.utils import move_to_device, resolve_max_positions, select_device

logger = logging.getLogger(__name__)


class Trainer:
    """`Trainer(cfg, task, model, criterion)`; training/build.py's `build_trainer(cfg)` makes one."""

    def __init__(self, cfg: Any, task: Any, model: torch.nn.Module, criterion: torch.nn.Module):
        self.cfg = cfg
        self.task = task
        self.device = select_device(cfg)
        self.world_size = get_world_size()
        self.precision_mode = check_precision(cfg.common, self.device)
        placed = place_for_training(cfg, model, criterion, self.device, self.world_size, self.precision_mode)
        self.placement = placed
        self.model = placed.model  # the module itself: checkpoints, validation, inference
        self.train_model = placed.train_model  # what training steps run: DDP or FSDP, compiled
        self.criterion = placed.criterion
        self.sharded = placed.sharded
        self._dummy_batch = None  # stands in for a rank's empty batch, so collectives still match
        self.oom_skips = 0
        self.num_updates = 0
        self._optimizer: PrecisionOptimizer | None = None
        self._lr_scheduler = None

    # --- optimizer and schedule, built on first use so that a checkpoint can be loaded first ---
    @property
    def optimizer(self) -> PrecisionOptimizer:
        """What task.train_step receives: the configured optimizer with the run's precision in it."""
        if self._optimizer is None:
            self._build_optimizer()
        return self._optimizer

    @property
    def lr_scheduler(self):
        if self._lr_scheduler is None:
            self._build_optimizer()
        return self._lr_scheduler

    def _build_optimizer(self) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        params += [p for p in self.criterion.parameters() if p.requires_grad]
        if self.placement.half_model:
            inner = build_fp16_optimizer(
                self.cfg.optimizer,
                params,
                memory_efficient=self.cfg.common.memory_efficient_fp16,
                flatten=not self.cfg.common.fp16_no_flatten_grads,
            )
        else:
            inner = OPTIMIZER_REGISTRY.build(self.cfg.optimizer, params)
        self._optimizer = PrecisionOptimizer(
            inner,
            self.cfg.common,
            self.device,
            mode=self.precision_mode,
            update_freq=self.cfg.optimization.update_freq[0],
            world_size=self.world_size,
        )
        self._lr_scheduler = LR_SCHEDULER_REGISTRY.build(self.cfg.lr_scheduler, inner)
        self._lr_scheduler.step_update(0)

    def autocast(self):
        """The context of a forward pass in this run's precision."""
        return autocast_context(self.precision_mode, self.device)

    @property
    def loss_scale(self) -> float | None:
        return self.optimizer.loss_scale

    def get_lr(self) -> float:
        return self.optimizer.get_lr()

    def get_num_updates(self) -> int:
        return self.num_updates

    # --- data -----------------------------------------------------------------------------------
    def get_train_iterator(self, epoch: int, load_dataset: bool = True) -> EpochBatchIterator:
        ds = self.cfg.dataset
        if load_dataset:
            self.task.load_dataset(ds.train_subset, epoch=epoch, combine=True)  # as fairseq: train1, train2, ...
        return self.task.get_batch_iterator(
            dataset=self.task.dataset(ds.train_subset),
            max_tokens=ds.max_tokens,
            max_sentences=ds.batch_size,
            max_positions=self._max_positions(),
            ignore_invalid_inputs=True,
            required_batch_size_multiple=ds.required_batch_size_multiple,
            seed=self.cfg.common.seed,
            num_shards=self.world_size,
            shard_id=get_rank(),
            num_workers=ds.num_workers,
            epoch=epoch,
            skip_remainder_batch=self.cfg.optimization.skip_remainder_batch,
            data_buffer_size=ds.data_buffer_size,
            pin_memory=self.device.type == "cuda",
        )

    def get_valid_iterator(self, subset: str) -> EpochBatchIterator:
        ds = self.cfg.dataset
        return self.task.get_batch_iterator(
            dataset=self.task.dataset(subset),
            max_tokens=ds.max_tokens_valid,
            max_sentences=ds.batch_size_valid,
            max_positions=self._max_positions(),
            ignore_invalid_inputs=ds.skip_invalid_size_inputs_valid_test,
            required_batch_size_multiple=ds.required_batch_size_multiple,
            seed=self.cfg.common.seed,
            num_shards=self.world_size,
            shard_id=get_rank(),
            num_workers=ds.num_workers,
            epoch=1,
            disable_iterator_cache=True,
        )

    def _max_positions(self):
        """The tighter of the task's and the model's limits (ints, or (source, target) pairs)."""
        limits = [m for m in (self.task.max_positions(), self.model.max_positions()) if m is not None]
        if not limits:
            return None
        if any(isinstance(m, dict) for m in limits):  # per language pair (a multilingual task and model)
            return resolve_max_positions(*limits)
        if all(isinstance(m, (tuple, list)) for m in limits):
            return tuple(min(values) for values in zip(*limits))
        return min(m if not isinstance(m, (tuple, list)) else min(m) for m in limits)

    # --- steps ----------------------------------------------------------------------------------
    def train_step(self, samples: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Forward/backward every micro-batch, then one optimizer update, logged into the active
        metrics aggregators. Returns the logging outputs summed over micro-batches and ranks with the
        update's gradient norm ("gnorm"), or None
        when no update was made (nothing to train on, an overflow, a skipped batch)."""
        # Dropout draws depend only on (seed, update): an interrupted run resumed from a checkpoint
        # therefore makes exactly the same draws as an uninterrupted one.
        torch.manual_seed(self.cfg.common.seed + self.num_updates)
        optimizer = self.optimizer
        optimizer.num_updates = self.num_updates
        optimizer.zero_grad()
        totals: dict[str, float] = {}
        outputs: list[dict[str, Any]] = []  # each micro-batch's, for a criterion whose logs cannot be summed
        sample_size = 0.0
        last_sample = None
        for i, sample in enumerate(samples):
            is_dummy = not sample  # an empty batch, e.g. the padding of a short shard
            if is_dummy:
                if self.world_size == 1 or self._dummy_batch is None:
                    continue
                # Other ranks are in a real step: run one too (with zero loss) so the gradient
                # all-reduce has every rank.
                sample = self._dummy_batch
            else:
                sample = move_to_device(sample, self.device)
                if self._dummy_batch is None:
                    self._dummy_batch = sample
            try:
                with self.placement.gradient_sync(self.world_size, last=i == len(samples) - 1):
                    _, size, logging_output = self.task.train_step(
                        sample, self.train_model, self.criterion, optimizer, self.num_updates, ignore_grad=is_dummy
                    )
            except torch.OutOfMemoryError as oom:
                return self._out_of_memory(oom)
            if is_dummy:
                continue
            last_sample = sample
            sample_size += float(size)
            outputs.append(logging_output)
            for name, value in logging_output.items():
                # Tensors stay on the device until the update is done: reading one is a sync that
                # would stall the GPU between micro-batches.
                totals[name] = totals.get(name, 0.0) + (value.detach() if torch.is_tensor(value) else float(value))
        totals = _to_floats(totals)
        if self.world_size > 1:
            totals = all_reduce_sums({**totals, "_update_sample_size": sample_size})
            sample_size = totals.pop("_update_sample_size")
        if sample_size == 0:
            return None
        if not math.isfinite(totals.get("loss", 0.0)) and optimizer.mode not in ("fp16", "amp"):
            return self._nonfinite_loss(totals["loss"], last_sample)  # fp16/amp: the loss scaler handles it
        # Losses are sums over tokens: dividing the summed gradient by the number of tokens in the
        # whole update makes update_freq=k on batches of b equal one batch of k*b, and (DDP averages
        # gradients over ranks, hence the world size) k ranks equal update_freq=k. The loss scale
        # comes off in the same pass over the gradients.
        optimizer.multiply_grads(self.world_size / sample_size)
        clip_norm = self.cfg.optimization.clip_norm
        try:
            gnorm = float(to_local_value(optimizer.clip_grad_norm(clip_norm)))
        except GradientOverflow as overflow:  # fp16: inf/NaN gradients skip the update
            logger.info(f"NOTE: {overflow}")
            optimizer.zero_grad()
            return None
        if math.isfinite(gnorm) or optimizer.mode == "amp":  # amp: GradScaler skips an overflowing step
            optimizer.step()
        else:
            logger.warning(f"gradient norm is {gnorm} at update {self.num_updates + 1}: skipping this update")
            optimizer.zero_grad()
        self.num_updates += 1
        self.lr_scheduler.step_update(self.num_updates)
        self._log_update(totals, outputs, gnorm, clip_norm)
        self._maybe_empty_cache()
        return {**totals, "gnorm": gnorm}

    def _maybe_empty_cache(self) -> None:
        """common.empty_cache_freq: hand the CUDA caching allocator's free blocks back every that many
        updates (after updates 1, 1 + f, 1 + 2f, ... as fairseq), for runs whose batch shapes vary a lot."""
        freq = self.cfg.common.empty_cache_freq
        if freq > 0 and (self.num_updates + freq - 1) % freq == 0 and self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _log_update(self, totals: dict[str, float], outputs: list[dict[str, Any]], gnorm: float, clip_norm: float):
        """Log the update into the active metrics aggregators as fairseq's trainer does: its own
        fields, then the task's and criterion's reduce_metrics of the update's logging outputs."""
        metrics.log_speed("ups", 1.0, priority=100, round=2)
        metrics.log_scalar("num_updates", self.num_updates, weight=0, priority=200)
        metrics.log_scalar("lr", self.get_lr(), weight=0, priority=300)
        for group, lr in (self.optimizer.group_lrs() or {}).items():
            metrics.log_scalar(f"lr_{group}", lr, weight=0, priority=300)  # a composite optimizer's groups
        if math.isfinite(gnorm):
            metrics.log_scalar("gnorm", gnorm, priority=400, round=3)
        if clip_norm > 0:
            metrics.log_scalar("clip", 100.0 if gnorm > clip_norm else 0.0, priority=500, round=1)
        if self.loss_scale is not None:
            metrics.log_scalar("loss_scale", self.loss_scale, weight=0, priority=700, round=4)
        self.reduce_and_log(totals, outputs)

    def reduce_and_log(self, summed: dict[str, float], outputs: list[dict[str, Any]]) -> None:
        """The task's reduce_metrics of one update's (or validation batch's) logging outputs, over every
        rank: `summed` (already summed over ranks) when the criterion's logs can be summed, else every
        rank's `outputs`."""
        if self.criterion.logging_outputs_can_be_summed():
            logging_outputs = [summed]
        else:
            local = [_to_floats(o) for o in outputs]
            logging_outputs = [o for rank in all_gather_list(local) for o in rank]
        if logging_outputs and any(logging_outputs):
            self.task.reduce_metrics(logging_outputs, self.criterion)

    def _out_of_memory(self, oom: BaseException) -> None:
        """Free what the failed step held and skip this update, as fairseq does, a bounded number of
        times. With several ranks that is impossible: the others would wait in the gradient sync."""
        self.optimizer.zero_grad()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        where = f"update {self.num_updates + 1}"
        advice = (
            f"lower {key('dataset.max_tokens')}/{key('dataset.batch_size')} (and raise "
            f"{key('optimization.update_freq')} to keep the batch size)"
        )
        if self.world_size > 1:
            raise OutOfMemoryError(
                f"out of GPU memory at {where} on rank {get_rank()}: with several ranks "
                f"a batch cannot be skipped; {advice}"
            ) from oom
        self.oom_skips += 1
        limit = self.cfg.optimization.max_oom_skips
        if self.oom_skips > limit:
            raise OutOfMemoryError(
                f"out of GPU memory at {where}, {self.oom_skips} times in this run "
                f"({setting('optimization.max_oom_skips', limit)}); {advice}"
            ) from oom
        logger.warning(
            f"out of GPU memory at {where}: skipped this update ({self.oom_skips} of at most {limit}); "
            f"{str(oom).splitlines()[0] if str(oom) else ''}"
        )
        return None

    def _nonfinite_loss(self, loss: float, sample: dict[str, Any]) -> None:
        """Skip the update (optimization.skip_nonfinite_loss) or stop, naming where it went wrong."""
        self.optimizer.zero_grad()
        if self.cfg.optimization.skip_nonfinite_loss:
            logger.warning(f"loss is {loss} at update {self.num_updates + 1}: skipping this update")
            return None
        if sample is None:  # this rank had only padding batches; another rank saw the non-finite loss
            raise NonFiniteLossError(f"loss is {loss} at update {self.num_updates + 1} (on another rank)")
        if self.sharded:  # a forward on this rank alone would wait for the others forever
            raise NonFiniteLossError(
                f"loss is {loss} at update {self.num_updates + 1}; try a lower learning rate, "
                f"{key('optimization.clip_norm')}, or {setting('optimization.skip_nonfinite_loss', True)}"
            )

        def forward():
            torch.manual_seed(self.cfg.common.seed + self.num_updates)  # the same dropout as the step
            with self.autocast():
                self.criterion(self.model, sample)

        self.model.train()
        culprit = first_nonfinite_module(self.model, forward)
        where = (
            f"the first non-finite output came from {culprit[0]} ({culprit[1]})"
            if culprit
            else "every module's output was finite, so the gradients or the loss itself overflowed"
        )
        raise NonFiniteLossError(
            f"loss is {loss} at update {self.num_updates + 1}: {where}; try a lower learning rate, "
            f"{key('optimization.clip_norm')}, or {setting('optimization.skip_nonfinite_loss', True)} to skip "
            f"such updates"
        )

    def valid_step(self, sample: dict[str, Any]) -> dict[str, float]:
        if not sample:
            if self.sharded and self._dummy_batch is not None:
                # FSDP's forward gathers weights from every rank: run one on a stand-in batch too.
                with torch.no_grad(), self.autocast():
                    self.task.valid_step(self._dummy_batch, self.model, self.criterion)
            return {}
        sample = move_to_device(sample, self.device)
        if self._dummy_batch is None:
            self._dummy_batch = sample
        with self.autocast():
            _, _, logging_output = self.task.valid_step(sample, self.model, self.criterion)
        return {k: float(v) for k, v in _to_floats(logging_output).items()}

    def log_valid_batch(self, logging_output: dict[str, float]) -> None:
        """A validation batch's logging output ({} for a padding batch) into the active aggregators.
        Every rank calls it for every batch: with several ranks the outputs are summed (or gathered)
        over them first."""
        summed = all_reduce_sums(logging_output) if self.criterion.logging_outputs_can_be_summed() else {}
        self.reduce_and_log(summed, [logging_output] if logging_output else [])

    def lr_step(self, epoch: int, val_loss: float | None = None) -> float:
        self.lr_scheduler.step(epoch, val_loss)
        return self.lr_scheduler.step_update(self.num_updates)

    def lr_step_begin_epoch(self, epoch: int) -> float:
        self.lr_scheduler.step_begin_epoch(epoch)
        return self.lr_scheduler.step_update(self.num_updates)

    # --- checkpoint state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint holds. Sharded (FSDP) runs leave model and optimizer out: every rank
        writes its shard of those with save_sharded_state."""
        return {
            "model": None if self.sharded else self.model.state_dict(),
            "last_optimizer_state": None
            if self.cfg.checkpoint.no_save_optimizer_state or self.sharded
            else self.optimizer.state_dict(),
            "lr_scheduler_state": self.lr_scheduler.state_dict(),
            "precision_state": self.optimizer.precision_state_dict(),
            "num_updates": self.num_updates,
        }

    def save_sharded_state(self, directory: str) -> None:
        """Every rank writes its shard of the model and optimizer state (a collective)."""
        keep_optimizer = not self.cfg.checkpoint.no_save_optimizer_state
        save_sharded(directory, self.model, self.optimizer.optimizer if keep_optimizer else None)

    def load_state_dict(
        self, state: dict[str, Any], reset_optimizer: bool = False, reset_lr_scheduler: bool = False
    ) -> None:
        """Restore from a checkpoint: a full one, or a sharded one (state["sharded_state"] names its
        directory) saved on any number of ranks, into a plain, DDP or FSDP model."""
        self.num_updates = int(state.get("num_updates", 0))
        self._build_optimizer()
        sharded_dir = state.get("sharded_state")
        optimizer_state = not reset_optimizer and (
            state.get("last_optimizer_state") is not None or bool(sharded_dir and state.get("sharded_optimizer"))
        )
        if sharded_dir:
            load_sharded(sharded_dir, self.model, self.optimizer.optimizer if optimizer_state else None)
        elif self.sharded:
            self._load_full_into_sharded(state, optimizer_state)
        else:
            self.model.load_state_dict(state["model"], strict=True)
            if optimizer_state:
                self.optimizer.load_state_dict(state["last_optimizer_state"])
        if optimizer_state:
            self.optimizer.load_precision_state_dict(state.get("precision_state", {}))
        if not reset_lr_scheduler and state.get("lr_scheduler_state") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler_state"])
        self.lr_scheduler.step_update(self.num_updates)

    def _load_full_into_sharded(self, state: dict[str, Any], optimizer_state: bool) -> None:
        """A checkpoint of a DDP or single-process run, resumed with FSDP."""
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            set_model_state_dict,
            set_optimizer_state_dict,
        )

        from fairseq_lite.distributed.fsdp import full_to_sharded_optimizer_state

        full = StateDictOptions(full_state_dict=True)
        set_model_state_dict(self.model, state["model"], options=full)
        if optimizer_state:
            keyed, fits = full_to_sharded_optimizer_state(state["last_optimizer_state"], self.model)
            if not fits:
                raise CheckpointError(
                    "the checkpoint's optimizer state does not match this model's parameters; "
                    f"resume with {setting('checkpoint.reset_optimizer', True)}"
                )
            set_optimizer_state_dict(self.model, self.optimizer.optimizer, keyed, options=full)


def _to_floats(values: dict[str, Any]) -> dict[str, float]:
    """Python numbers for a dict of numbers and device tensors, with at most one device sync."""
    tensors = [k for k, v in values.items() if torch.is_tensor(v)]
    if not tensors:
        return values
    read = torch.stack([values[k].float().reshape(()) for k in tensors]).tolist()
    return {**values, **dict(zip(tensors, read))}
