"""The one place a training run is assembled: task -> datasets to validate on -> model -> criterion ->
Trainer (which places the model and builds the optimizer). The commands, the benchmarks and the tests
all build their trainer here."""

import logging
import random
from typing import Any

import numpy as np
import torch

from fairseq_lite.registry import TASK_REGISTRY
from fairseq_lite.training.step import Trainer

logger = logging.getLogger(__name__)


def valid_subsets(cfg: Any) -> list[str]:
    """The splits validation runs on (none when dataset.disable_validation is set)."""
    if cfg.dataset.disable_validation:
        return []
    return [s for s in cfg.dataset.valid_subset.split(",") if s]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_trainer(cfg: Any) -> Trainer:
    """A Trainer for `cfg`, with the validation splits loaded (the training split is loaded per epoch
    by the loop). The model's initial weights depend only on common.seed."""
    seed_everything(cfg.common.seed)
    task = TASK_REGISTRY.build(cfg.task)
    for subset in valid_subsets(cfg):
        task.load_dataset(subset, combine=False, epoch=1)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    num_params = sum(p.numel() for p in model.parameters())
    num_trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    logger.info(f"task: {type(task).__name__}, model: {type(model).__name__}, criterion: {type(criterion).__name__}")
    logger.info(f"num. model params: {num_params:,} (num. trained: {num_trained:,})")
    trainer = Trainer(cfg, task, model, criterion)
    logger.info(
        f"training on {trainer.device} ({trainer.precision_mode}); max tokens per batch = "
        f"{cfg.dataset.max_tokens} and max sentences per batch = {cfg.dataset.batch_size}"
    )
    return trainer
