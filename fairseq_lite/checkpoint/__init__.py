"""Checkpoint files: reading and writing them (io), fairseq's names and retention (names), a training
run's saves and resumes (manager), models rebuilt for inference (inference), and checkpoints written by
fairseq 0.12.2 (fairseq)."""

from fairseq_lite.checkpoint.inference import load_for_command, load_model_for_inference
from fairseq_lite.checkpoint.io import load_checkpoint_to_cpu, torch_load_weights_only
from fairseq_lite.checkpoint.manager import CheckpointManager

__all__ = [
    "CheckpointManager",
    "load_checkpoint_to_cpu",
    "load_for_command",
    "load_model_for_inference",
    "torch_load_weights_only",
]
