"""The translation task end to end, in process: a tiny KJV -> RV1909 corpus binarized with
fairseq-preprocess, a tiny transformer trained with label smoothing, BLEU during validation, and the
legacy fairseq-train flags composing to the same config as Hydra overrides."""

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import reduced_metrics

from fairseq_lite.dataclass.configs import GenerationConfig
from fairseq_lite.errors import DataError
from fairseq_lite.generation import build_generator
from fairseq_lite.options.compose import compose_config
from fairseq_lite.registry import TASK_REGISTRY
from fairseq_lite.tasks.translation import bleu_from_stats, infer_language_pair
from fairseq_lite.training import train

TSV = Path(__file__).resolve().parent.parent / "examples" / "translation" / "data" / "kjv_rv1909.en-es.subset.tsv"
TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> str:
    return " ".join(TOKEN.findall(text.lower()))


@pytest.fixture(scope="module")
def bilingual_bin(tmp_path_factory) -> Path:
    """Short verses (<= 16 words a side), word-tokenized: 300 train, 40 valid, 40 test pairs."""
    from fairseq_cli.preprocess import main as preprocess

    pairs = []
    for line in TSV.read_text(encoding="utf-8").splitlines():
        en, es = (tokenize(side) for side in line.split("\t"))
        if len(en.split()) <= 16 and len(es.split()) <= 16:
            pairs.append((en, es))
    text = tmp_path_factory.mktemp("bitext")
    for split, chunk in (("train", pairs[:300]), ("valid", pairs[300:340]), ("test", pairs[340:380])):
        for side, lang in enumerate(("en", "es")):
            (text / f"{split}.{lang}").write_text("".join(p[side] + "\n" for p in chunk), encoding="utf-8")
    dest = tmp_path_factory.mktemp("bitext-bin")
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
            str(dest),
            "--workers",
            "1",
        ]
    )
    return dest


TINY_MODEL = {
    "encoder_layers": 1,
    "decoder_layers": 1,
    "encoder_embed_dim": 32,
    "decoder_embed_dim": 32,
    "encoder_ffn_embed_dim": 64,
    "decoder_ffn_embed_dim": 64,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
}


def overrides(data: Path, save_dir: Path, max_update: int = 30, extra=()):
    return [
        "task=translation",
        f"task.data={data}",
        "model=transformer/transformer_iwslt_de_en",
        *(f"model.{k}={v}" for k, v in TINY_MODEL.items()),
        "model.share_all_embeddings=true",
        "criterion=label_smoothed_cross_entropy",
        "criterion.label_smoothing=0.1",
        "optimizer=adam",
        "optimization.lr=[0.003]",
        "lr_scheduler=inverse_sqrt",
        "lr_scheduler.warmup_updates=4",
        f"optimization.max_update={max_update}",
        "dataset.max_tokens=400",
        "dataset.num_workers=0",
        f"checkpoint.save_dir={save_dir}",
        "common.log_format=json",
        "common.log_interval=1",
        *extra,
    ]


def json_logs(caplog):
    return [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]


def test_training_lowers_loss(bilingual_bin, tmp_path, caplog):
    caplog.set_level("INFO")
    cfg = compose_config(overrides(bilingual_bin, tmp_path, extra=["criterion.report_accuracy=true"]))
    assert (cfg.task.source_lang, cfg.task.target_lang) == (None, None)
    best = train(cfg)
    assert (cfg.task.source_lang, cfg.task.target_lang) == ("en", "es")  # inferred from the files
    inner = [line for line in json_logs(caplog) if "num_updates" in line and "loss" in line]
    for field in ("loss", "nll_loss", "ppl", "accuracy"):
        assert field in inner[0], field
    assert float(inner[-1]["loss"]) < float(inner[0]["loss"]) - 1.0
    valid = [line for line in json_logs(caplog) if "valid_loss" in line]
    assert valid and best == pytest.approx(float(valid[-1]["valid_loss"]), rel=1e-3)
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["cfg"]["task"]["source_lang"] == "en" and state["cfg"]["model"]["encoder_layers"] == 1


