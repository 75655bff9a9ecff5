"""The task: owns the dictionaries and datasets, builds model and criterion, and runs one step."""

import argparse
import logging
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch

from fairseq_lite.criterions.fairseq_criterion import sum_logs
from fairseq_lite.data import data_utils
from fairseq_lite.data.iterators import EpochBatchIterator
from fairseq_lite.data.language_pair_dataset import LanguagePairDataset
from fairseq_lite.dataclass.utils import add_registered_args
from fairseq_lite.errors import DataError, key
from fairseq_lite.logging import metrics
from fairseq_lite.registry import CRITERION_REGISTRY, MODEL_REGISTRY

logger = logging.getLogger(__name__)


class FairseqTask:
    @classmethod
    def add_args(cls, parser: Any) -> None:
        """fairseq's: the flags of the task's config, for a subclass's own add_args to extend."""
        add_registered_args(cls, parser)

    def __init__(self, cfg):
        self.cfg = cfg
        if isinstance(cfg, argparse.Namespace):
            self.args = cfg  # a subclass in the add_args style reads self.args, as in fairseq
        self.datasets: dict[str, Any] = {}
        self._epoch_iterators: dict[int, EpochBatchIterator] = {}

    # --- checks before a run: nothing is built, a mistake is one line ----------------------------
    @classmethod
    def check_config(cls, cfg) -> None:
        """Reject task settings this task cannot run with (a one-line ConfigError)."""

    @classmethod
    def check_data(cls, cfg, train_subset: str | None, valid_subsets: Sequence[str] = ()) -> None:
        """Check that the data `cfg` points at is there and well-formed (dictionaries, and the .bin/.idx
        of each split to be read), raising a one-line DataError; it reads headers, not the data."""

    @classmethod
    def validation_metrics(cls, cfg, criterion_metrics: list[str]) -> list[str]:
        """What validation reports (the criterion's statistics, plus the task's own, like BLEU)."""
        return criterion_metrics

    @classmethod
    def build_task(cls, cfg, **kwargs):
        return cls.setup_task(cfg, **kwargs)

    @classmethod
    def setup_task(cls, cfg, **kwargs):
        return cls(cfg, **kwargs)

    # --- data ---------------------------------------------------------------------------------
    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        raise NotImplementedError

    def dataset(self, split: str):
        if split not in self.datasets:
            raise DataError(f"dataset split '{split}' is not loaded (loaded: {', '.join(self.datasets) or 'none'})")
        return self.datasets[split]

    def max_positions(self) -> int | None:
        return None

    @property
    def source_dictionary(self):
        raise NotImplementedError

    @property
    def target_dictionary(self):
        raise NotImplementedError

    def get_batch_iterator(
        self,
        dataset,
        max_tokens: int | None = None,
        max_sentences: int | None = None,
        max_positions: int | None = None,
        ignore_invalid_inputs: bool = False,
        required_batch_size_multiple: int = 1,
        seed: int = 1,
        num_shards: int = 1,
        shard_id: int = 0,
        num_workers: int = 0,
        epoch: int = 1,
        disable_iterator_cache: bool = False,
        skip_remainder_batch: bool = False,
        data_buffer_size: int = 0,
        pin_memory: bool = False,
    ) -> EpochBatchIterator:
        """Batches of `dataset` in an order that depends only on (seed, epoch), for this shard."""
        cacheable = not disable_iterator_cache and getattr(dataset, "can_reuse_epoch_itr_across_epochs", False)
        if cacheable and id(dataset) in self._epoch_iterators:
            return self._epoch_iterators[id(dataset)]
        if max_tokens is None and max_sentences is None:
            raise DataError(
                "set dataset.max_tokens (--max-tokens) or dataset.batch_size (--batch-size) "
                "to say how large a batch may be"
            )
        dataset.set_epoch(epoch)
        with data_utils.numpy_seed(seed):
            indices = dataset.ordered_indices()
        if max_positions is not None:
            indices = self.filter_indices_by_size(indices, dataset, max_positions, ignore_invalid_inputs)
        batches = dataset.batch_by_size(
            indices,
            max_tokens=max_tokens,
            max_sentences=max_sentences,
            required_batch_size_multiple=required_batch_size_multiple,
        )
        iterator = EpochBatchIterator(
            dataset=dataset,
            collate_fn=dataset.collater,
            batch_sampler=batches,
            seed=seed,
            num_shards=num_shards,
            shard_id=shard_id,
            num_workers=num_workers,
            epoch=epoch,
            buffer_size=data_buffer_size,
            pin_memory=pin_memory,
            skip_remainder_batch=skip_remainder_batch,
        )
        if cacheable:
            self._epoch_iterators[id(dataset)] = iterator
        return iterator

    def filter_indices_by_size(self, indices, dataset, max_positions, ignore_invalid_inputs=False):
        indices, ignored = dataset.filter_indices_by_size(indices, max_positions)
        if len(ignored) > 0:
            if not ignore_invalid_inputs:
                # a dataset of several (a round-robin zip of language pairs) says which of its parts were too long
                what = getattr(dataset, "describe_ignored", None)
                example = what() if what else f"e.g. sample #{ignored[0]} (size {dataset.size(ignored[0])})"
                count = "some" if what else str(len(ignored))
                raise DataError(
                    f"{count} samples are longer than max_positions={max_positions}, {example}; skip them with "
                    f"{key('dataset.skip_invalid_size_inputs_valid_test')}"
                )
            logger.warning(
                f"{len(ignored)} samples have invalid sizes and will be skipped, "
                f"max_positions={max_positions}, first few sample ids={list(ignored[:10])}"
            )
        return indices

    # --- model and criterion --------------------------------------------------------------------
    def build_model(self, model_cfg):
        return MODEL_REGISTRY.build(model_cfg, self)

    def build_criterion(self, criterion_cfg):
        return CRITERION_REGISTRY.build(criterion_cfg, self)

    # --- steps ----------------------------------------------------------------------------------
    def train_step(
        self, sample, model, criterion, optimizer, update_num: int, ignore_grad: bool = False
    ) -> tuple[torch.Tensor, int, dict[str, Any]]:
        """Forward and backward of one micro-batch; the trainer steps the optimizer."""
        model.train()
        # The trainer's optimizer knows the run's precision (a bare FairseqOptimizer: fp32).
        with getattr(optimizer, "autocast", nullcontext)():
            loss, sample_size, logging_output = criterion(model, sample)
        if ignore_grad:
            loss = loss * 0
        optimizer.backward(loss)
        return loss, sample_size, logging_output

    def valid_step(self, sample, model, criterion):
        model.eval()
        with torch.no_grad():
            return criterion(model, sample)

    # --- generation (fairseq's hooks: a task or plugin may override either) ----------------------
    def build_generator(self, models, args, seq_gen_cls=None, extra_gen_cls_kwargs=None, **kwargs: Any):
        """The SequenceGenerator (or SequenceScorer) fairseq-generate and -interactive decode with: `args` are
        the generation settings; `extra_gen_cls_kwargs` go to the generator (e.g. symbols_to_strip_from_output)."""
        from fairseq_lite.generation import build_generator

        return build_generator(self, models, args, seq_gen_cls=seq_gen_cls, **(extra_gen_cls_kwargs or {}), **kwargs)

    def build_dataset_for_inference(self, src_tokens, src_lengths, **kwargs):
        """The dataset fairseq-interactive batches its lines with: source sentences, padded as the task pads
        them (a task whose batches carry more overrides it, as the multilingual ones do)."""
        left_pad = getattr(self.cfg, "left_pad_source", True)
        if isinstance(left_pad, str):  # a legacy task's flag, parsed by fairseq as a string ("True"/"False")
            left_pad = left_pad.strip().lower() in ("true", "1")
        return LanguagePairDataset(
            src_tokens, src_lengths, self.source_dictionary, tgt_dict=self.target_dictionary, left_pad_source=left_pad
        )

    def inference_step(self, generator, models, sample, prefix_tokens=None, constraints=None):
        """One batch's hypotheses, best first per sentence."""
        from fairseq_lite.generation import inference_step

        with torch.no_grad():
            return inference_step(generator, self, sample, prefix_tokens=prefix_tokens, constraints=constraints)

    def reduce_metrics(self, logging_outputs: list[dict[str, Any]], criterion) -> None:
        """Log an update's (or a validation batch's) statistics, as fairseq's task does: words and
        sentences per batch ("wpb", "bsz"), words per second ("wps"), then the criterion's."""
        if any("ntokens" in log for log in logging_outputs):
            ntokens = sum_logs(logging_outputs, "ntokens")
            metrics.log_scalar("wpb", ntokens, priority=180, round=1)
            metrics.log_speed("wps", ntokens, priority=90, round=1)
        if any("nsentences" in log for log in logging_outputs):
            metrics.log_scalar("bsz", sum_logs(logging_outputs, "nsentences"), priority=190, round=1)
        criterion.__class__.reduce_metrics(logging_outputs)

    def begin_epoch(self, epoch: int, model) -> None:
        pass


class LegacyFairseqTask(FairseqTask):
    """fairseq's task of the older style: flags from `add_args(parser)`, built with the flat `args`
    Namespace (dataclass/legacy.py), kept as `self.args` (and `self.cfg`, for the base class)."""

    def __init__(self, args):
        super().__init__(args)
        self.args = args

    @classmethod
    def setup_task(cls, args, **kwargs):
        return cls(args, **kwargs)
