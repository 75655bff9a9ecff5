"""A training run, in the order it happens:

checks.py   every check of the config, before anything is built or printed
launch.py   one process, torchrun's workers, or spawned local workers (and hangs ending the job)
build.py    build_trainer(cfg): task, datasets, model, criterion -> Trainer
loop.py     train(cfg): resume, epochs of updates, validation, checkpoints, stopping
step.py     Trainer: one update from update_freq micro-batches; the state a checkpoint holds
device.py   where the model trains: device, dtype, DDP or FSDP2, torch.compile
signals.py  SIGTERM/Ctrl-C: finish the update, save, stop
"""

from fairseq_lite.training.build import build_trainer
from fairseq_lite.training.checks import check_training_config
from fairseq_lite.training.launch import call_main
from fairseq_lite.training.loop import TrainingLoop, train
from fairseq_lite.training.signals import GracefulStop
from fairseq_lite.training.step import Trainer

__all__ = ["GracefulStop", "Trainer", "TrainingLoop", "build_trainer", "call_main", "check_training_config", "train"]
