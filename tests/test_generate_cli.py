"""fairseq-generate and fairseq-interactive end to end on a tiny trained language model."""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT, tiny_lm_overrides

from fairseq_lite.errors import ConfigError
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

SCORE = r"-?\d+\.\d+(?:e-?\d+)?"
LINE_FORMATS = {
    "S": re.compile(r"S-(\d+)\t(.*)"),
    "T": re.compile(r"T-(\d+)\t(.*)"),
    "W": re.compile(r"W-(\d+)\t\d+\.\d{3}\tseconds"),
    "H": re.compile(rf"H-(\d+)\t({SCORE})\t(.*)"),
    "D": re.compile(rf"D-(\d+)\t({SCORE})\t(.*)"),
    "P": re.compile(r"P-(\d+)\t(-?\d+\.\d{4}(?: -?\d+\.\d{4})*)"),
    # --print-alignment: hard "src-tgt" pairs, or soft rows of source probabilities (6 decimals)
    "A": re.compile(r"A-(\d+)\t((?:\d+-\d+(?: \d+-\d+)*)?|\d\.\d{6}(?:[, ]\d\.\d{6})*)"),
}


@pytest.fixture(scope="module")
def lm_checkpoint(tiny_data_bin, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("lm-ckpt")
    train(compose_config(tiny_lm_overrides(tiny_data_bin, save_dir, max_update=30)))
    return str(save_dir / "checkpoint_last.pt")


def parse(stdout: str):
    """The S-/T-/H-/D-/P-/W- lines, each checked against fairseq's format."""
    records = []
    for line in stdout.splitlines():
        kind = line[:1]
        if line[1:2] != "-" or kind not in LINE_FORMATS:
            continue
        match = LINE_FORMATS[kind].fullmatch(line)
        assert match, f"bad {kind}- line: {line!r}"
        records.append((kind, match.groups()))
    return records


def check_hypothesis_lines(records, nbest: int):
    """H, D and P come in threes; H and D agree on the score, P has one value per token and eos,
    and the score (lenpen 1) is their mean."""
    hyps = [r for r in records if r[0] in "HDP"]
    assert len(hyps) % 3 == 0 and hyps
    for (h, hv), (d, dv), (p, pv) in zip(hyps[0::3], hyps[1::3], hyps[2::3]):
        assert (h, d, p) == ("H", "D", "P") and hv[0] == dv[0] == pv[0]
        assert hv[1] == dv[1] and hv[2] == dv[2]
        positional = [float(x) for x in pv[1].split()]
        assert len(positional) == len(hv[2].split()) + 1
        assert float(hv[1]) == pytest.approx(sum(positional) / len(positional), abs=2e-4)
    ids = [r[1][0] for r in records if r[0] == "H"]
    assert all(ids.count(i) == nbest for i in set(ids))


def generate(capsys, data, ckpt, *flags):
    from fairseq_cli.generate import main

    capsys.readouterr()
    result = main([str(data), "--path", ckpt, *flags])
    return result, capsys.readouterr().out


def test_generate_continues_each_line_prefix_and_prints_fairseq_lines(tiny_data_bin, lm_checkpoint, capsys):
    result, out = generate(
        capsys,
        tiny_data_bin,
        lm_checkpoint,
        "--beam",
        "3",
        "--nbest",
        "2",
        "--batch-size",
        "16",
        "--max-len-b",
        "8",
        "--sample-break-mode",
        "eos",
        "--prefix-size",
        "2",
    )
    records = parse(out)
    check_hypothesis_lines(records, nbest=2)
    sources = {r[1][0]: r[1][1] for r in records if r[0] == "S"}
    targets = {r[1][0]: r[1][1] for r in records if r[0] == "T"}
    assert len(sources) == len(targets) == result["num_sentences"] == 80
    # fairseq's order per sentence: S, T, then H/D/P for each of the nbest.
    kinds = "".join(r[0] for r in records)
    assert kinds == "STHDPHDP" * 80
    for _kind, (sample_id, _, text) in (r for r in records if r[0] == "H"):
        prefix = targets[sample_id].replace("<<unk>>", "<unk>").split()[:2]  # T- lines escape unk
        assert text.split()[: len(prefix)] == prefix
    assert re.search(r"^Generate test with beam=3: BLEU4 = \d+\.\d\d, ", out, re.M)
    assert isinstance(result["bleu"], float) and result["num_tokens"] > 0


def test_results_path_quiet_and_sacrebleu(tiny_data_bin, lm_checkpoint, tmp_path, capsys):
    result, out = generate(
        capsys,
        tiny_data_bin,
        lm_checkpoint,
        "--batch-size",
        "8",
        "--max-len-b",
        "4",
        "--scoring",
        "sacrebleu",
        "--quiet",
        "--results-path",
        str(tmp_path),
    )
    assert os.listdir(tmp_path) == ["generate-test.txt"]  # renamed into place, no temp left
    text = (tmp_path / "generate-test.txt").read_text()
    assert not parse(text) and not parse(out)
    assert re.search(r"^Generate test with beam=5: BLEU = \d+\.\d\d ", text, re.M)
    assert re.search(
        r"Translated \d+ sentences \(\d+ tokens\) in [\d.]+s \([\d.]+ sentences/s, [\d.]+ tokens/s\)", text
    )
    assert result["bleu"] == pytest.approx(float(re.search(r"BLEU = (\S+)", text).group(1)), abs=0.01)


def test_sampling_the_top_token_equals_greedy_beam(tiny_data_bin, lm_checkpoint, capsys):
    flags = (
        "--batch-size",
        "16",
        "--max-len-b",
        "6",
        "--sample-break-mode",
        "eos",
        "--prefix-size",
        "1",
        "--nbest",
        "1",
        "--beam",
        "1",
    )
    _, greedy = generate(capsys, tiny_data_bin, lm_checkpoint, *flags)
    _, sampled = generate(capsys, tiny_data_bin, lm_checkpoint, *flags, "--sampling", "--sampling-topk", "1")
    assert parse(greedy) == parse(sampled)
    assert len(parse(greedy)) == 80 * 5


def test_user_errors(tiny_data_bin, lm_checkpoint, capsys):
    from fairseq_cli.generate import main

    with pytest.raises(ConfigError, match="--path is required"):
        main([str(tiny_data_bin)])
    with pytest.raises(ConfigError, match="--sampling requires --nbest"):
        main([str(tiny_data_bin), "--path", lm_checkpoint, "--sampling"])


def test_interactive_reads_a_file(tiny_data_bin, lm_checkpoint, tmp_path, capsys):
    from fairseq_cli.interactive import main

    (tmp_path / "in.txt").write_text("MACBETH .\nthe king\n")
    capsys.readouterr()
    assert (
        main(
            [
                str(tiny_data_bin),
                "--path",
                lm_checkpoint,
                "--input",
                str(tmp_path / "in.txt"),
                "--beam",
                "2",
                "--max-len-b",
                "5",
            ]
        )
        == 2
    )
    records = parse(capsys.readouterr().out)
    assert "".join(r[0] for r in records) == "SWHDP" * 2
    assert [r[1][2].split()[:2] for r in records if r[0] == "H"] == [["MACBETH", "."], ["the", "king"]]


def test_interactive_from_a_pipe_with_the_installed_command(tiny_data_bin, lm_checkpoint):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [os.path.join(os.path.dirname(sys.executable), "fairseq-interactive")]
    if not os.path.exists(command[0]):
        command = [sys.executable, "-m", "fairseq_cli.interactive"]
    proc = subprocess.run(
        [
            *command,
            str(tiny_data_bin),
            "--path",
            lm_checkpoint,
            "--beam",
            "3",
            "--nbest",
            "2",
            "--buffer-size",
            "2",
            "--batch-size",
            "2",
            "--max-len-b",
            "6",
        ],
        input="the king\nMACBETH .\nwhat is\n",
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    records = parse(proc.stdout)
    check_hypothesis_lines(records, nbest=2)
    assert [r[1][0] for r in records if r[0] == "S"] == ["0", "1", "2"]
    assert [r[1][1] for r in records if r[0] == "S"] == ["the king", "MACBETH .", "what is"]
    assert "Type the input sentence and press return:" in proc.stdout


def test_options_of_the_other_command_are_one_line_errors(tiny_data_bin, lm_checkpoint):
    """--constraints belongs to fairseq-interactive, --score-reference to fairseq-generate: one line each,
    said before the model is built."""
    from fairseq_cli.generate import main as generate
    from fairseq_cli.interactive import main as interactive

    with pytest.raises(ConfigError, match="use fairseq-interactive"):
        generate([str(tiny_data_bin), "--path", lm_checkpoint, "--constraints"])
    with pytest.raises(ConfigError, match="use fairseq-generate"):
        interactive([str(tiny_data_bin), "--path", lm_checkpoint, "--score-reference"])
