"""fairseq-generate on a tiny trained translation model (KJV -> RV1909 verses)."""

import re
from pathlib import Path

import pytest
import torch
from test_generate_cli import check_hypothesis_lines, parse

from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import train

TSV = Path(__file__).resolve().parent.parent / "examples" / "translation" / "data" / "kjv_rv1909.en-es.subset.tsv"
TOKEN = re.compile(r"\w+|[^\w\s]")


@pytest.fixture(scope="module")
def translation_checkpoint(tmp_path_factory):
    from fairseq_cli.preprocess import main as preprocess

    pairs = []
    for line in TSV.read_text(encoding="utf-8").splitlines():
        en, es = (" ".join(TOKEN.findall(side.lower())) for side in line.split("\t"))
        if len(en.split()) <= 12 and len(es.split()) <= 12:
            pairs.append((en, es))
    text = tmp_path_factory.mktemp("bitext")
    for split, chunk in (("train", pairs[:200]), ("valid", pairs[200:220]), ("test", pairs[220:244])):
        for side, lang in enumerate(("en", "es")):
            (text / f"{split}.{lang}").write_text("".join(p[side] + "\n" for p in chunk), encoding="utf-8")
    data = tmp_path_factory.mktemp("bitext-bin")
    preprocess(
        [
            "--source-lang",
            "en",
            "--target-lang",
            "es",
            "--joined-dictionary",
            "--trainpref",
            str(text / "train"),
            "--validpref",
            str(text / "valid"),
            "--testpref",
            str(text / "test"),
            "--destdir",
            str(data),
            "--workers",
            "1",
        ]
    )
    save_dir = tmp_path_factory.mktemp("mt-ckpt")
    sizes = {
        "encoder_layers": 1,
        "decoder_layers": 1,
        "encoder_embed_dim": 32,
        "decoder_embed_dim": 32,
        "encoder_ffn_embed_dim": 64,
        "decoder_ffn_embed_dim": 64,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
    }
    train(
        compose_config(
            [
                "task=translation",
                f"task.data={data}",
                "model=transformer/transformer_iwslt_de_en",
                *(f"model.{k}={v}" for k, v in sizes.items()),
                "model.share_all_embeddings=true",
                "criterion=label_smoothed_cross_entropy",
                "criterion.label_smoothing=0.1",
                "optimizer=adam",
                "optimization.lr=[0.003]",
                "lr_scheduler=inverse_sqrt",
                "lr_scheduler.warmup_updates=4",
                "optimization.max_update=20",
                "dataset.max_tokens=400",
                "dataset.num_workers=0",
                f"checkpoint.save_dir={save_dir}",
                "common.log_format=none",
            ]
        )
    )
    return data, str(save_dir / "checkpoint_last.pt")


def test_generate_translates_the_test_split(translation_checkpoint, capsys):
    from fairseq_cli.generate import main

    data, ckpt = translation_checkpoint
    capsys.readouterr()
    result = main(
        [
            str(data),
            "--path",
            ckpt,
            "--beam",
            "4",
            "--nbest",
            "2",
            "--batch-size",
            "8",
            "--max-len-a",
            "1.2",
            "--max-len-b",
            "3",
            "--source-lang",
            "en",
            "--target-lang",
            "es",
        ]
    )
    out = capsys.readouterr().out
    records = parse(out)
    check_hypothesis_lines(records, nbest=2)
    assert "".join(r[0] for r in records) == "STHDPHDP" * 24
    assert result["num_sentences"] == 24 and isinstance(result["bleu"], float)
    assert re.search(r"^Generate test with beam=4: BLEU4 = \d+\.\d\d, ", out, re.M)
    # --max-len-a/b bound each hypothesis by its (unpadded) source length... up to the batch's width.
    for _kind, (_sample_id, _, text) in (r for r in records if r[0] == "H"):
        assert len(text.split()) <= 1.2 * 13 + 3


def test_kv_cache_equals_full_recompute_on_a_trained_translation_model(translation_checkpoint):
    from fairseq_lite.checkpoint import load_model_for_inference
    from fairseq_lite.dataclass.configs import GenerationConfig
    from fairseq_lite.generation import build_generator

    data, ckpt = translation_checkpoint
    _, task, model = load_model_for_inference(ckpt, task_overrides={"data": str(data)})
    task.load_dataset("test")
    sample = next(iter(task.get_batch_iterator(task.dataset("test"), max_sentences=12).next_epoch_itr(shuffle=False)))
    cfg = GenerationConfig(beam=5, max_len_b=15, lenpen=1.3)
    cached = build_generator(task, [model], cfg).generate(sample)
    full = build_generator(task, [model], cfg, use_incremental=False).generate(sample)
    for a, b in zip(cached, full):
        assert [h["tokens"].tolist() for h in a] == [h["tokens"].tolist() for h in b]
        torch.testing.assert_close(
            torch.stack([h["score"] for h in a]), torch.stack([h["score"] for h in b]), atol=1e-5, rtol=0
        )


def test_an_ensemble_of_two_copies_gives_the_models_hypotheses(translation_checkpoint, capsys, tmp_path):
    """--path a.pt:b.pt (fairseq's ensemble: probabilities averaged, one cache per model)."""
    import shutil

    from fairseq_cli.generate import main

    data, ckpt = translation_checkpoint
    copy = tmp_path / "copy.pt"
    shutil.copy(ckpt, copy)

    def hypotheses(path):
        capsys.readouterr()
        main([str(data), "--path", path, "--beam", "4", "--batch-size", "8", "--max-len-b", "10"])
        return {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}

    one, two = hypotheses(ckpt), hypotheses(f"{ckpt}:{copy}")
    assert len(one) == len(two) == 24
    for sample_id, (_, score, text) in one.items():
        assert two[sample_id][2] == text and float(two[sample_id][1]) == pytest.approx(float(score), abs=1e-4)