def built(bilingual_bin, tmp_path, extra=()):
    cfg = compose_config(overrides(bilingual_bin, tmp_path, extra=extra))
    task = TASK_REGISTRY.build(cfg.task)
    torch.manual_seed(0)
    model = task.build_model(cfg.model).eval()
    return task, model, task.build_criterion(cfg.criterion)


def test_batches_and_positions(bilingual_bin, tmp_path):
    task, model, _ = built(bilingual_bin, tmp_path)
    task.load_dataset("valid")
    assert task.max_positions() == (1024, 1024) and model.max_positions() == (1024, 1024)
    batch = next(task.get_batch_iterator(task.dataset("valid"), max_tokens=400).next_epoch_itr(shuffle=False))
    src = batch["net_input"]["src_tokens"]
    assert src[:, -1].eq(task.source_dictionary.eos()).all()  # left-padded: every row ends in eos
    assert batch["net_input"]["prev_output_tokens"][:, 0].eq(task.target_dictionary.eos()).all()


def test_eval_bleu_statistics_sum_to_corpus_bleu(bilingual_bin, tmp_path):
    import sacrebleu

    task, model, criterion = built(
        bilingual_bin,
        tmp_path,
        extra=["task.eval_bleu=true", 'task.eval_bleu_args=\'{"beam": 3, "max_len_b": 8, "lenpen": 1.5}\''],
    )
    # validation decodes with fairseq-generate's beam search and eval_bleu_args' options
    generator = build_generator(task, [model], GenerationConfig(beam=3, max_len_b=8, lenpen=1.5))
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    totals, hyps, refs = {}, [], []
    for batch in task.get_batch_iterator(dataset, max_tokens=200).next_epoch_itr(shuffle=False):
        _, _, log = task.valid_step(batch, model, criterion)
        for key, value in log.items():
            totals[key] = totals.get(key, 0) + value
        tgt = task.target_dictionary
        for hypos, ref in zip(generator.generate(batch), batch["target"]):
            hyps.append(tgt.string(hypos[0]["tokens"], unk_string="UNKNOWNTOKENINHYP"))
            refs.append(tgt.string(ref[ref.ne(tgt.pad())], unk_string="UNKNOWNTOKENINREF"))
    assert {f"_bleu_counts_{i}" for i in range(4)} <= set(totals) and totals["_bleu_ref_len"] > 0
    expected = sacrebleu.corpus_bleu(hyps, [refs])
    assert totals["_bleu_sys_len"] == expected.sys_len and totals["_bleu_ref_len"] == expected.ref_len
    stats = reduced_metrics(lambda logs: task.reduce_metrics(logs, criterion), [totals])
    assert stats["bleu"] == round(expected.score, 2) == bleu_from_stats(totals)
    assert "bleu" not in reduced_metrics(criterion.reduce_metrics, [totals])


def test_best_checkpoint_by_bleu(bilingual_bin, tmp_path, caplog):
    caplog.set_level("INFO")
    cfg = compose_config(
        overrides(
            bilingual_bin,
            tmp_path,
            max_update=16,
            extra=[
                "task.eval_bleu=true",
                "task.eval_bleu_args='{\"max_len_b\": 8}'",
                "checkpoint.save_interval_updates=8",
                "checkpoint.best_checkpoint_metric=bleu",
                "checkpoint.maximize_best_checkpoint_metric=true",
            ],
        )
    )
    best = train(cfg)
    valid = [line for line in json_logs(caplog) if "valid_bleu" in line]
    assert len(valid) >= 2
    assert best == pytest.approx(max(float(v["valid_bleu"]) for v in valid))
    assert (tmp_path / "checkpoint_best.pt").exists()


