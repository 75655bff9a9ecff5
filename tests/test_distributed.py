"""Data-parallel training on CPU with gloo: 2 ranks (torchrun or spawned by the command) take exactly the
steps of 1 rank with update_freq=2, and a rank that dies ends the whole job quickly."""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_lm_overrides
from test_cli import command, run

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")

# No dropout: the two layouts draw different dropout masks for the same batch, by design.
EXTRA = [
    "model.dropout=0",
    "model.attention_dropout=0",
    "common.cpu=true",
    "dataset.max_valid_steps=2",
    "dataset.max_tokens=null",
    "dataset.batch_size=4",
    "dataset.required_batch_size_multiple=1",
]


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_close_weights(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)


@pytest.fixture(scope="module")
def one_rank_update_freq_2(tiny_data_bin, tmp_path_factory):
    out = tmp_path_factory.mktemp("one-rank")
    run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(
                tiny_data_bin, out / "ckpt", max_update=8, extra=EXTRA + ["optimization.update_freq=[2]"]
            ),
            f"hydra.run.dir={out}",
        ],
        cwd=out,
    )
    return weights(out / "ckpt" / "checkpoint_last.pt")


def test_two_spawned_ranks_equal_one_rank_with_update_freq_2(tiny_data_bin, tmp_path, one_rank_update_freq_2):
    proc = run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=8, extra=EXTRA),
            "distributed_training.distributed_world_size=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert "spawning 2 local workers" in proc.stdout and '"num_updates": "8"' in proc.stdout
    assert_close_weights(one_rank_update_freq_2, weights(tmp_path / "ckpt" / "checkpoint_last.pt"))
    assert "valid_loss" in (tmp_path / "train.log").read_text()  # rank 0 logs into the run's log


def torchrun(nproc, args):
    # --no-python: the console script is run as the executable it is (on some setups, a shell shim)
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--no-python",
        "--nproc_per_node",
        str(nproc),
        command(args[0]),
        *args[1:],
    ]


def test_two_torchrun_ranks_equal_one_rank_with_update_freq_2(tiny_data_bin, tmp_path, one_rank_update_freq_2):
    run(
        torchrun(
            2,
            [
                "fairseq-hydra-train",
                *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=8, extra=EXTRA),
                f"hydra.run.dir={tmp_path}",
            ],
        ),
        cwd=tmp_path,
    )
    assert_close_weights(one_rank_update_freq_2, weights(tmp_path / "ckpt" / "checkpoint_last.pt"))


def test_a_dead_rank_ends_the_job_quickly(tiny_data_bin, tmp_path):
    args = torchrun(
        2,
        [
            "fairseq-hydra-train",
            *tiny_lm_overrides(
                tiny_data_bin,
                tmp_path / "ckpt",
                max_update=100000,
                extra=EXTRA + ["distributed_training.heartbeat_timeout=30"],
            ),
            f"hydra.run.dir={tmp_path}",
        ],
    )
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,
    )
    try:
        for line in proc.stdout:  # wait until both ranks train
            if '"num_updates": "3"' in line:
                break
        workers = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        assert len(workers) == 2, workers
        start = time.time()
        os.kill(int(workers[1]), signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode != 0
        assert time.time() - start < 60
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def full_weights(path):
    """The full weights of a checkpoint, gathered from its shards when FSDP wrote it."""
    from fairseq_lite.checkpoint import load_model_for_inference

    return load_model_for_inference(str(path))[2].state_dict()


def test_fully_sharded_equals_one_rank_and_resumes_on_another_world_size(
    tiny_data_bin, tmp_path, one_rank_update_freq_2
):
    fsdp = EXTRA + ["distributed_training.ddp_backend=fully_sharded"]
    # 2 FSDP ranks, stopping after 4 of the 8 updates: the checkpoint is sharded, one file per rank.
    proc = run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=4, extra=fsdp),
            "distributed_training.distributed_world_size=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert "fully_sharded" in proc.stdout
    last = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)
    assert last["model"] is None and last["sharded_state"].startswith("shards")
    shards = tmp_path / "ckpt" / last["sharded_state"]
    assert sorted(p.name for p in shards.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    # Each save wrote a new shard directory; only those a checkpoint file names are kept.
    named = {torch.load(p, weights_only=True)["sharded_state"] for p in (tmp_path / "ckpt").glob("checkpoint*.pt")}
    assert {f"shards/{p.name}" for p in (tmp_path / "ckpt" / "shards").iterdir()} == named

    # Resume on 1 rank with update_freq=2: the same global batches, so the same weights as never stopping.
    run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(
                tiny_data_bin, tmp_path / "ckpt", max_update=8, extra=fsdp + ["optimization.update_freq=[2]"]
            ),
            f"hydra.run.dir={tmp_path}/resumed",
        ],
        cwd=tmp_path,
    )
    assert_close_weights(one_rank_update_freq_2, full_weights(tmp_path / "ckpt" / "checkpoint_last.pt"))


