"""An lr schedule given as a `_target_` node (a torch.optim.lr_scheduler class, e.g. OneCycleLR), called
with the torch optimizer as its first argument and stepped once per update; ReduceLROnPlateau is stepped
with the validation loss at each epoch's end instead. Its state_dict is saved in checkpoints."""

from typing import Any

import torch

from fairseq_lite.errors import ConfigError, key
from fairseq_lite.optim.lr_scheduler.fairseq_lr_scheduler import FairseqLRScheduler
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, TargetBuilder
from fairseq_lite.targets import TARGET_KEY, instantiate_target

SCHEDULES = (torch.optim.lr_scheduler.LRScheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


class TorchLRScheduler(FairseqLRScheduler):
    def __init__(self, cfg: Any, optimizer: Any):
        self.cfg = cfg
        self.optimizer = optimizer
        self.best: float | None = None
        self.scheduler = instantiate_target(cfg, "lr_scheduler", optimizer.optimizer)
        if not isinstance(self.scheduler, SCHEDULES):
            raise ConfigError(
                f"{key('lr_scheduler.' + TARGET_KEY)}={cfg[TARGET_KEY]} made a {type(self.scheduler).__name__}, "
                "not a torch.optim.lr_scheduler schedule"
            )
        self.on_plateau = isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)

    def step_update(self, num_updates: int) -> float:
        # Its step count is its own last_epoch (saved with it), so building (0) and resuming (n) step nothing.
        if not self.on_plateau:
            while self.scheduler.last_epoch < num_updates:
                self.scheduler.step()
        return self.optimizer.get_lr()

    def step(self, epoch: int, val_loss: float | None = None) -> float:
        super().step(epoch, val_loss)
        if self.on_plateau and val_loss is not None:
            self.scheduler.step(val_loss)
        return self.optimizer.get_lr()

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "torch": self.scheduler.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        if "torch" in state_dict:
            self.scheduler.load_state_dict(state_dict["torch"])


LR_SCHEDULER_REGISTRY.register_target_builder(TargetBuilder(TorchLRScheduler, positional=1))
