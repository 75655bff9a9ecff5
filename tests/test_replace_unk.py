"""fairseq-generate --replace-unk [ALIGN_DICT] on raw text data: each <unk> of a hypothesis becomes the
source word it is most aligned to (or that word's entry in the alignment dictionary)."""

import re
from pathlib import Path

import pytest

from fairseq_lite.utils import load_align_dict, replace_unk

TSV = Path(__file__).resolve().parent.parent / "examples" / "translation" / "data" / "kjv_rv1909.en-es.subset.tsv"
TOKEN = re.compile(r"\w+|[^\w\s]")


def test_replace_unk_copies_or_translates_the_aligned_source_word(tmp_path):
    hypo = "el <unk> de <unk>"
    alignment = [(0, 0), (2, 1), (1, 2), (5, 3)]  # (source, target) word pairs; source 5 is past the end
    assert replace_unk(hypo, "the lord of hosts", alignment, {}, "<unk>") == "el of de <unk>"
    assert replace_unk(hypo, "the lord of hosts", alignment, {"of": "de"}, "<unk>") == "el de de <unk>"
    (tmp_path / "dict.txt").write_text("lord Señor\nhosts ejércitos\n", encoding="utf-8")
    assert load_align_dict(str(tmp_path / "dict.txt")) == {"lord": "Señor", "hosts": "ejércitos"}
    assert load_align_dict("") == {} and load_align_dict(None) is None


@pytest.fixture(scope="module")
def raw_model(tmp_path_factory):
    from fairseq_cli.preprocess import main as preprocess
    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import train

    root = tmp_path_factory.mktemp("raw")
    pairs = [[" ".join(TOKEN.findall(s.lower())) for s in line.split("\t")] for line in TSV.read_text().splitlines()]
    for split, chunk in (("train", pairs[:260]), ("test", pairs[260:276])):
        for side, lang in enumerate(("en", "es")):
            (root / f"{split}.{lang}").write_text("".join(p[side] + "\n" for p in chunk), encoding="utf-8")
    # words seen once are <unk>: plenty to replace
    preprocess(["-s", "en", "-t", "es", "--trainpref", str(root / "train"), "--validpref", str(root / "test")]
               + ["--testpref", str(root / "test"), "--destdir", str(root / "bin"), "--dataset-impl", "raw"]
               + ["--thresholdsrc", "2", "--thresholdtgt", "2", "--workers", "1"])  # fmt: skip
    overrides = [
        "task=translation",
        f"task.data={root / 'bin'}",
        "model=transformer/transformer_tiny",
        "optimizer=adam",
        "optimization.lr=[0.005]",
        "optimization.max_update=30",
        "dataset.max_tokens=1000",
        "dataset.num_workers=0",
        f"checkpoint.save_dir={root / 'ck'}",
    ]
    train(compose_config(overrides))
    return root


def hypotheses(capsys, root, *flags):
    from fairseq_cli.generate import main as generate

    capsys.readouterr()
    generate([str(root / "bin"), "--path", str(root / "ck" / "checkpoint_last.pt"), "--beam", "2"]
             + ["--max-len-b", "10", *flags])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    sources = {line.split("\t")[0][2:]: line.split("\t")[1] for line in lines if line.startswith("S-")}
    return sources, {line.split("\t")[0][2:]: line.split("\t")[2] for line in lines if line.startswith("H-")}


def test_generate_replaces_unks_with_source_words(capsys, raw_model, tmp_path):
    _, plain = hypotheses(capsys, raw_model)
    sources, replaced = hypotheses(capsys, raw_model, "--replace-unk")
    assert any("<unk>" in h for h in plain.values())
    for sample_id, hypo in plain.items():
        words, new = hypo.split(), replaced[sample_id].split()
        assert len(words) == len(new)
        for old, word in zip(words, new):
            assert word == old if old != "<unk>" else word in sources[sample_id].split() + ["<unk>"]
    assert sum(h.count("<unk>") for h in replaced.values()) < sum(h.count("<unk>") for h in plain.values())
    # with an alignment dictionary, a source word becomes its entry
    source_words = {w for s in sources.values() for w in s.split()}
    (tmp_path / "align.txt").write_text("".join(f"{w} X_{w}\n" for w in source_words), encoding="utf-8")
    _, translated = hypotheses(capsys, raw_model, "--replace-unk", str(tmp_path / "align.txt"))
    for sample_id, hypo in plain.items():
        for old, word in zip(hypo.split(), translated[sample_id].split()):
            assert word == old if old != "<unk>" else word.startswith("X_") or word == "<unk>"
