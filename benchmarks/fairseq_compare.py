"""Shared pieces of the fairseq-lite vs fairseq 0.12.2 benchmarks (train_speed.py, inference_speed.py,
profile_train_step.py): finding the reference install, preparing the demo data once, running either
tool's commands the same way, reading their logs, and printing `name: value` lines.

The reference fairseq 0.12.2 is never a dependency of fairseq-lite: it lives in a scratch virtualenv
(created by `bash benchmarks/setup_fairseq_reference.sh`, default /tmp/fairseq-ref) and the
benchmarks only run its commands, as `<its python> benchmarks/fairseq_ref_shim.py <command> ARGS`
(= `fairseq-<command> ARGS` with two runtime fixes for torch 2.13), next to fairseq-lite's
`python -m fairseq_cli.<command> ARGS`. Nothing here reads files outside this checkout but the reference.
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
# A per-interval training line of either tool: fairseq's `train_inner` and fairseq-lite's progress bar
# print the same `key=value` fields ("... wps=3314.1, ups=1.62, wpb=2048, ... num_updates=25, ...").
FIELD = re.compile(r"(\w+)=([-+0-9.eE]+)")
DEFAULT_FAIRSEQ_PYTHON = os.environ.get("FAIRSEQ_PYTHON", "/tmp/fairseq-ref/bin/python")
SETUP_HINT = (
    "create it with `bash benchmarks/setup_fairseq_reference.sh` (about 4 minutes; installs fairseq "
    "0.12.2 into /tmp/fairseq-ref, FAIRSEQ_REF=DIR to put it elsewhere), then pass "
    "--fairseq-python DIR/bin/python or set FAIRSEQ_PYTHON"
)

# The tiny LM of the issue, as fairseq-train flags that both tools accept unchanged (the demo's model:
# examples/language_model/demo.sh). Validation and checkpoints are off: only the updates are timed.
TINY_LM_FLAGS = [
    "--task",
    "language_modeling",
    "--tokens-per-sample",
    "128",
    "--arch",
    "transformer_lm",
    "--decoder-layers",
    "2",
    "--decoder-embed-dim",
    "128",
    "--decoder-ffn-embed-dim",
    "512",
    "--decoder-attention-heads",
    "4",
    "--share-decoder-input-output-embed",
    # fairseq 0.12.2's transformer_lm keeps decoder_input_dim = decoder_output_dim = 512 whatever
    # --decoder-embed-dim says (dataclass defaults of 512 win over base_lm_architecture's fallback), which
    # adds 128->512 projections and a 9288x512 output layer: 5.3M parameters instead of 1.6M. Saying 128
    # explicitly gives both tools the same 1.6M-parameter model.
    "--decoder-input-dim",
    "128",
    "--decoder-output-dim",
    "128",
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9, 0.98)",
    "--lr",
    "0.003",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "100",
    "--max-tokens",
    "2048",
    "--num-workers",
    "0",
    "--seed",
    "1",
    "--cpu",
]


# --- the reference install ------------------------------------------------------------------------
def add_fairseq_python_arg(parser) -> None:
    parser.add_argument(
        "--fairseq-python",
        default=DEFAULT_FAIRSEQ_PYTHON,
        help="python of the virtualenv holding fairseq 0.12.2 (default: $FAIRSEQ_PYTHON or "
        "/tmp/fairseq-ref/bin/python)",
    )


def check_fairseq_python(python: str) -> str:
    """The reference's version, or exit with how to create it."""
    if not Path(python).exists():
        sys.exit(f"error: no fairseq 0.12.2 reference at {python}: {SETUP_HINT}")
    probe = subprocess.run(
        [python, "-c", "import fairseq; print(fairseq.__version__)"],
        capture_output=True,
        text=True,
        env=tool_env("fairseq"),
        cwd="/",
    )
    if probe.returncode != 0:
        tail = (probe.stderr.strip().splitlines() or ["?"])[-1]
        sys.exit(f"error: {python} cannot import fairseq ({tail}): {SETUP_HINT}")
    version = probe.stdout.strip().splitlines()[-1]
    if version != "0.12.2":
        print(f"warning: the reference is fairseq {version}, not 0.12.2", file=sys.stderr)
    return version


