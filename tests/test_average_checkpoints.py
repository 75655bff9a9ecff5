"""fairseq's scripts/average_checkpoints.py: the last N epoch checkpoints averaged into a new one that the
inference commands read, with fairseq's flags; mistakes are one line and nothing is written."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm_overrides
from test_cli import command, run

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "average_checkpoints.py"


@pytest.fixture(scope="module")
def three_epochs(tiny_data_bin, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("epochs")
    overrides = tiny_lm_overrides(tiny_data_bin, save_dir, max_update=1000, extra=["optimization.max_epoch=3"])
    train(compose_config(overrides))
    assert all((save_dir / f"checkpoint{e}.pt").exists() for e in (1, 2, 3))
    return save_dir


def test_the_last_epochs_are_averaged_as_fairseqs_script_does(three_epochs, tiny_data_bin, tmp_path):
    out = tmp_path / "avg.pt"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--inputs", str(three_epochs), "--num-epoch-checkpoints", "2"]
        + ["--output", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Finished writing averaged checkpoint to" in proc.stdout
    averaged = load_checkpoint_to_cpu(str(out))
    second, third = (load_checkpoint_to_cpu(str(three_epochs / f"checkpoint{e}.pt")) for e in (2, 3))
    for name, weight in averaged["model"].items():
        torch.testing.assert_close(weight, (second["model"][name] + third["model"][name]) / 2)
    # the newest checkpoint's state around the weights, as fairseq
    assert averaged["num_updates"] == third["num_updates"] and averaged["cfg"] == third["cfg"]
    evaluated = run(
        [command("fairseq-eval-lm"), str(tiny_data_bin), "--path", str(out), "--tokens-per-sample", "32"]
        + ["--max-tokens", "256", "--num-workers", "0"],
        cwd=tmp_path,
    )
    assert "Perplexity" in evaluated.stdout + evaluated.stderr


def test_explicit_inputs_and_mistakes(three_epochs, tmp_path):
    out = tmp_path / "two.pt"
    inputs = [str(three_epochs / "checkpoint1.pt"), str(three_epochs / "checkpoint3.pt")]
    run([command("fairseq-average-checkpoints"), "--inputs", *inputs, "--output", str(out)], cwd=tmp_path)
    first, third = (load_checkpoint_to_cpu(p) for p in inputs)
    name = next(iter(first["model"]))
    torch.testing.assert_close(
        load_checkpoint_to_cpu(str(out))["model"][name], (first["model"][name] + third["model"][name]) / 2
    )
    spare = ["--output", str(tmp_path / "x.pt")]
    for flags, message in (
        (["--inputs", str(three_epochs), "--num-epoch-checkpoints", "5", *spare], "found 3 epoch checkpoints in"),
        (["--inputs", inputs[0], "--checkpoint-upper-bound", "2", *spare], "--checkpoint-upper-bound needs"),
        (["--inputs", inputs[0], "--output", inputs[0]], "is one of the checkpoints averaged"),
    ):
        bad = run([command("fairseq-average-checkpoints"), *flags], cwd=tmp_path, check=False)
        assert bad.returncode == 1 and message in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.pt").exists()