def test_legacy_flags_compose_to_the_hydra_config(bilingual_bin, tmp_path):
    from fairseq_cli.train import legacy_overrides

    legacy = legacy_overrides(
        [
            str(bilingual_bin),
            "--task",
            "translation",
            "--source-lang",
            "en",
            "--target-lang",
            "es",
            "--arch",
            "transformer_iwslt_de_en",
            "--encoder-layers",
            "1",
            "--decoder-layers",
            "1",
            "--encoder-embed-dim",
            "32",
            "--decoder-embed-dim",
            "32",
            "--encoder-ffn-embed-dim",
            "64",
            "--decoder-ffn-embed-dim",
            "64",
            "--encoder-attention-heads",
            "2",
            "--decoder-attention-heads",
            "2",
            "--share-all-embeddings",
            "--criterion",
            "label_smoothed_cross_entropy",
            "--label-smoothing",
            "0.1",
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--lr-scheduler",
            "inverse_sqrt",
            "--warmup-updates",
            "4",
            "--max-update",
            "30",
            "--max-tokens",
            "400",
            "--num-workers",
            "0",
            "--save-dir",
            str(tmp_path),
            "--log-format",
            "json",
            "--log-interval",
            "1",
            "--eval-bleu",
            "--eval-bleu-args",
            '{"max_len_b": 8}',
            "--eval-bleu-remove-bpe",
            "sentencepiece",
        ]
    )
    hydra = overrides(
        bilingual_bin,
        tmp_path,
        extra=[
            "task.source_lang=en",
            "task.target_lang=es",
            "task.eval_bleu=true",
            "task.eval_bleu_args='{\"max_len_b\": 8}'",
            "task.eval_bleu_remove_bpe=sentencepiece",
        ],
    )
    assert compose_config(legacy) == compose_config(hydra)


def test_language_pair_inference_and_data_errors(bilingual_bin, tmp_path):
    assert infer_language_pair(str(bilingual_bin)) == ("en", "es")
    assert infer_language_pair(str(bilingual_bin), target_lang="en") == ("es", "en")
    both = tmp_path / "both"
    both.mkdir()
    for name in ("train.en-es.en.idx", "train.de-en.de.idx"):
        (both / name).touch()
    with pytest.raises(DataError, match="de-en, en-es"):
        infer_language_pair(str(both))
    assert infer_language_pair(str(both), source_lang="de") == ("de", "en")

    no_dict = tmp_path / "no-dict"
    no_dict.mkdir()
    (no_dict / "train.en-es.en.idx").touch()
    cfg = compose_config(overrides(no_dict, tmp_path))
    with pytest.raises(DataError, match="dict.en.txt"):
        TASK_REGISTRY.build(cfg.task)
    task, _, _ = built(bilingual_bin, tmp_path)
    with pytest.raises(DataError, match="split 'nope'"):
        task.load_dataset("nope")


def test_reverse_direction_reads_the_same_files(bilingual_bin, tmp_path):
    cfg = compose_config(overrides(bilingual_bin, tmp_path, extra=["task.source_lang=es", "task.target_lang=en"]))
    task = TASK_REGISTRY.build(cfg.task)
    task.load_dataset("valid")
    forward = built(bilingual_bin, tmp_path)[0]
    forward.load_dataset("valid")
    assert torch.equal(task.dataset("valid")[0]["source"], forward.dataset("valid")[0]["target"])


