"""Run every row of docs/errors.md: each user mistake gets exactly its documented one-line message."""

import re
import shlex
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
    "DATA --arch transformer_lm --decoder-layers 1 --decoder-embed-dim 32 --decoder-ffn-embed-dim 64 "
    "--decoder-attention-heads 2 --tokens-per-sample 32 --max-tokens 256 --num-workers 0 --max-update 1 "
    "--save-dir TMP/ckpt"
)


def table_rows():
    rows = []
    for line in (ROOT / "docs" / "errors.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 4 and cells[0].isdigit():
            rows.append(pytest.param(cells[2][1:-1], cells[3][1:-1], id=f"{cells[0]}-{cells[1]}"))
    return rows


ROWS = table_rows()


@pytest.fixture(autouse=True)
def restore_logging():
    """Hydra points the root logger at the captured stdout; put the handlers back afterwards."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_table_has_at_least_20_mistakes():
    assert len(ROWS) >= 20


@pytest.mark.parametrize("command, message", ROWS)
def test_mistake_gets_its_message(command, message, tiny_data_bin, tmp_path, monkeypatch, capsys):
    from fairseq_cli import hydra_train, train

    def fill(text):
        return (
            text.replace("BASE", BASE)
            .replace("LEGACY", LEGACY)
            .replace("DATA", str(tiny_data_bin))
            .replace("TMP", str(tmp_path))
            .replace("FAIRSEQ_LM", str(FAIRSEQ_LM))
        )

    argv = shlex.split(fill(command))
    entry = {"fairseq-hydra-train": hydra_train.cli_main, "fairseq-train": train.cli_main}[argv[0]]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        entry()
    assert exit_info.value.code not in (0, None)
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    expected = re.escape(f"{argv[0]}: error: {fill(message)}").replace(re.escape("..."), ".*")
    assert re.fullmatch(expected, last), f"\n got: {last}\nwant: {argv[0]}: error: {fill(message)}"
