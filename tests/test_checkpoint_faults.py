"""What a week-long run meets, end to end: a disk that fills up during a save, a checkpoint_last.pt cut
short by a crash, and a rank that hangs instead of dying under torchrun. In each case nothing the run
made is lost, the user gets one line, and a failed run exits non-zero."""

import errno
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import tiny_lm_overrides
from test_cli import command
from test_distributed import EXTRA, torchrun

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

LEGACY_TINY = [
    "--task",
    "language_modeling",
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
    "--tokens-per-sample",
    "32",
    "--max-tokens",
    "256",
    "--num-workers",
    "0",
    "--optimizer",
    "adam",
    "--lr",
    "0.003",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "4",
    "--log-format",
    "json",
]


def run(data, save_dir, max_update, extra=()):
    return train(compose_config(tiny_lm_overrides(data, save_dir, max_update, extra)))


def legacy(monkeypatch, capsys, args):
    """fairseq-train in this process: (exit code, stderr lines)."""
    from fairseq_cli.train import cli_main

    monkeypatch.setattr(sys, "argv", ["fairseq-train", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli_main()
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def updates_in(path):
    return load_checkpoint_to_cpu(str(path))["num_updates"]


def same_weights(a, b):
    a, b = load_checkpoint_to_cpu(str(a))["model"], load_checkpoint_to_cpu(str(b))["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def temp_files(directory):
    return [p.name for p in directory.iterdir() if ".tmp" in p.name]


# --- a full disk -----------------------------------------------------------------------------------


def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint(tiny_data_bin, tmp_path, monkeypatch, capsys):
    from fairseq_lite import file_io

    ckpt = tmp_path / "ckpt"
    run(tiny_data_bin, ckpt, max_update=4)
    shutil.copy(ckpt / "checkpoint_last.pt", tmp_path / "before.pt")
    shutil.copy(ckpt / "checkpoint_best.pt", tmp_path / "best_before.pt")
    size = (ckpt / "checkpoint_last.pt").stat().st_size

    real_write = file_io.AtomicFile.write

    def write_until_full(self, data):  # what write(2) does on a full disk, after a first megabyte fits
        self.written = getattr(self, "written", 0) + len(data)
        if self.written > 1 << 20:
            return self._guard(_raise_enospc)
        return real_write(self, data)

    monkeypatch.setattr(file_io.AtomicFile, "write", write_until_full)
    code, err = legacy(
        monkeypatch, capsys, [str(tiny_data_bin), *LEGACY_TINY, "--max-update", "8", "--save-dir", str(ckpt)]
    )
    assert code == 1 and "Traceback" not in "\n".join(err)
    # The save at update 8 writes checkpoint_best.pt first (validation improved), then copies it.
    m = re.fullmatch(
        rf"fairseq-train: error: no space left on the device to write {re.escape(str(ckpt))}/checkpoint_best\.pt: "
        r"it needs about ([\d.]+) MB and .* are free; the previous checkpoint_best\.pt \(if any\) is unchanged\. "
        r"Free some space or write elsewhere",
        err[-1],
    )
    assert m, err[-1]
    assert size / 2 < float(m.group(1)) * 2**20 < size * 2  # the estimate is the checkpoint's size
    assert (
        same_weights(ckpt / "checkpoint_last.pt", tmp_path / "before.pt")
        and updates_in(ckpt / "checkpoint_last.pt") == 4
    )
    assert same_weights(ckpt / "checkpoint_best.pt", tmp_path / "best_before.pt")
    assert temp_files(ckpt) == []


def _raise_enospc():
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _can_mount_tmpfs():
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs -o size=1m tmpfs $d"], capture_output=True
    )
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="cannot mount a tmpfs in a user namespace here")
def test_a_real_full_tmpfs_stops_the_run_with_one_line(tiny_data_bin, tmp_path):
    """On a 3.5 MB tmpfs (three ~1.1 MB checkpoints) with every update saved and kept, a save runs out of
    space: the run stops with one line, and the checkpoint_last.pt it leaves loads (inside the same
    mount namespace, where the tmpfs lives)."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    train_cmd = [
        command("fairseq-train"),
        str(tiny_data_bin),
        *LEGACY_TINY,
        "--max-update",
        "50",
        "--save-dir",
        str(ckpt),
        "--save-interval-updates",
        "1",
        "--disable-validation",
    ]
    check = (
        f"{sys.executable} -c \"import torch; s = torch.load('{ckpt}/checkpoint_last.pt', weights_only=True); "
        f"print('last:', s['num_updates'])\""
    )
    script = (
        f"mount -t tmpfs -o size=3500k tmpfs {ckpt} && "
        f"{' '.join(train_cmd)}; echo exit=$?; {check}; ls -a {ckpt} | tr '\\n' ' '"
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert "exit=1" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("fairseq-train: error:")]
    assert len(errors) == 1 and "no space left on the device to write" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = int(re.search(r"last: (\d+)", proc.stdout).group(1))
    assert last >= 1  # the previous checkpoint_last.pt loads
    assert ".tmp" not in proc.stdout.splitlines()[-1]  # no temp file left on the tmpfs


# --- a checkpoint_last.pt cut short ------------------------------------------------------------------


def test_a_truncated_checkpoint_last_resumes_from_the_newest_that_loads(tiny_data_bin, tmp_path, caplog):
    every_4 = ["checkpoint.save_interval_updates=4"]
    run(tiny_data_bin, tmp_path / "straight", max_update=12, extra=every_4)
    ckpt = tmp_path / "ckpt"
    run(tiny_data_bin, ckpt, max_update=9, extra=every_4)  # checkpoint_1_4, checkpoint_1_8 and _last @ 9
    (ckpt / "checkpoint_best.pt").unlink()  # (a copy of one of those: out of the way, the choice is plain)
    last = ckpt / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a crash while copying it

    caplog.set_level("INFO")
    run(tiny_data_bin, ckpt, max_update=12, extra=every_4)
    said = [r.getMessage() for r in caplog.records if "resuming from" in r.getMessage()]
    assert len(said) == 1 and f"resuming from {ckpt}/checkpoint_1_8.pt instead (epoch 1 @ 8 updates)" in said[0]
    assert said[0].startswith(f"cannot read checkpoint {last}")
    assert updates_in(last) == 12
    assert same_weights(last, tmp_path / "straight" / "checkpoint_last.pt")  # exact resume from update 8


def test_no_checkpoint_that_loads_is_one_line_and_touches_nothing(tiny_data_bin, tmp_path, monkeypatch, capsys):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "checkpoint_last.pt").write_bytes(b"PK\x03\x04 cut short")
    before = sorted((p.name, p.read_bytes()) for p in ckpt.iterdir())
    code, err = legacy(
        monkeypatch, capsys, [str(tiny_data_bin), *LEGACY_TINY, "--max-update", "4", "--save-dir", str(ckpt)]
    )
    assert code == 1 and len([line for line in err if "error:" in line]) == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith(f"fairseq-train: error: cannot read checkpoint {ckpt}/checkpoint_last.pt: ")
    assert err[-1].endswith(
        f"and no other checkpoint in {ckpt} can be read: move {ckpt}/checkpoint_last.pt away to start the run over, "
        f"or resume from another file with --restore-file PATH"
    )
    assert sorted((p.name, p.read_bytes()) for p in ckpt.iterdir()) == before


# --- a rank that hangs -------------------------------------------------------------------------------


def _worker_pids(launcher_pid):
    """{RANK: pid} of the workers torchrun started."""
    found = {}
    children = subprocess.run(["pgrep", "-P", str(launcher_pid)], capture_output=True, text=True).stdout.split()
    for pid in children:
        try:
            environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"RANK="):
                found[int(entry[5:])] = int(pid)
    return found


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_a_stopped_rank_ends_the_job_within_heartbeat_timeout(tiny_data_bin, tmp_path):
    timeout = 8
    ckpt = tmp_path / "ckpt"
    args = torchrun(
        2,
        [
            "fairseq-hydra-train",
            *tiny_lm_overrides(
                tiny_data_bin,
                ckpt,
                max_update=100000,
                extra=EXTRA
                + [f"distributed_training.heartbeat_timeout={timeout}", "checkpoint.save_interval_updates=5"],
            ),
            f"hydra.run.dir={tmp_path}",
        ],
    )
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,
    )
    workers = {}
    try:
        deadline = time.time() + 120
        while not (ckpt / "checkpoint_last.pt").exists() and time.time() < deadline:  # both ranks train
            time.sleep(0.2)
        assert (ckpt / "checkpoint_last.pt").exists(), "the job did not start"
        workers = _worker_pids(proc.pid)
        assert sorted(workers) == [0, 1], workers
        start = time.time()
        os.kill(workers[1], signal.SIGSTOP)
        out, err = proc.communicate(timeout=timeout + 60)
        elapsed = time.time() - start
        assert proc.returncode != 0
        assert elapsed < timeout + 15, f"the job took {elapsed:.0f} s to end"
        ours = [line for line in err.splitlines() if line.startswith("fairseq-hydra-train: error:")]
        assert len(ours) == 1, err[-3000:]
        assert re.fullmatch(
            rf"fairseq-hydra-train: error: rank 1 \(pid {workers[1]} on .+\) has not answered for {timeout} s "
            rf"\(distributed_training\.heartbeat_timeout={timeout}\): it hangs, is stopped or lost its host; "
            r"ending the job \(rerun the same command to resume from the last checkpoint\)",
            ours[0],
        ), ours[0]
        assert load_checkpoint_to_cpu(str(ckpt / "checkpoint_last.pt"))["num_updates"] >= 5  # nothing lost
        assert not os.path.exists(f"/proc/{workers[1]}") or open(f"/proc/{workers[1]}/stat").read().split()[2] == "Z"
    finally:
        for pid in workers.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_a_stopped_spawned_worker_ends_the_job_within_heartbeat_timeout(tiny_data_bin, tmp_path):
    """The same with the workers the command spawns itself (distributed_world_size=2): the job's store
    lives in the command, outside both workers, so it answers whichever one is stopped."""
    timeout = 8
    ckpt = tmp_path / "ckpt"
    args = [
        command("fairseq-hydra-train"),
        *tiny_lm_overrides(
            tiny_data_bin,
            ckpt,
            max_update=100000,
            extra=EXTRA + [f"distributed_training.heartbeat_timeout={timeout}", "checkpoint.save_interval_updates=5"],
        ),
        "distributed_training.distributed_world_size=2",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
        start_new_session=True,
    )
    workers = []
    try:
        deadline = time.time() + 120
        while not (ckpt / "checkpoint_last.pt").exists() and time.time() < deadline:
            time.sleep(0.2)
        assert (ckpt / "checkpoint_last.pt").exists(), "the job did not start"
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        workers = [int(p) for p in children if b"spawn_main" in open(f"/proc/{p}/cmdline", "rb").read()]
        assert len(workers) == 2, children
        start = time.time()
        os.kill(workers[-1], signal.SIGSTOP)
        out, err = proc.communicate(timeout=timeout + 60)
        assert proc.returncode == 1 and time.time() - start < timeout + 15
        ours = [line for line in err.splitlines() if "error:" in line]
        assert len(ours) == 1 and "Traceback" not in err, err[-3000:]
        assert re.match(rf"fairseq-hydra-train: error: rank [01] \(pid {workers[-1]} on .+\) has not answered", ours[0])
        assert load_checkpoint_to_cpu(str(ckpt / "checkpoint_last.pt"))["num_updates"] >= 5
    finally:
        for pid in workers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_hydra_run_dir_with_no_checkpoint_that_loads_is_one_line_before_anything(
    tiny_data_bin, tmp_path, monkeypatch, capsys
):
    """Rerunning with `hydra.run.dir=DIR`: the run's checkpoints are DIR/checkpoints, looked at before Hydra
    starts; the bare default save_dir ("checkpoints" in the current directory) is not the run's, so a
    broken checkpoint there does not stop a new run."""
    from fairseq_cli import hydra_train

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "checkpoint_last.pt").write_bytes(b"cut short")
    overrides = [o for o in tiny_lm_overrides(tiny_data_bin, "unused") if not o.startswith("checkpoint.save_dir")]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["fairseq-hydra-train", *overrides, f"hydra.run.dir={run_dir}"])
    before = sorted(p.name for p in run_dir.rglob("*"))
    with pytest.raises(SystemExit) as exit_info:
        hydra_train.cli_main()
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1 and not out.strip()
    assert err.strip().splitlines() == [
        f"fairseq-hydra-train: error: cannot read checkpoint {run_dir}/checkpoints/checkpoint_last.pt: "
        + err.split(": ", 3)[3].split(", and no other")[0]
        + f", and no other checkpoint in {run_dir}/checkpoints can be read: move "
        f"{run_dir}/checkpoints/checkpoint_last.pt away to start the run over, or resume from another file "
        f"with checkpoint.restore_file=PATH"
    ]
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # no .hydra/, no train.log
