"""fairseq 0.12.2's own example plugins and README commands, taken at run time from the fairseq package
(never committed here): the reference install of ../shared/bench/fairseq_reference.sh when there is one
($FAIRSEQ_REF, default /tmp/fairseq-ref), else fairseq's wheel from PyPI (downloaded, not installed).

`ported_plugin` copies a plugin and rewrites `fairseq` to `fairseq_lite` in its import lines only, the
one change docs/porting.md asks of a user. `readme_command` takes a README's fairseq-train command as
written and scales it down. Used by tests/test_fairseq_plugins.py and by the script that wrote the
fixtures of the real fairseq's outputs (tests/fixtures/fairseq_0.12.2/plugins/make_reference.py).
"""

import glob
import os
import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

IMPORT_LINE = re.compile(r"^(\s*)(from|import) fairseq(\.|\s)", flags=re.MULTILINE)


def fairseq_package_files(prefix: str, workdir: Path) -> dict[str, str]:
    """{path under the fairseq package: text} for the package files under `prefix` (e.g.
    "examples/adaptive_span/"), or {} when fairseq 0.12.2 is neither installed nor downloadable."""
    ref = os.environ.get("FAIRSEQ_REF", "/tmp/fairseq-ref")
    for root in glob.glob(f"{ref}/lib/python*/site-packages/fairseq"):
        found = {}
        for path in Path(root, prefix).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                found[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
        if found:
            return found
    download = [sys.executable, "-m", "pip", "download", "fairseq==0.12.2", "--no-deps", "--only-binary=:all:"]
    download += ["--python-version", "3.8", "--platform", "manylinux1_x86_64", "-d", str(workdir), "-q"]
    try:
        subprocess.run(download, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError):
        return {}
    (wheel,) = Path(workdir).glob("fairseq-0.12.2-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return {
            name[len("fairseq/") :]: archive.read(name).decode("utf-8")
            for name in archive.namelist()
            if name.startswith("fairseq/" + prefix) and not name.endswith("/")
        }


def ported_plugin(files: dict[str, str], prefix: str, destination: Path) -> Path:
    """Write the plugin's files under destination/<its directory name>, fairseq renamed to fairseq_lite
    in import lines and nowhere else (checked). Returns the plugin directory."""
    plugin = destination / Path(prefix.rstrip("/")).name
    for name, text in files.items():
        if not name.startswith(prefix):
            continue
        target = plugin / name[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".py"):
            ported = IMPORT_LINE.sub(r"\1\2 fairseq_lite\3", text)
            changed = [(a, b) for a, b in zip(text.splitlines(), ported.splitlines()) if a != b]
            assert len(text.splitlines()) == len(ported.splitlines())
            assert all(re.match(r"\s*(from|import) fairseq_lite", b) for _, b in changed), changed
            text = ported
        target.write_text(text, encoding="utf-8")
    return plugin


def readme_command(readme: str, starts_with: str, replacements: dict[str, str]) -> list[str]:
    """The README's first bash command that starts with `starts_with` (line continuations joined), as
    argv, each `replacements` key (a flag and its value as written, or a lone word) replaced by its
    value ("" drops it)."""
    for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL):
        text = block.replace("\\\n", " ")
        for line in text.splitlines():
            if starts_with in line:
                command = " " + " ".join(line.split()) + " "
                for old, new in replacements.items():
                    assert f" {old} " in command, f"{old!r} is not in the README's command: {command}"
                    command = command.replace(f" {old} ", f" {new} " if new else " ")
                return shlex.split(command)
    raise AssertionError(f"no command starting with {starts_with!r} in the README")


# fairseq's examples/adaptive_span/README.md, first training command, scaled to a CPU test: the data
# path changed (fairseq 0.12.2 itself rejects `--data`, so it is positional), fp16 dropped (it needs
# a GPU), sizes and update counts made small.
ADAPTIVE_SPAN_SCALING = {
    "CUDA_VISIBLE_DEVICES=0,1,2,3": "",
    "--user-dir examples/adaptive_span": "--user-dir {plugin}",
    "--data ~/data/enwik8/data-bin/": "{data}",
    "--fp16 --fp16-no-flatten-grads": "",
    "--max-update 600000": "--max-update 4",
    "--tokens-per-sample 512": "--tokens-per-sample 16",
    "--n-layer 12": "--n-layer 2",
    "--d-model 512": "--d-model 16",
    "--d-inner 2048": "--d-inner 32",
    "--attn-span 8192": "--attn-span 32",
    "--batch-size-valid 32": "--batch-size-valid 4",
    "--batch-size 16": "--batch-size 4",
    "--log-interval 25": "--log-interval 1",
}


def plain_lm_data(source: Path, destination: Path) -> Path:
    """The committed `mono` data without its extra `valid1` split (fairseq refuses unused valid splits)."""
    destination.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if not path.name.startswith("valid1") and path.suffix in (".bin", ".idx", ".txt"):
            (destination / path.name).write_bytes(path.read_bytes())
    return destination


def adaptive_span_command(readme: str, plugin: Path, data: Path, save_dir: Path, program: str) -> list[str]:
    scaling = {k: v.format(plugin=plugin, data=data) for k, v in ADAPTIVE_SPAN_SCALING.items()}
    argv = readme_command(readme, "fairseq-train", scaling)
    return [program, *argv[1:], "--save-dir", str(save_dir), "--cpu", "--num-workers", "0"]


# fairseq's examples/truncated_bptt/README.md, its training and evaluation commands, scaled the same way.
TRUNCATED_BPTT_TRAIN_SCALING = {
    "CUDA_VISIBLE_DEVICES=0,1,2,3": "",
    "--user-dir examples/truncated_bptt": "--user-dir {plugin}",
    "data-bin/wikitext-103/": "{data}",
    "--tokens-per-sample 150": "--tokens-per-sample 16",
    "--batch-size 15 --max-update 200000": "--batch-size 4 --max-update 4",
    "--n-layer 16 --d-model 410 --n-head 10": "--n-layer 2 --d-model 16 --n-head 2",
    "--d-head 41 --d-inner 2100": "--d-head 8 --d-inner 32",
    "--mem-len 150": "--mem-len 16",
    "--log-interval 25": "--log-interval 1",
    "--fp16": "",
}
TRUNCATED_BPTT_EVAL_SCALING = {
    "data-bin/wikitext-103/": "{data}",
    "--path checkpoints/checkpoint_best.pt": "--path {checkpoint}",
    "--user-dir examples/truncated_bptt/": "--user-dir {plugin}",
    "--tokens-per-sample 64": "--tokens-per-sample 16 --cpu",
}


def truncated_bptt_commands(
    readme: str, plugin: Path, data: Path, save_dir: Path, bin_dir: Path
) -> tuple[list[str], list[str]]:
    """(the README's training command, its evaluation command of the best checkpoint), scaled down."""
    values = {"plugin": plugin, "data": data, "checkpoint": save_dir / "checkpoint_best.pt"}
    train = readme_command(
        readme, "fairseq-train", {k: v.format(**values) for k, v in TRUNCATED_BPTT_TRAIN_SCALING.items()}
    )
    evaluate = readme_command(
        readme, "fairseq-eval-lm", {k: v.format(**values) for k, v in TRUNCATED_BPTT_EVAL_SCALING.items()}
    )
    train = [str(bin_dir / "fairseq-train"), *train[1:], "--save-dir", str(save_dir), "--cpu", "--num-workers", "0"]
    return train, [str(bin_dir / "fairseq-eval-lm"), *evaluate[1:]]
