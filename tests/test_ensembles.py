"""Ensembles (`--path a.pt:b.pt`) of every model kind: two copies of a checkpoint fairseq 0.12.2 trained give that
checkpoint's own hypotheses and scores (the ensemble averages the models' probabilities, and each model keeps its
own incremental state: a shared one would feed one copy's cache to the other)."""

import shutil

import pytest
from test_fairseq_checkpoints import CHECKPOINTS, FIXTURES
from test_generate_cli import parse

JOINED = [str(FIXTURES / "joined")]
MULTI = [str(FIXTURES / "multi")]
LANGS = str(FIXTURES / "inputs" / "multi_langs.txt")
MODELS = {
    "transformer": ("transformer_iwslt_de_en.pt", JOINED),
    "lstm": ("lstm.pt", JOINED),
    "fconv": ("fconv.pt", JOINED),
    "fconv_self_att": ("fconv_self_att.pt", JOINED),
    "lightconv": ("lightconv.pt", JOINED),
    "transformer_align": ("transformer_align.pt", JOINED),
    "multilingual_transformer": (
        "multilingual.pt",
        JOINED
        + ["--task", "multilingual_translation", "--lang-pairs", "en-es,es-en", "--encoder-langtok", "tgt"]
        + ["--decoder-langtok", "--source-lang", "es", "--target-lang", "en"],
    ),
    "translation_multi_simple_epoch": (
        "multi_simple_epoch.pt",
        MULTI
        + ["--task", "translation_multi_simple_epoch", "--encoder-langtok", "src", "--decoder-langtok"]
        + ["--lang-dict", LANGS, "--lang-pairs", "en-es,es-en", "--source-lang", "en", "--target-lang", "es"],
    ),
}


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_an_ensemble_of_two_copies_gives_the_models_hypotheses(kind, tmp_path, capsys):
    from fairseq_cli.generate import main as generate

    name, data = MODELS[kind]
    copy = tmp_path / name
    shutil.copy(CHECKPOINTS / name, copy)

    def hypotheses(path: str) -> dict:
        capsys.readouterr()
        generate([*data, "--path", path, "--gen-subset", "valid", "--beam", "3", "--max-len-b", "10"] + ["--cpu"])
        return {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}

    one = hypotheses(str(CHECKPOINTS / name))
    two = hypotheses(f"{CHECKPOINTS / name}:{copy}")
    assert len(one) >= 20 and one.keys() == two.keys()
    for sample_id, (_, score, text) in one.items():
        assert two[sample_id][2] == text
        assert float(two[sample_id][1]) == pytest.approx(float(score), abs=1e-4)
