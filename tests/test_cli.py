"""The installed commands, as a user runs them: preprocess -> train (hydra and legacy) -> eval-lm,
a SIGKILLed run resumed by rerunning the same command, and one-line errors."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm_overrides

COMMANDS = ("fairseq-preprocess", "fairseq-train", "fairseq-hydra-train", "fairseq-eval-lm")


def command(name):
    path = shutil.which(name)
    assert path, f"{name} is not installed: run `pip install --no-build-isolation -e .` (scripts/setup.sh does)"
    return path


def run(args, cwd, check=True, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args[0]} exited {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def model_weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


@pytest.fixture(scope="module")
def data_bin(tiny_corpus, tmp_path_factory):
    dest = tmp_path_factory.mktemp("cli-data-bin")
    run(
        [
            command("fairseq-preprocess"),
            "--only-source",
            "--trainpref",
            str(tiny_corpus / "train.tokens"),
            "--validpref",
            str(tiny_corpus / "valid.tokens"),
            "--testpref",
            str(tiny_corpus / "test.tokens"),
            "--destdir",
            str(dest),
            "--workers",
            "2",
        ],
        cwd=tiny_corpus,
    )
    assert (dest / "dict.txt").is_file() and (dest / "train.bin").is_file() and (dest / "test.idx").is_file()
    return dest


def test_hydra_and_legacy_train_then_eval_lm(data_bin, tmp_path):
    hydra_dir, legacy_dir = tmp_path / "hydra", tmp_path / "legacy"
    run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(data_bin, hydra_dir, max_update=6),
            f"hydra.run.dir={tmp_path / 'outputs'}",
        ],
        cwd=tmp_path,
    )
    assert (tmp_path / "outputs" / ".hydra" / "config.yaml").is_file()
    run(
        [
            command("fairseq-train"),
            str(data_bin),
            "--task",
            "language_modeling",
            "--tokens-per-sample",
            "32",
            "--arch",
            "transformer_lm_gpt",
            "--decoder-layers",
            "1",
            "--decoder-embed-dim",
            "32",
            "--decoder-ffn-embed-dim",
            "64",
            "--decoder-attention-heads",
            "2",
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--lr-scheduler",
            "inverse_sqrt",
            "--warmup-updates",
            "4",
            "--max-update",
            "6",
            "--max-tokens",
            "256",
            "--num-workers",
            "0",
            "--save-dir",
            str(legacy_dir),
            "--log-format",
            "json",
            "--log-interval",
            "1",
        ],
        cwd=tmp_path,
    )
    hydra_ckpt = torch.load(hydra_dir / "checkpoint_last.pt", weights_only=True)
    legacy_ckpt = torch.load(legacy_dir / "checkpoint_last.pt", weights_only=True)
    assert legacy_ckpt["cfg"]["checkpoint"].pop("save_dir") == str(legacy_dir)
    assert hydra_ckpt["cfg"]["checkpoint"].pop("save_dir") == str(hydra_dir)
    # Apart from paths: a Hydra run also keeps tensorboard logs in its run directory.
    assert hydra_ckpt["cfg"]["common"].pop("tensorboard_logdir") == str(tmp_path / "outputs" / "tensorboard")
    assert legacy_ckpt["cfg"]["common"].pop("tensorboard_logdir") is None
    assert legacy_ckpt["cfg"] == hydra_ckpt["cfg"]
    # Same config and seed: the two commands train the very same weights.
    for key, value in hydra_ckpt["model"].items():
        assert torch.equal(value, legacy_ckpt["model"][key]), key

    out = run(
        [
            command("fairseq-eval-lm"),
            str(data_bin),
            "--path",
            str(hydra_dir / "checkpoint_best.pt"),
            "--gen-subset",
            "valid",
            "--num-workers",
            "0",
        ],
        cwd=tmp_path,
    ).stdout
    assert "Evaluated" in out and "tokens/s" in out and "Loss (base 2):" in out and "Perplexity:" in out


KILL_EXTRA = ["checkpoint.save_interval_updates=3", "model.decoder_layers=2"]


def kill_args(data_bin, save_dir):
    return [
        command("fairseq-hydra-train"),
        *tiny_lm_overrides(data_bin, save_dir, max_update=50, extra=KILL_EXTRA),
        f"hydra.run.dir={save_dir}/outputs",
    ]


@pytest.fixture(scope="module")
def uninterrupted(data_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    run(kill_args(data_bin, out), cwd=out)
    return model_weights(out / "checkpoint_last.pt")


# ~20 updates an epoch: early in epoch 1, mid epoch 1, right after epoch 1's end, epoch 2, epoch 3.
@pytest.mark.parametrize(
    "kill_after",
    ["checkpoint_1_3.pt", "checkpoint_*_12.pt", "checkpoint1.pt", "checkpoint_*_27.pt", "checkpoint_*_42.pt"],
)
def test_sigkill_then_rerun_resumes_to_identical_weights(data_bin, tmp_path, uninterrupted, kill_after):
    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(
        kill_args(data_bin, killed_dir),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    deadline = time.time() + 120
    # Once that checkpoint exists and there is a checkpoint_last to resume from, kill at once: the kill
    # lands wherever training is by then (between steps, in a step, or inside the next write).
    while not (list(killed_dir.glob(kill_after)) and (killed_dir / "checkpoint_last.pt").exists()):
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = torch.load(killed_dir / "checkpoint_last.pt", weights_only=True)
    assert 3 <= state["num_updates"] < 50, state["num_updates"]

    run(kill_args(data_bin, killed_dir), cwd=tmp_path)  # the same command again
    resumed = model_weights(killed_dir / "checkpoint_last.pt")
    for key, value in uninterrupted.items():
        assert torch.equal(value, resumed[key]), key
    assert not list(killed_dir.glob(".*.tmp*")), "a temporary checkpoint file was left behind"


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["fairseq-train", "{data}", "--arch", "transformer_lm_gtp", "--max-tokens", "256"],
            "unknown architecture 'transformer_lm_gtp'",
        ),
        (
            [
                "fairseq-train",
                "{tmp}/missing",
                "--task",
                "language_modeling",
                "--arch",
                "transformer_lm",
                "--max-tokens",
                "256",
            ],
            "does not exist",
        ),
        (
            [
                "fairseq-hydra-train",
                "task=language_modeling",
                "task.data={tmp}/missing",
                "model=transformer_lm",
                "dataset.max_tokens=256",
            ],
            "does not exist",
        ),
        (["fairseq-hydra-train", "task=language_modeling", "model=transformer_lm"], "task.data is required"),
        (["fairseq-eval-lm", "{data}", "--path", "{tmp}/nope.pt"], "checkpoint not found"),
        (
            ["fairseq-preprocess", "--only-source", "--trainpref", "{tmp}/nope.txt", "--destdir", "{tmp}/out"],
            "nope.txt",
        ),
    ],
)
def test_user_errors_are_one_line_with_nonzero_exit(data_bin, tmp_path, args, message):
    args = [command(args[0])] + [a.format(data=data_bin, tmp=tmp_path) for a in args[1:]]
    proc = run(args, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert len([line for line in proc.stderr.splitlines() if "error" in line.lower()]) == 1, proc.stderr


def test_bad_flag_value_is_an_argparse_error(data_bin, tmp_path):
    proc = run(
        [command("fairseq-train"), str(data_bin), "--arch", "transformer_lm", "--max-tokens", "abc"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 2 and "--max-tokens: invalid int value: 'abc'" in proc.stderr


def test_regular_install_finds_its_config_tree(tmp_path):
    """A non-editable install carries config/ inside the package, and commands compose from it."""
    root = Path(__file__).resolve().parent.parent
    target = tmp_path / "site"
    # Without the compiled kernels (FAIRSEQ_LITE_BUILD_EXT=0): this is about the config tree, and
    # compiling them again would take minutes.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-compile",
            "--target",
            str(target),
            str(root),
        ],
        cwd=tmp_path,
        timeout=600,
        check=True,
        env=dict(os.environ, FAIRSEQ_LITE_BUILD_EXT="0"),
    )
    code = (
        "import fairseq_lite, sys; from fairseq_lite.options.compose import bundled_config_dir, compose_config;"
        "d = bundled_config_dir(); assert d.startswith(sys.argv[1]), d;"
        "cfg = compose_config(['task=language_modeling', 'task.data=D', 'model=transformer_lm/transformer_lm_gpt']);"
        "print(fairseq_lite.__file__, d, cfg.model.decoder_embed_dim)"
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    out = subprocess.run(
        [sys.executable, "-c", code, str(target)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == "768" and str(target) in out.stdout.split()[0]


def test_sigterm_saves_a_checkpoint_and_the_rerun_finishes_identically(data_bin, tmp_path):
    extra = ["model.decoder_layers=2", "common.log_interval=1"]
    full_dir, stopped_dir = tmp_path / "full", tmp_path / "stopped"

    def args(d):
        return [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(data_bin, d, max_update=40, extra=extra),
            f"hydra.run.dir={d}/outputs",
        ]

    run(args(full_dir), cwd=tmp_path)

    proc = subprocess.Popen(
        args(stopped_dir),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    # Wait for training to be under way (a logged update), then ask it to stop as SLURM would.
    for line in proc.stdout:
        if '"num_updates": "3"' in line:
            break
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "stopped by SIGTERM after update" in stderr and "rerun the same command to resume" in stderr
    state = torch.load(stopped_dir / "checkpoint_last.pt", weights_only=True)
    assert 3 <= state["num_updates"] < 40

    run(args(stopped_dir), cwd=tmp_path)
    resumed = model_weights(stopped_dir / "checkpoint_last.pt")
    for key, value in model_weights(full_dir / "checkpoint_last.pt").items():
        assert torch.equal(value, resumed[key]), key
