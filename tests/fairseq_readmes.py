"""fairseq 0.12.2's example READMEs, read at run time from the PyPI package (never committed here), and the
shell commands in them, for the tests that run those commands as written.

The package comes from the reference virtualenv `../shared/bench/fairseq_reference.sh` makes (its
site-packages holds fairseq/examples/), or else from fairseq 0.12.2's own wheel on PyPI, fetched once into a
cache and checked against its published sha256.
"""

import hashlib
import os
import re
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEEL = "fairseq-0.12.2-cp38-cp38-manylinux_2_5_x86_64.manylinux1_x86_64.whl"
WHEEL_URL = (
    "https://files.pythonhosted.org/packages/e1/8c/cfca1b3c2e50983d0b51804ed24014573ff2aa42d8b4931760d57d6b2118/"
    + WHEEL
)
WHEEL_SHA256 = "08fa308c760f995cdc13d9c385e2b9d923a78b48275d8b4d78f3a854c71a8f29"


def _reference_examples() -> Path | None:
    ref = Path(os.environ.get("FAIRSEQ_REF", "/tmp/fairseq-ref"))
    candidates = list(ref.glob("lib/python3*/site-packages/fairseq/examples"))
    return candidates[0] if candidates else None


def _cached_wheel() -> Path:
    cache = Path(os.environ.get("FAIRSEQ_LITE_CACHE", Path.home() / ".cache" / "fairseq-lite"))
    path = cache / WHEEL
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            data = urllib.request.urlopen(WHEEL_URL, timeout=120).read()
        except OSError as e:
            raise RuntimeError(
                f"fairseq 0.12.2's READMEs come from its wheel, which could not be fetched ({e}): put it at {path}, "
                f"or install the reference with ../shared/bench/fairseq_reference.sh (FAIRSEQ_REF)"
            ) from e
        if hashlib.sha256(data).hexdigest() != WHEEL_SHA256:
            raise RuntimeError(f"{WHEEL_URL}: sha256 differs from PyPI's published {WHEEL_SHA256}")
        tmp = path.with_suffix(".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def example_file(relative: str) -> bytes:
    """fairseq/examples/`relative` of fairseq 0.12.2 (e.g. "translation/README.md")."""
    local = _reference_examples()
    if local is not None and (local / relative).is_file():
        return (local / relative).read_bytes()
    with zipfile.ZipFile(_cached_wheel()) as wheel:
        return wheel.read(f"fairseq/examples/{relative}")


def readme(name: str) -> str:
    return example_file(f"{name}/README.md").decode("utf-8")


def shell_blocks(text: str) -> list[str]:
    """The shell code of a README: its ```bash/sh/shell (or unlabeled) fences, and its 4-space indented
    blocks of commands (constrained_decoding writes its command so)."""
    blocks = [
        body
        for label, body in re.findall(r"^[ \t]*```([\w-]*)[ \t]*\n(.*?)^[ \t]*```", text, re.S | re.M)
        if label in ("", "bash", "sh", "shell", "console")
    ]
    without_fences = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", text, flags=re.S | re.M)
    for indented in re.findall(r"(?:^(?: {4}|\t).*\n?)+", without_fences, re.M):
        body = "\n".join(line[4:] if line.startswith("    ") else line[1:] for line in indented.splitlines())
        if re.search(r"\bfairseq-\w+", body):
            blocks.append(body)
    return blocks


def logical_lines(block: str) -> list[str]:
    """A block's commands: continuation lines joined (so a `for ...; done` written with `\\` is one),
    comments and blank lines dropped."""
    joined = re.sub(r"\\[ \t]*\n", " ", block)
    lines = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(re.sub(r"[ \t]+", " ", line))
    return lines


FAIRSEQ_COMMAND = re.compile(
    r"(?:^|[\s|;(])(fairseq-(?:preprocess|train|hydra-train|generate|interactive|eval-lm|score))\b"
)


def fairseq_commands_in(line: str) -> list[str]:
    """The fairseq commands a logical line runs (`$(which fairseq-train)` included)."""
    return FAIRSEQ_COMMAND.findall(line)


@dataclass
class Step:
    line: str  # as in the README, continuations joined
    run: bool
    why_not: str = ""  # for a step not run: what it needs that this machine does not have


# Commands that fetch data or models from the internet, build tools outside fairseq, or score against test
# sets sacrebleu downloads: the tests stand in their outputs (the data they would have made).
NOT_RUN = {
    "curl": "downloads",
    "wget": "downloads",
    "pip": "installs packages",
    "sacrebleu": "downloads its test sets",
    "git": "clones a repository",
    "cmake": "builds fast_align",
    "make": "builds fast_align",
    "pushd": "builds fast_align",
    "popd": "builds fast_align",
    "tar": "unpacks a download",
    "cd": "enters the directory of a download script (not run); the README's paths are relative to the root",
    "bash": "runs a download/scoring script (prepare-*.sh, sacrebleu.sh, compound_split_bleu.sh)",
    "$ALIGN": "runs fast_align, built from source",
}


def classify(line: str) -> Step:
    heads = []
    for segment in re.split(r"\s*(?:\||;|&&)\s*", line):
        parts = segment.split()
        while parts and re.match(r"^[A-Za-z_]\w*=", parts[0]) and len(parts) > 1:
            parts = parts[1:]  # VAR=value command ...
        if parts:
            heads.append(parts[0] if parts[0] != "python" or len(parts) < 2 else f"python {parts[1]}")
    for head in heads:
        if head == "sacrebleu" and not re.search(r"(--test-set|\s-t)\s", line):
            continue  # sacrebleu on files of the README's own: runs here
        if head in NOT_RUN:
            return Step(line, False, f"{head}: {NOT_RUN[head]}")
        if head in ("python cuda_function_gen.py", "python setup.py"):
            return Step(line, False, f"{head}: builds fairseq's CUDA kernels (fairseq-lite's run on torch ops)")
        if head.startswith("./prepare") or head == "python scripts/spm_encode.py":
            return Step(line, False, f"{head}: prepares downloaded data")
        if head == "python scripts/average_checkpoints":
            return Step(line, False, "names a script that does not exist (scripts/average_checkpoints, no .py)")
    return Step(line, True)