def test_fully_sharded_resumes_from_its_sharded_checkpoint(tiny_data_bin, tmp_path, one_rank_update_freq_2):
    fsdp = EXTRA + ["distributed_training.ddp_backend=fully_sharded", "distributed_training.distributed_world_size=2"]
    for max_update in (3, 8):  # stop after 3 updates, then the same command resumes to 8 on 2 FSDP ranks
        run(
            [
                command("fairseq-hydra-train"),
                *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=max_update, extra=fsdp),
                f"hydra.run.dir={tmp_path}/{max_update}",
            ],
            cwd=tmp_path,
        )
    assert "loaded checkpoint" in (tmp_path / "8" / "train.log").read_text()
    assert_close_weights(one_rank_update_freq_2, full_weights(tmp_path / "ckpt" / "checkpoint_last.pt"))


def test_ddp_checkpoint_resumes_on_one_rank(tiny_data_bin, tmp_path, one_rank_update_freq_2):
    run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=5, extra=EXTRA),
            "distributed_training.distributed_world_size=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(
                tiny_data_bin, tmp_path / "ckpt", max_update=8, extra=EXTRA + ["optimization.update_freq=[2]"]
            ),
            f"hydra.run.dir={tmp_path}/resumed",
        ],
        cwd=tmp_path,
    )
    assert_close_weights(one_rank_update_freq_2, weights(tmp_path / "ckpt" / "checkpoint_last.pt"))


def test_ctrl_c_with_spawned_workers_saves_and_says_so(tiny_data_bin, tmp_path):
    """Ctrl-C reaches the whole process group: the workers finish the update, save, and the command
    ends with one line and exit 130 (no traceback from the workers), and a rerun resumes."""
    args = [
        command("fairseq-hydra-train"),
        *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=100000, extra=EXTRA),
        "distributed_training.distributed_world_size=2",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,
    )
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if '"num_updates": "3"' in line:
                break
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        rest, _ = proc.communicate(timeout=120)
        output = "".join(lines) + rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, output[-3000:]
    assert "stopped by SIGINT" in output and "rerun the same command to resume" in output
    assert "Traceback" not in output and "ProcessRaisedException" not in output, output[-3000:]
    saved = torch.load(tmp_path / "ckpt" / "checkpoint_last.pt", weights_only=True)["num_updates"]
    assert saved >= 3
    resumed = run(
        [*args[:-1], f"hydra.run.dir={tmp_path}/resumed", "optimization.max_update=" + str(saved + 2)], cwd=tmp_path
    )
    assert f'"num_updates": "{saved + 2}"' in resumed.stdout


def test_a_user_error_in_spawned_workers_is_one_line(tiny_data_bin, tmp_path):
    """A mistake only the workers can see (fp16 on a CPU) ends the command with its one-line message and
    exit 1, not spawn's traceback of each worker."""
    proc = run(
        [
            command("fairseq-hydra-train"),
            *tiny_lm_overrides(tiny_data_bin, tmp_path / "ckpt", max_update=4, extra=EXTRA + ["common.fp16=true"]),
            "distributed_training.distributed_world_size=2",
            f"hydra.run.dir={tmp_path}",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 1
    assert "error: common.fp16=true needs a CUDA GPU" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "ProcessRaisedException" not in proc.stderr