# --- running the two tools the same way ------------------------------------------------------------
def tool_env(tool: str, threads: int | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The reference must import its own fairseq/fairseq_cli, never this checkout's fairseq_cli.
    env.pop("PYTHONPATH", None)
    if threads:  # both tools get the same intra-op thread count
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    env["PYTHONWARNINGS"] = "ignore"  # fairseq 0.12.2 on torch 2.13 warns on every import and batch
    if tool == "fairseq":
        # fairseq 0.12.2 loads its own checkpoints with a bare torch.load; see fairseq_ref_shim.py.
        env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    return env


def command(tool: str, name: str, fairseq_python: str) -> list[str]:
    """`fairseq-<name>` of either tool, run by that tool's python: fairseq-lite's console-script module,
    or fairseq 0.12.2's through fairseq_ref_shim.py (its runtime fixes for torch 2.13).

    Run with a cwd outside this checkout: `python -m fairseq_cli.x` puts the cwd first on sys.path,
    and this checkout has its own fairseq_cli package."""
    module = name.replace("-", "_")
    if tool == "fairseq":
        return [fairseq_python, str(BENCH_DIR / "fairseq_ref_shim.py"), module]
    return [sys.executable, "-m", f"fairseq_cli.{module}"]


@dataclass
class Run:
    output: str
    seconds: float  # wall time of the whole command, interpreter start included


def run_tool(
    tool: str,
    name: str,
    args: Sequence[str],
    fairseq_python: str,
    cwd: Path,
    threads: int | None = None,
    check: bool = True,
) -> Run:
    cmd = command(tool, name, fairseq_python) + [str(a) for a in args]
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, env=tool_env(tool, threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    seconds = time.perf_counter() - start
    if check and proc.returncode != 0:
        tail = "\n".join(proc.stdout.splitlines()[-25:])
        sys.exit(f"error: {tool} {name} failed (exit {proc.returncode}):\n  {' '.join(cmd)}\n{tail}")
    return Run(proc.stdout if proc.returncode == 0 else f"exit {proc.returncode}\n{proc.stdout}", seconds)


class SlicedProcesses:
    """Several long-running commands sharing the machine in turns, to compare their speed under the same load.

    On a shared machine, load from other jobs changes by 2-5x within a minute, so two runs made one after
    the other measure the load as much as the tools. Here every process is started at once, then all but one
    are paused (SIGSTOP) and they take turns of `slice_s` seconds (SIGCONT/SIGSTOP): each sees the same load,
    sampled every few seconds. A reader thread per process timestamps each output line as it arrives, so
    per-update times are measured outside the tools, the same way for both; intervals that straddle a pause
    are dropped.
    """

    def __init__(self, commands: dict[str, tuple[list[str], dict[str, str]]], cwd: Path):
        self.procs: dict[str, subprocess.Popen] = {}
        self.lines: dict[str, list[tuple[float, str]]] = {}
        self.running: dict[str, list[tuple[float, float]]] = {}  # (resumed, paused) per process
        for name, (cmd, env) in commands.items():
            env = {**env, "PYTHONUNBUFFERED": "1"}
            self.procs[name] = subprocess.Popen(
                cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            )
            self.lines[name] = []
            self.running[name] = [(time.perf_counter(), float("inf"))]
            threading.Thread(target=self._read, args=(name,), daemon=True).start()

    def _read(self, name: str) -> None:
        for line in self.procs[name].stdout:
            self.lines[name].append((time.perf_counter(), line))

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def pause(self, name: str) -> None:
        if self.alive(name) and self.running[name][-1][1] == float("inf"):
            os.kill(self.procs[name].pid, signal.SIGSTOP)
            self.running[name][-1] = (self.running[name][-1][0], time.perf_counter())

    def resume(self, name: str) -> None:
        if self.alive(name) and self.running[name][-1][1] != float("inf"):
            self.running[name].append((time.perf_counter(), float("inf")))
            os.kill(self.procs[name].pid, signal.SIGCONT)

    def stop(self, name: str) -> None:
        """Kill this process (one of ours, by pid) and reap it."""
        proc = self.procs[name]
        if proc.poll() is None:
            proc.kill()
        proc.wait()

    def stop_all(self) -> None:
        for name in self.procs:
            self.stop(name)

    def output(self, name: str) -> str:
        return "".join(line for _, line in self.lines[name])

    def update_times(self, name: str, after_update: int) -> list[tuple[float, dict[str, float]]]:
        """(seconds, log fields) of every logged interval after `after_update` that ran without a pause."""
        rows = [
            (t, {k: float(v) for k, v in FIELD.findall(line)})
            for t, line in list(self.lines[name])
            if "wps=" in line and "num_updates=" in line
        ]
        out = []
        for (t0, _), (t1, fields) in zip(rows, rows[1:]):
            if fields["num_updates"] > after_update and any(
                start <= t0 and t1 <= end for start, end in self.running[name]
            ):
                out.append((t1 - t0, fields))
        return out


def startup_seconds(tool: str, name: str, fairseq_python: str, cwd: Path) -> float:
    """Wall time of `fairseq-<name> --help`: interpreter start and imports, the fixed cost of every run."""
    return run_tool(tool, name, ["--help"], fairseq_python, cwd).seconds


# --- data ----------------------------------------------------------------------------------------
def tokenize_shakespeare(out: Path) -> Path:
    """The demo's tokenized train/valid/test split of the embedded plays."""
    script = ROOT / "examples" / "language_model" / "prepare_shakespeare.py"
    subprocess.run([sys.executable, str(script), "--out", str(out)], check=True, capture_output=True)
    return out


def prepare_lm_data(workdir: Path) -> str:
    """The demo corpus binarized once, with fairseq-lite's preprocess and the demo's flags. Its output is
    byte-identical to fairseq 0.12.2's, so both tools read the very same files."""
    tokens = tokenize_shakespeare(workdir / "tokens")
    dest = workdir / "data-bin"
    from fairseq_cli.preprocess import main as preprocess

    preprocess(
        [
            "--only-source",
            "--trainpref",
            str(tokens / "train.tokens"),
            "--validpref",
            str(tokens / "valid.tokens"),
            "--testpref",
            str(tokens / "test.tokens"),
            "--destdir",
            str(dest),
            "--thresholdsrc",
            "2",
            "--workers",
            "2",
        ]
    )
    return str(dest)


# --- logs and output ------------------------------------------------------------------------------
def print_value(name: str, value, unit: str = "") -> None:
    text = f"{value:.1f}" if isinstance(value, float) else str(value)
    print(f"{name}: {text}{(' ' + unit) if unit else ''}", flush=True)


def print_ratio(name: str, lite: float | None, ref: float | None, target: float | None = None) -> None:
    if not lite or not ref:
        print(f"{name}: n/a", flush=True)
        return
    ratio = lite / ref
    verdict = "" if target is None else f"  (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"
    print(f"{name}: {ratio:.2f}x{verdict}", flush=True)


def machine_line() -> str:
    import platform

    import torch

    cpu = (
        next(
            (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
            platform.processor(),
        )
        if Path("/proc/cpuinfo").exists()
        else platform.processor()
    )
    commit = (
        subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
        ).stdout.strip()
        or "unknown"
    )
    return (
        f"{os.cpu_count()} cores, {cpu}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"fairseq-lite {commit}"
    )
