"""Runs the shell commands of a fairseq README in a scratch directory, as a user would paste them.

What runs: every fairseq command, with the shell around it (variables, mkdir/cp/ln, for loops, grep/cut, our
scripts/average_checkpoints.py, fairseq's own example scripts). What does not: the lines fairseq_readmes.classify
names (downloads, builds of outside tools, scoring against downloaded test sets); the test stands in the
data they would have made, at the paths the README reads it from.

What differs from the README, and is said in each test: data paths (`replace`: a README's placeholder or a
download's path -> the stand-in), the training cap (every fairseq-train gets TRAIN_CAP appended: argparse
takes the last value of a flag), the generation cap (GENERATE_CAP: the hypotheses of a model trained for one
update would otherwise run to 200 tokens), and on a machine without a GPU the GPU-only flags (`--fp16`,
a launcher of 8 GPU processes) are dropped.
"""

import os
import shlex
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fairseq_readmes import Step, classify, example_file, logical_lines, readme, shell_blocks

TRAIN_CAP = ["--max-update", "1", "--max-epoch", "1", "--no-save-optimizer-state"]
GENERATE_CAP = ["--max-len-a", "0", "--max-len-b", "5"]
COMMANDS = ("fairseq-preprocess", "fairseq-train", "fairseq-generate", "fairseq-interactive", "fairseq-score")
HAS_GPU = torch.cuda.is_available()
GPU_ONLY_FLAGS = ("--fp16",)


@dataclass
class Run:
    """What happened: each README step (run or not, and why), and each fairseq command the shell ran."""

    steps: list[Step]
    invocations: list[dict]  # {"command", "argv" (one string), "rc"} in order
    output: str

    def ran(self, command: str) -> list[dict]:
        return [i for i in self.invocations if i["command"] == command]


@dataclass
class Scenario:
    name: str  # examples/<name>/README.md
    replace: dict[str, str] = field(default_factory=dict)  # README text -> stand-in (data paths, typos: said why)
    block_replace: dict[str, str] = field(default_factory=dict)  # the same, on a block before its lines are split
    before: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # line substring -> stand-in step
    block_order: list[int] | None = None  # to run a block that reads a later block's output after it
    extra_lines: dict[str, list[str]] = field(default_factory=dict)  # after the line with this substring
    generate_cap: list[str] = field(default_factory=lambda: list(GENERATE_CAP))


def _wrapper(real: str, cap: list[str], log: Path) -> str:
    drop = " ".join(GPU_ONLY_FLAGS) if not HAS_GPU else ""
    return f"""#!/usr/bin/env bash
# {Path(real).name} as the README calls it: GPU-only flags dropped without a GPU ({drop or "none"}), the cap appended.
args=()
for a in "$@"; do
  case " {drop} " in *" $a "*) echo "dropped $a (no GPU)" >&2; continue;; esac
  args+=("$a")
done
"{real}" "${{args[@]}}" {" ".join(shlex.quote(c) for c in cap)}
rc=$?
printf '%s\t%s\t%s\n' "{Path(real).name}" "$rc" "${{args[*]}}" >> "{log}"
exit $rc
"""


def make_bin(workspace: Path, generate_cap: list[str]) -> Path:
    """bin/: the fairseq commands (wrapped), python, and fairseq's example scripts a README pipes through."""
    bin_dir = workspace / ".readme-bin"
    bin_dir.mkdir(exist_ok=True)
    log = workspace / ".readme-commands.jsonl"
    for name in COMMANDS:
        real = shutil.which(name)
        assert real, f"{name} is not installed: run scripts/setup.sh"
        caps = {"fairseq-train": TRAIN_CAP, "fairseq-generate": generate_cap, "fairseq-interactive": generate_cap}
        cap = caps.get(name, [])
        path = bin_dir / name
        path.write_text(_wrapper(real, cap, log))
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return bin_dir


def install_example_script(workspace: Path, relative: str, on_path: bool = False) -> None:
    """fairseq's own script examples/`relative` (from the package, at run time) where the README runs it."""
    data = example_file(relative)
    target = (workspace / ".readme-bin" / Path(relative).name) if on_path else (workspace / "examples" / relative)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    target.chmod(target.stat().st_mode | stat.S_IEXEC)


def readme_lines(scenario: Scenario) -> list[tuple[int, str]]:
    blocks = shell_blocks(readme(scenario.name))
    for old, new in scenario.block_replace.items():
        blocks = [block.replace(old, new) for block in blocks]
    order = scenario.block_order or list(range(len(blocks)))
    return [(b, line) for b in order for line in logical_lines(blocks[b])]


def run_readme(scenario: Scenario, workspace: Path, timeout: int = 3000) -> Run:
    """Run the README's steps in `workspace`, stopping at the first failure; returns what ran. The shell is one
    session but for the stand-in steps (`before`), which run in Python between its lines: the variables the
    README set (TEXT, SAVE, ...) carry over them."""
    bin_dir = make_bin(workspace, scenario.generate_cap)
    scripts = workspace / "scripts"
    if not scripts.exists():
        scripts.symlink_to(Path(__file__).resolve().parent.parent / "scripts")  # our average_checkpoints.py
    steps: list[Step] = []
    chunks: list[tuple[str | None, list[str]]] = [(None, [])]
    for n, (_, line) in enumerate(readme_lines(scenario)):
        for old, new in scenario.replace.items():
            line = line.replace(old, new)
        if not HAS_GPU:
            line = line.replace("python -m torch.distributed.launch --nproc_per_node 8 ", "")
        step = classify(line)
        steps.append(step)
        if not step.run:
            continue
        for marker in scenario.before:
            if marker in line:
                chunks.append((marker, []))
        chunks[-1][1].extend([f"echo {shlex.quote(f'@@ step {n}: {line[:120]}')} >&2", line])
        for marker, lines in scenario.extra_lines.items():
            if marker in line:
                chunks[-1][1].extend(lines)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="2")
    state = workspace / ".readme-env.sh"
    state.write_text("")
    log = workspace / ".readme-commands.jsonl"
    output = []
    for marker, lines in chunks:
        if marker is not None:
            scenario.before[marker](workspace)
        if not lines:
            continue
        body = ["set -a", f"source {shlex.quote(str(state))}", "set -eo pipefail", *lines, f"declare -px > {state}"]
        proc = subprocess.run(
            ["bash", "-c", "\n".join(body)], cwd=workspace, env=env, capture_output=True, text=True, timeout=timeout
        )
        output.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            failed = [line for line in proc.stderr.splitlines() if line.startswith("@@ step")]
            ran = [f"{i['command']} rc={i['rc']}" for i in _invocations(log)]
            raise AssertionError(
                f"{scenario.name}/README.md: the shell stopped (exit {proc.returncode}) at "
                f"{failed[-1] if failed else 'its first line'}\n--- stderr (last 4000 characters):\n"
                f"{proc.stderr[-4000:]}\n--- fairseq commands run: {ran}"
            )
    return Run(steps, _invocations(log), "".join(output))


def _invocations(log: Path) -> list[dict]:
    if not log.exists():
        return []
    rows = [line.split("\t", 2) for line in log.read_text().splitlines() if line.strip()]
    return [{"command": row[0], "rc": int(row[1]), "argv": row[2] if len(row) > 2 else ""} for row in rows]