def test_prepare_script_writes_sentencepiece_splits(tmp_path, monkeypatch):
    import runpy
    import sys

    from omegaconf import OmegaConf

    import fairseq_lite.data.encoders  # noqa: F401  (registers bpe=sentencepiece)
    from fairseq_lite.registry import BPE_REGISTRY

    subset = tmp_path / "pairs.tsv"
    subset.write_text(
        "".join(line + "\n" for line in TSV.read_text(encoding="utf-8").splitlines()[:300]), encoding="utf-8"
    )
    script = TSV.parent.parent / "prepare_kjv_rv1909.py"
    out = tmp_path / "out"
    monkeypatch.setattr(
        sys,
        "argv",
        [
            str(script),
            "--out",
            str(out),
            "--input",
            str(subset),
            "--valid-size",
            "20",
            "--test-size",
            "20",
            "--vocab-size",
            "400",
        ],
    )
    runpy.run_path(str(script), run_name="__main__")
    counts = {
        split: len((out / f"{split}.en").read_text(encoding="utf-8").splitlines())
        for split in ("train", "valid", "test")
    }
    assert counts == {"train": 260, "valid": 20, "test": 20}

    bpe_cfg = OmegaConf.structured(BPE_REGISTRY.get("sentencepiece").dataclass)
    bpe_cfg.sentencepiece_model = str(out / "spm.model")
    bpe_cfg._name = "sentencepiece"
    bpe = BPE_REGISTRY.build(bpe_cfg)
    raw = (out / "valid.raw.es").read_text(encoding="utf-8").splitlines()
    pieces = (out / "valid.es").read_text(encoding="utf-8").splitlines()
    assert pieces[0] == bpe.encode(raw[0]) and "\u2581" in pieces[0]
    assert [bpe.decode(p) for p in pieces] == [" ".join(r.split()) for r in raw]
    assert bpe.is_beginning_of_word(pieces[0].split()[0]) and bpe.is_beginning_of_word("</s>")


def test_training_combines_numbered_shards_with_the_primary_upsampled(bilingual_bin, tmp_path):
    """fairseq's train, train1, train2, ...: one training set, the first shard repeated --upsample-primary
    times; validation and generation read the named split alone."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(bilingual_bin, data)
    for path in list(data.glob("train.en-es.*")):
        shutil.copy(path, data / path.name.replace("train.", "train1.", 1))
    for upsample, expected in ((-1, 600), (3, 1200)):
        cfg = compose_config(overrides(data, tmp_path / "ck", extra=[f"task.upsample_primary={upsample}"]))
        task = TASK_REGISTRY.build(cfg.task)
        task.load_dataset("train", combine=True)
        assert len(task.dataset("train")) == expected
        task.load_dataset("train")
        assert len(task.dataset("train")) == 300
    # the trainer asks for the combined set
    from fairseq_lite.training.build import build_trainer

    trainer = build_trainer(compose_config(overrides(data, tmp_path / "ck2")))
    trainer.get_train_iterator(epoch=1)
    assert len(trainer.task.dataset("train")) == 600


def test_raw_text_data_trains_and_reads_like_the_binarized(tmp_path):
    """fairseq-preprocess --dataset-impl raw copies the text; the translation task reads it, encoded with
    the dictionary as binarizing would have: the same batches as the binarized data."""
    from fairseq_cli.preprocess import main as preprocess

    text = tmp_path / "text"
    text.mkdir()
    pairs = [line.split("\t") for line in TSV.read_text(encoding="utf-8").splitlines()[:60]]
    for split, chunk in (("train", pairs[:50]), ("valid", pairs[50:])):
        for side, lang in enumerate(("en", "es")):
            (text / f"{split}.{lang}").write_text("".join(tokenize(p[side]) + "\n" for p in chunk), encoding="utf-8")
    prefs = ["--trainpref", str(text / "train"), "--validpref", str(text / "valid"), "--workers", "1"]
    common = ["--source-lang", "en", "--target-lang", "es", "--joined-dictionary", *prefs]
    preprocess([*common, "--destdir", str(tmp_path / "bin")])
    preprocess([*common, "--destdir", str(tmp_path / "raw"), "--dataset-impl", "raw"])
    assert (tmp_path / "raw" / "train.en-es.en").is_file() and not (tmp_path / "raw" / "train.en-es.en.bin").exists()
    items = {}
    for name in ("bin", "raw"):
        task = TASK_REGISTRY.build(compose_config(overrides(tmp_path / name, tmp_path / f"ck_{name}")).task)
        task.load_dataset("valid")
        dataset = task.dataset("valid")
        items[name] = [(dataset[i]["source"].tolist(), dataset[i]["target"].tolist()) for i in range(len(dataset))]
    assert items["raw"] == items["bin"] and len(items["raw"]) == 10
    train(compose_config(overrides(tmp_path / "raw", tmp_path / "ck", max_update=2)))
    assert (tmp_path / "ck" / "checkpoint_last.pt").exists()
