"""Run every row of docs/errors.md: each user mistake gets exactly its documented one-line message, and
that line comes before anything else: no config dump or log line before it, no run directory, nothing
built (no task, model, criterion, optimizer or scheduler) and no file written."""

import logging
import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FAIRSEQ_LM = ROOT / "tests" / "fixtures" / "fairseq_0.12.2" / "checkpoints" / "transformer_lm.pt"
BASE = (
    "task=language_modeling task.data=DATA task.tokens_per_sample=32 model=transformer_lm "
    "model.decoder_layers=1 "
    "model.decoder_embed_dim=32 model.decoder_ffn_embed_dim=64 model.decoder_attention_heads=2 "
    "dataset.max_tokens=256 dataset.num_workers=0 optimization.max_update=1 checkpoint.save_dir=TMP/ckpt"
)
LEGACY = (
    "DATA --task language_modeling --arch transformer_lm --decoder-layers 1 --decoder-embed-dim 32 "
    "--decoder-ffn-embed-dim 64 --decoder-attention-heads 2 --tokens-per-sample 32 --max-tokens 256 "
    "--num-workers 0 --max-update 1 --save-dir TMP/ckpt"
)


def table_rows():
    rows = []
    for line in (ROOT / "docs" / "errors.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 5 and cells[0].isdigit():
            rows.append(pytest.param(cells[2][1:-1], cells[3][1:-1], cells[4], id=f"{cells[0]}-{cells[1]}"))
    return rows


ROWS = table_rows()


@pytest.fixture(autouse=True)
def restore_logging():
    """Hydra points the root logger at the captured stdout; put the handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def bad_index_data(tiny_data_bin, tmp_path_factory):
    """A copy of the data whose train.idx lost its last bytes (as a copy cut short would)."""
    copy = tmp_path_factory.mktemp("badidx") / "data-bin"
    shutil.copytree(tiny_data_bin, copy)
    index = copy / "train.idx"
    index.write_bytes(index.read_bytes()[:-5])
    return copy


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_table_has_at_least_20_mistakes():
    assert len(ROWS) >= 20


@pytest.mark.parametrize("command, message, first", ROWS)
def test_mistake_gets_its_message_before_anything_else(
    command, message, first, tiny_data_bin, bad_index_data, tmp_path, monkeypatch, capsys, caplog
):
    from fairseq_cli import hydra_train, train
    from fairseq_lite.registry import Registry

    def fill(text):
        return (
            text.replace("BASE", BASE)
            .replace("LEGACY", LEGACY)
            .replace("BADIDX", str(bad_index_data))
            .replace("DATA", str(tiny_data_bin))
            .replace("TMP", str(tmp_path))
            .replace("FAIRSEQ_LM", str(FAIRSEQ_LM))
        )

    argv = shlex.split(fill(command))
    entry = {"fairseq-hydra-train": hydra_train.cli_main, "fairseq-train": train.cli_main}[argv[0]]
    built = []
    real_build = Registry.build
    monkeypatch.setattr(Registry, "build", lambda self, *a, **k: built.append(self.kind) or real_build(self, *a, **k))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", argv)
    before = files_under(tmp_path)
    caplog.set_level(logging.INFO)
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code not in (0, None)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    expected = re.escape(f"{argv[0]}: error: {fill(message)}").replace(re.escape("..."), ".*")
    assert re.fullmatch(expected, last), f"\n got: {last}\nwant: {argv[0]}: error: {fill(message)}"

    assert first == "yes", "every mistake is to be reported before anything else"
    assert not out.strip(), f"printed before the error:\n{out}"
    logged = [r.getMessage() for r in caplog.records if r.name.startswith(("fairseq", "hydra"))]
    assert not logged, f"logged before the error: {logged}"
    assert built == [], f"built before the error: {built}"
    assert files_under(tmp_path) == before, "files were written before the error"
