"""fairseq-score: the BLEU line fairseq 0.12.2's fairseq-score prints for the same files (run once with the
reference: `fairseq-score --sys s.txt --ref r.txt`), sacrebleu's, per-sentence BLEU, and one-line errors."""

import io

import pytest
from test_cli import command, run

from fairseq_cli.score import main
from fairseq_lite.errors import ConfigError, DataError

SYS = "a b c d\nthe cat sat on the mat\n"
REF = "a b c d\nthe cat sat on a mat\n"
FAIRSEQS = "BLEU4 = 68.87, 90.0/75.0/66.7/50.0 (BP=1.000, ratio=1.000, syslen=10, reflen=10)"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "sys.txt").write_text(SYS)
    (tmp_path / "ref.txt").write_text(REF)
    (tmp_path / "short.txt").write_text("a b c d\n")
    return tmp_path


def test_the_installed_command_prints_fairseqs_bleu_line(files):
    out = run([command("fairseq-score"), "--sys", "sys.txt", "--ref", "ref.txt"], cwd=files).stdout
    assert out.strip() == FAIRSEQS
    bad = run([command("fairseq-score"), "--sys", "missing.txt", "--ref", "ref.txt"], cwd=files, check=False)
    assert bad.returncode != 0 and "--sys missing.txt: no such file" in bad.stderr


def test_sentence_bleu_sacrebleu_stdin_and_errors(files, monkeypatch):
    sentences = main(["-s", str(files / "sys.txt"), "-r", str(files / "ref.txt"), "--sentence-bleu"])
    assert sentences[0].startswith("0 BLEU4 = 100.00")
    assert sentences[1].startswith("1 BLEU4 = 63.89, 83.3/66.7/60.0/50.0")  # one added to the 2-4-gram counts
    assert main(["-s", str(files / "sys.txt"), "-r", str(files / "ref.txt"), "--sacrebleu"])[0].startswith("BLEU = ")
    monkeypatch.setattr("sys.stdin", io.StringIO(SYS.upper()))
    assert main(["--ref", str(files / "ref.txt"), "--ignore-case"]) == [FAIRSEQS]
    with pytest.raises(DataError, match="--sys has 1 lines and --ref 2"):
        main(["--sys", str(files / "short.txt"), "--ref", str(files / "ref.txt")])


def test_bleu_on_token_ids_as_fairseq_scores_them(tmp_path):
    """fairseq encodes each line into one growing dictionary, eos appended: a reference <unk> never matches,
    an empty line counts its eos, a trailing </s> is trimmed (the lines fairseq 0.12.2 printed for these files)."""
    (tmp_path / "s.txt").write_text("a <unk> c d e\nthe cat\n\n")
    assert main(["-s", str(tmp_path / "s.txt"), "-r", str(tmp_path / "s.txt")]) == [
        "BLEU4 = 0.00, 87.5/60.0/33.3/0.0 (BP=1.000, ratio=1.000, syslen=8, reflen=8)"
    ]
    (tmp_path / "h.txt").write_text("a b c d e\n")
    (tmp_path / "r.txt").write_text("a b c d e </s>\n")
    assert main(["-s", str(tmp_path / "h.txt"), "-r", str(tmp_path / "r.txt")]) == [
        "BLEU4 = 100.00, 100.0/100.0/100.0/100.0 (BP=1.000, ratio=1.000, syslen=5, reflen=5)"
    ]
    with pytest.raises(ConfigError, match="--order 5 is invalid"):
        main(["-s", str(tmp_path / "h.txt"), "-r", str(tmp_path / "r.txt"), "--order", "5"])
    with pytest.raises(ConfigError, match="--ref - is invalid"):
        main(["-s", str(tmp_path / "h.txt"), "-r", "-"])
