"""The loss of an adaptive softmax (`--criterion adaptive_loss`, with `model.adaptive_softmax_cutoff`).

The head scores every position (its targets: the word itself, or its tail cluster), each tail cluster
only the positions whose target lies in it; the loss is the sum of their cross entropies, which is
-log p(target) under the adaptive softmax, without ever building the [tokens, vocabulary] scores.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from omegaconf import II
from torch import Tensor

from fairseq_lite.criterions.cross_entropy import CrossEntropyCriterion
from fairseq_lite.dataclass.base import FairseqDataclass
from fairseq_lite.errors import ConfigError, key, setting
from fairseq_lite.registry import register_criterion

NO_ADAPTIVE_SOFTMAX = (
    f"criterion adaptive_loss needs a model with an adaptive softmax: set {key('model.adaptive_softmax_cutoff')} "
    f"(e.g. '20000,60000'), or use criterion cross_entropy"
)


@dataclass
class AdaptiveLossConfig(FairseqDataclass):
    sentence_avg: bool = II("optimization.sentence_avg")
    ddp_backend: str = II("distributed_training.ddp_backend")
    distributed_world_size: int = II("distributed_training.distributed_world_size")
    find_unused_parameters: bool = II("distributed_training.find_unused_parameters")


@register_criterion("adaptive_loss", dataclass=AdaptiveLossConfig)
class AdaptiveLoss(CrossEntropyCriterion):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        # A batch leaves some tail clusters without targets, so their weights get no gradient: DDP must
        # be told to expect that (fairseq refuses PyTorch DDP here; telling it is enough).
        ddp = str(cfg.ddp_backend) in ("pytorch_ddp", "c10d")
        if ddp and cfg.distributed_world_size > 1 and not cfg.find_unused_parameters:
            raise ConfigError(
                f"criterion adaptive_loss with {setting('distributed_training.ddp_backend', cfg.ddp_backend)} needs "
                f"{setting('distributed_training.find_unused_parameters', True)}: a batch leaves some tail clusters "
                f"of the adaptive softmax without targets"
            )

    @classmethod
    def check_model_config(cls, cfg: Any, model_cfg: Any) -> None:
        if model_cfg.get("adaptive_softmax_cutoff") is None:
            raise ConfigError(NO_ADAPTIVE_SOFTMAX)

    def compute_loss(
        self, model: nn.Module, net_output: Any, sample: dict[str, Any], reduce: bool = True
    ) -> tuple[Tensor, Tensor]:
        adaptive_softmax = getattr(getattr(model, "decoder", None), "adaptive_softmax", None)
        if adaptive_softmax is None:
            raise ConfigError(NO_ADAPTIVE_SOFTMAX)
        target = model.get_targets(sample, net_output).reshape(-1)
        scores, targets = adaptive_softmax(net_output[0], target)
        if not reduce:
            # Per position: the head's term everywhere, each cluster's where its targets are.
            loss = F.cross_entropy(scores[0].float(), targets[0], ignore_index=self.padding_idx, reduction="none")
            _, rows = adaptive_softmax.adapt_target(target)
            for part, idx in enumerate(rows, start=1):
                if idx is not None:
                    loss = loss.index_add(
                        0, idx, F.cross_entropy(scores[part].float(), targets[part], reduction="none")
                    )
            return loss, loss
        loss = scores[0].new_zeros((), dtype=torch.float32)
        for part_scores, part_target in zip(scores, targets):
            if part_target is not None:
                loss = loss + F.cross_entropy(
                    part_scores.float(), part_target, ignore_index=self.padding_idx, reduction="sum"
                )
        return loss, loss
