"""fairseq-preprocess: byte-identical to fairseq 0.12.2 (fixtures), parallel == serial, clean failures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fairseq_cli import preprocess
from fairseq_lite.data import binarizer
from fairseq_lite.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "fairseq_0.12.2"
REPO = Path(__file__).resolve().parents[1]

# name of the fixture directory -> the flags fairseq was run with (see the fixtures' README.md)
CASES = {
    "mono": "--only-source --trainpref inputs/train.txt --validpref inputs/valid.txt,inputs/edge.txt "
    "--testpref inputs/test.txt",
    "edge": "--only-source --trainpref inputs/edge.txt",
    "threshold": "--only-source --trainpref inputs/train.txt --validpref inputs/valid.txt --thresholdsrc 3",
    "nwords": "--only-source --trainpref inputs/train.txt --validpref inputs/valid.txt --nwordssrc 100",
    "pf1": "--only-source --trainpref inputs/train.txt --validpref inputs/valid.txt --padding-factor 1",
    "bi": "-s en -t es --trainpref inputs/bi.train --validpref inputs/bi.valid",
    "joined": "-s en -t es --joined-dictionary --trainpref inputs/bi.train --validpref inputs/bi.valid",
    "srcdict": "--only-source --srcdict mono/dict.txt --trainpref inputs/test.txt",
    "blank": "--only-source --trainpref inputs/blank.txt --validpref inputs/empty.txt",
}


@pytest.fixture
def in_fixtures(monkeypatch):
    # fairseq ran with paths relative to the fixture dir; they appear in the log lines we compare.
    monkeypatch.chdir(FIXTURES)


def data_files(directory: Path):
    return sorted(p.name for p in directory.iterdir() if p.name != "preprocess.log")


def summary_lines(log: Path):
    return [
        line
        for line in log.read_text(encoding="utf-8").splitlines()
        if not line.startswith("Namespace(") and not line.startswith("Wrote preprocessed data")
    ]


def assert_same_as_fixture(name: str, destdir: Path):
    expected = FIXTURES / name
    assert data_files(destdir) == data_files(expected)
    for fname in data_files(expected):
        assert (destdir / fname).read_bytes() == (expected / fname).read_bytes(), f"{name}/{fname} differs"


@pytest.mark.parametrize("name", sorted(CASES))
def test_byte_identical_to_fairseq(name, tmp_path, in_fixtures):
    destdir = tmp_path / name
    preprocess.main(CASES[name].split() + ["--destdir", str(destdir)])
    assert_same_as_fixture(name, destdir)
    assert summary_lines(destdir / "preprocess.log") == summary_lines(FIXTURES / name / "preprocess.log")


@pytest.mark.parametrize("name", ["mono", "bi"])
def test_workers_give_identical_bytes(name, tmp_path, in_fixtures):
    preprocess.main(CASES[name].split() + ["--destdir", str(tmp_path / "w2"), "--workers", "2"])
    assert_same_as_fixture(name, tmp_path / "w2")
    assert not [p for p in (tmp_path / "w2").iterdir() if p.name.startswith(".")]  # scratch removed


def test_many_workers_on_small_file(tmp_path, in_fixtures):
    # More workers than lines: most chunks are empty, the result must not change.
    preprocess.main(CASES["blank"].split() + ["--destdir", str(tmp_path / "out"), "--workers", "5"])
    assert_same_as_fixture("blank", tmp_path / "out")


def test_module_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [sys.executable, "-m", "fairseq_cli.preprocess", *CASES["bi"].split(), "--destdir", str(tmp_path / "bi")],
        cwd=FIXTURES,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert_same_as_fixture("bi", tmp_path / "bi")
    assert "[es] inputs/bi.valid.es: 40 sents, 895 tokens, 22.0% replaced (by <unk>)" in result.stdout


@pytest.mark.parametrize("newline", ["\r\n", "\r", "mixed"])
def test_universal_newlines(newline, tmp_path):
    text = (FIXTURES / "inputs" / "edge.txt").read_bytes()
    if newline == "mixed":
        converted = text.replace(b"\n", b"\r", 3)
    else:
        converted = text.replace(b"\n", newline.encode())
    src = tmp_path / "edge.txt"
    src.write_bytes(converted)
    for workers in ("1", "2"):
        out = tmp_path / f"out{workers}"
        preprocess.main(
            [
                "--only-source",
                "--srcdict",
                str(FIXTURES / "edge" / "dict.txt"),
                "--trainpref",
                str(src),
                "--destdir",
                str(out),
                "--workers",
                workers,
            ]
        )
        for ext in ("bin", "idx"):
            assert (out / f"train.{ext}").read_bytes() == (FIXTURES / "edge" / f"train.{ext}").read_bytes()


def test_dict_only(tmp_path, in_fixtures):
    preprocess.main(CASES["bi"].split() + ["--destdir", str(tmp_path / "d"), "--dict-only"])
    assert data_files(tmp_path / "d") == ["dict.en.txt", "dict.es.txt"]
    for name in ("dict.en.txt", "dict.es.txt"):
        assert (tmp_path / "d" / name).read_bytes() == (FIXTURES / "bi" / name).read_bytes()


def test_reuse_tgtdict_and_srcdict(tmp_path, in_fixtures):
    preprocess.main(
        CASES["bi"].split()
        + ["--destdir", str(tmp_path / "r"), "--srcdict", "bi/dict.en.txt", "--tgtdict", "bi/dict.es.txt"]
    )
    assert_same_as_fixture("bi", tmp_path / "r")


# ---------------------------------------------------------------- failures


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as excinfo:
        preprocess.cli_main(args)
    err = capsys.readouterr().err.strip()
    assert excinfo.value.code == 1
    assert len(err.splitlines()) == 1 and err.startswith("fairseq-preprocess: error: ")
    return err


def test_missing_input_file(tmp_path, capsys):
    err = run_cli(
        ["--only-source", "--trainpref", str(tmp_path / "nope.txt"), "--destdir", str(tmp_path / "o")], capsys
    )
    assert "nope.txt" in err and "--trainpref" in err
    assert not (tmp_path / "o").exists()  # checked before anything is written


def test_missing_valid_file_for_one_language(tmp_path, capsys, in_fixtures):
    err = run_cli(
        [
            "-s",
            "en",
            "-t",
            "es",
            "--trainpref",
            "inputs/bi.train",
            "--validpref",
            "inputs/nope",
            "--destdir",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert "inputs/nope.en" in err and "--validpref" in err


def test_missing_srcdict(tmp_path, capsys, in_fixtures):
    err = run_cli(
        [
            "--only-source",
            "--trainpref",
            "inputs/train.txt",
            "--srcdict",
            "nodict.txt",
            "--destdir",
            str(tmp_path / "o"),
        ],
        capsys,
    )
    assert "--srcdict" in err and "nodict.txt" in err


def test_destdir_not_creatable(tmp_path, capsys, in_fixtures):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    err = run_cli(["--only-source", "--trainpref", "inputs/train.txt", "--destdir", str(blocker / "sub")], capsys)
    assert "--destdir" in err and str(blocker / "sub") in err


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_destdir_not_writable(tmp_path, capsys, in_fixtures):
    destdir = tmp_path / "ro"
    destdir.mkdir()
    destdir.chmod(0o500)
    try:
        err = run_cli(["--only-source", "--trainpref", "inputs/train.txt", "--destdir", str(destdir)], capsys)
    finally:
        destdir.chmod(0o700)
    assert "not writable" in err


@pytest.mark.parametrize(
    "impl,words", [("fasta", "not supported"), ("bogus", "unknown"), ("raw", "copies a language pair's text")]
)
def test_dataset_impl(impl, words, tmp_path, capsys, in_fixtures):
    err = run_cli(
        ["--only-source", "--trainpref", "inputs/train.txt", "--dataset-impl", impl, "--destdir", str(tmp_path / "o")],
        capsys,
    )
    assert impl in err and words in err and "mmap" in err


def test_raw_copies_each_language_file_under_the_pair_name(tmp_path, in_fixtures):
    """fairseq's --dataset-impl raw: the dictionaries, and each split's text as it was, named as fairseq
    names it (train.en-es.en), for a task that reads the text itself."""
    args = ["-s", "en", "-t", "es", "--trainpref", "inputs/bi.train", "--validpref", "inputs/bi.valid"]
    preprocess.cli_main([*args, "--dataset-impl", "raw", "--destdir", str(tmp_path / "o")])
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert written == ["dict.en.txt", "dict.es.txt", "preprocess.log"] + [
        f"{split}.en-es.{lang}" for split in ("train", "valid") for lang in ("en", "es")
    ]
    assert (tmp_path / "o" / "valid.en-es.es").read_bytes() == open("inputs/bi.valid.es", "rb").read()
    assert (tmp_path / "o" / "dict.en.txt").read_text() == (FIXTURES / "bi" / "dict.en.txt").read_text()


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--alignfile", "a.txt"], "--alignfile"),
        (["--align-suffix", "align"], "--align-suffix"),
        (["--workers", "0"], "--workers"),
    ],
)
def test_unsupported_or_bad_flags(extra, words, tmp_path, capsys, in_fixtures):
    err = run_cli(
        ["--only-source", "--trainpref", "inputs/train.txt", "--destdir", str(tmp_path / "o"), *extra], capsys
    )
    assert words in err


def test_bilingual_needs_both_languages(tmp_path):
    with pytest.raises(ConfigError, match="--target-lang"):
        preprocess.main(["-s", "en", "--trainpref", "x", "--destdir", str(tmp_path)])


def test_trainpref_needed_without_dict(tmp_path):
    with pytest.raises(ConfigError, match="--trainpref"):
        preprocess.main(["--only-source", "--destdir", str(tmp_path)])


def test_existing_dictionary_is_not_overwritten(tmp_path, capsys, in_fixtures):
    args = ["--only-source", "--trainpref", "inputs/test.txt", "--destdir", str(tmp_path / "o")]
    preprocess.main(args)
    before = (tmp_path / "o" / "dict.txt").read_bytes()
    err = run_cli(args, capsys)
    assert "dict.txt already exists" in err and "--srcdict" in err
    assert (tmp_path / "o" / "dict.txt").read_bytes() == before


def test_invalid_utf8_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"fine line\nanother\nbroken \xff byte\n")
    err = run_cli(["--only-source", "--trainpref", str(bad), "--destdir", str(tmp_path / "o")], capsys)
    assert f"{bad}:3:" in err and "UTF-8" in err


@pytest.mark.parametrize("workers", [1, 2])
def test_interrupted_binarization_leaves_no_partial_files(workers, tmp_path, monkeypatch, in_fixtures):
    calls = {"n": 0}
    real = binarizer.encode_lines

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
        return real(*args, **kwargs)

    monkeypatch.setattr(binarizer, "encode_lines", flaky)
    destdir = tmp_path / "o"
    with pytest.raises(KeyboardInterrupt):
        preprocess.main(CASES["mono"].split() + ["--destdir", str(destdir), "--workers", str(workers)])
    assert sorted(p.name for p in destdir.iterdir()) == ["dict.txt", "preprocess.log"]


def test_data_error_from_main_is_exception(tmp_path):
    with pytest.raises(DataError, match="nope"):
        preprocess.main(["--only-source", "--trainpref", str(tmp_path / "nope"), "--destdir", str(tmp_path / "o")])


def test_rerun_into_fresh_copy_reuses_nothing_stale(tmp_path, in_fixtures):
    # A stale dataset under the final name is replaced whole, never appended to.
    destdir = tmp_path / "o"
    shutil.copytree(FIXTURES / "bi", destdir)
    (destdir / "dict.en.txt").unlink()
    (destdir / "dict.es.txt").unlink()
    (destdir / "train.en-es.en.bin").write_bytes(b"garbage" * 1000)
    preprocess.main(CASES["bi"].split() + ["--destdir", str(destdir)])
    assert_same_as_fixture("bi", destdir)


@pytest.mark.parametrize("impl", ["lazy", "cached"])
def test_lazy_and_cached_write_fairseqs_older_format_byte_for_byte(impl, tmp_path, in_fixtures):
    """--dataset-impl lazy/cached: fairseq's TorchNet format (lazy/ was written by fairseq 0.12.2 with lazy;
    cached writes the same files), with two workers merging their parts."""
    args = ["-s", "en", "-t", "es", "--srcdict", "joined/dict.en.txt", "--tgtdict", "joined/dict.es.txt"]
    preprocess.cli_main([*args, "--validpref", "inputs/bi.valid", "--workers", "2", "--dataset-impl", impl,
                         "--destdir", str(tmp_path / "o")])  # fmt: skip
    for name in ("valid.en-es.en", "valid.en-es.es"):
        for ext in (".bin", ".idx"):
            assert (tmp_path / "o" / (name + ext)).read_bytes() == (Path("lazy") / (name + ext)).read_bytes()


def test_lazy_data_reads_as_the_same_items_as_mmap(in_fixtures):
    """A data-bin directory in fairseq's older format (fairseq's lazy/) trains and translates as its mmap
    twin (joined/, the same sentences and dictionaries)."""
    from fairseq_lite.data.indexed_dataset_loading import load_indexed_dataset

    for lang in ("en", "es"):
        old = load_indexed_dataset(f"lazy/valid.en-es.{lang}", None)
        new = load_indexed_dataset(f"joined/valid.en-es.{lang}", None)
        assert type(old).__name__ == "IndexedDataset" and len(old) == len(new) == 40
        assert list(old.sizes) == list(new.sizes)
        assert all(torch.equal(old[i], new[i].long()) for i in range(len(new)))


def test_lazy_data_passes_the_checks_before_a_run_and_may_be_empty(tmp_path, in_fixtures):
    """fairseq-train's data checks open the older format as the loaders do; an empty split (an empty .bin)
    reads as no items, and a truncated index is a one-line error."""
    from omegaconf import OmegaConf

    from fairseq_lite.data.indexed_dataset_loading import load_indexed_dataset
    from fairseq_lite.tasks.translation import TranslationConfig, TranslationTask

    cfg = OmegaConf.merge(OmegaConf.structured(TranslationConfig), {"data": "lazy", "train_subset": "train"})
    TranslationTask.check_data(cfg, None, ["valid"])
    preprocess.cli_main(["--only-source", "--srcdict", "joined/dict.en.txt", "--trainpref", "inputs/empty.txt",
                         "--dataset-impl", "lazy", "--destdir", str(tmp_path / "e")])  # fmt: skip
    assert len(load_indexed_dataset(str(tmp_path / "e" / "train"), None)) == 0
    idx = tmp_path / "e" / "train.idx"
    idx.write_bytes(idx.read_bytes()[:-4])
    with pytest.raises(DataError, match="train.idx is truncated"):
        load_indexed_dataset(str(tmp_path / "e" / "train"), None)
