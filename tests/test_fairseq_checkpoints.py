"""Checkpoints written by fairseq 0.12.2 (tests/fixtures/fairseq_0.12.2/checkpoints, made by the real fairseq;
see the README there): fairseq-lite's eval-lm and generate give fairseq's figures on them, a run can start
from their weights, and what cannot be done with them is a one-line error."""

import argparse
import re
from pathlib import Path

import pytest
import torch
from test_generate_cli import parse

from fairseq_lite.checkpoint import load_checkpoint_to_cpu, load_model_for_inference
from fairseq_lite.errors import CheckpointError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "fairseq_0.12.2"
CHECKPOINTS = FIXTURES / "checkpoints"
LM = CHECKPOINTS / "transformer_lm.pt"
MT = CHECKPOINTS / "transformer_iwslt_de_en.pt"


def fairseq_state(path: Path) -> dict:
    with torch.serialization.safe_globals([argparse.Namespace]):
        return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("name", ["transformer_lm", "adaptive_lm"])
def test_eval_lm_gives_fairseqs_perplexity_on_a_fairseq_language_model(caplog, name):
    """transformer_lm: projected embeddings and output layer; adaptive_lm: adaptive input and a tied
    adaptive softmax (scored through the adaptive softmax, as fairseq does)."""
    from fairseq_cli.eval_lm import main as eval_lm

    caplog.set_level("INFO")
    result = eval_lm(
        [
            str(FIXTURES / "mono"),
            "--path",
            str(CHECKPOINTS / f"{name}.pt"),
            "--gen-subset",
            "valid",
            "--tokens-per-sample",
            "32",
            "--max-tokens",
            "256",
            "--num-workers",
            "0",
            "--cpu",
        ]
    )
    expected = (CHECKPOINTS / f"{name}.eval_lm_valid.txt").read_text().strip()
    loss, ppl = (float(x) for x in re.fullmatch(r"Loss \(base 2\): ([\d.]+), Perplexity: ([\d.]+)", expected).groups())
    assert result["loss"] == pytest.approx(loss, abs=6e-5)
    assert result["ppl"] == pytest.approx(ppl, abs=6e-3)
    assert any(r.getMessage() == expected for r in caplog.records)


def test_generate_gives_fairseqs_translations_on_a_fairseq_translation_model(capsys):
    from fairseq_cli.generate import main as generate

    generate(
        [
            str(FIXTURES / "joined"),
            "--path",
            str(MT),
            "--gen-subset",
            "valid",
            "--beam",
            "4",
            "--max-len-b",
            "12",
            "--batch-size",
            "16",
            "--num-workers",
            "0",
            "--cpu",
        ]
    )
    ours = {values[0]: values for kind, values in parse(capsys.readouterr().out) if kind == "H"}
    theirs = [
        line.split("\t")
        for line in (CHECKPOINTS / "transformer_iwslt_de_en.generate_valid.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    ]
    assert len(theirs) == 40 and len(ours) == 40
    for sample_id, score, text in ((h[0][2:], h[1], h[2]) for h in theirs):
        assert ours[sample_id][2] == text
        assert float(ours[sample_id][1]) == pytest.approx(float(score), abs=1e-4)


@pytest.mark.parametrize("mode", ["hard", "soft"])
def test_print_alignment_gives_fairseqs_alignments(capsys, mode):
    """--print-alignment hard|soft: the A- lines fairseq 0.12.2 prints for its own model."""
    from fairseq_cli.generate import main as generate

    generate(
        [str(FIXTURES / "joined"), "--path", str(MT), "--gen-subset", "valid", "--beam", "4", "--max-len-b", "12"]
        + ["--batch-size", "16", "--num-workers", "0", "--cpu", "--print-alignment", mode]
    )
    ours = {values[0]: values[1] for kind, values in parse(capsys.readouterr().out) if kind == "A"}
    theirs = dict(
        line.split("\t", 1)
        for line in (CHECKPOINTS / f"transformer_iwslt_de_en.generate_valid.align_{mode}.txt")
        .read_text(encoding="utf-8")
        .splitlines()
    )
    assert len(theirs) == 40 and len(ours) == 40
    for tag, alignment in theirs.items():
        if mode == "hard":
            assert ours[tag[2:]] == alignment
        else:
            rows = [[float(p) for p in row.split(",")] for row in alignment.split()]
            our_rows = [[float(p) for p in row.split(",")] for row in ours[tag[2:]].split()]
            assert len(our_rows) == len(rows) and all(len(a) == len(b) for a, b in zip(our_rows, rows))
            assert max(abs(a - b) for r, q in zip(our_rows, rows) for a, b in zip(r, q)) <= 2e-6


def test_only_fairseqs_bookkeeping_is_dropped_from_the_weights():
    raw = fairseq_state(MT)["model"]
    converted = load_checkpoint_to_cpu(str(MT))
    dropped = sorted(set(raw) - set(converted["model"]))
    assert dropped == sorted(
        [
            "encoder.version",
            "decoder.version",
            "encoder.embed_positions._float_tensor",
            "decoder.embed_positions._float_tensor",
        ]
        + [
            f"encoder.layers.{i}.{p}_{w}"
            for i in range(2)
            for p in ("in_proj", "out_proj", "fc1", "fc2")
            for w in ("weight", "bias")
        ]
    )
    _, _, model = load_model_for_inference(str(MT), task_overrides={"data": str(FIXTURES / "joined")})
    assert set(model.state_dict()) == set(converted["model"])


def test_a_run_starts_from_fairseq_weights_but_does_not_resume_fairseqs_training_state(tmp_path):
    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import train

    model_values = [
        "decoder_layers=2",
        "decoder_embed_dim=16",
        "decoder_ffn_embed_dim=32",
        "decoder_attention_heads=2",
        "decoder_input_dim=24",
        "decoder_output_dim=24",
        "share_decoder_input_output_embed=true",
    ]
    overrides = [
        "task=language_modeling",
        f"task.data={FIXTURES / 'mono'}",
        "task.tokens_per_sample=32",
        "model=transformer_lm",
        *(f"model.{v}" for v in model_values),
        "optimizer=adam",
        "optimization.lr=[1e-12]",
        "optimization.max_update=1",
        "dataset.max_tokens=256",
        "dataset.num_workers=0",
        "common.log_format=none",
        f"checkpoint.save_dir={tmp_path}",
        f"checkpoint.finetune_from_model={LM}",
    ]
    train(compose_config(overrides))
    tuned = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))["model"]
    fairseq_weights = fairseq_state(LM)["model"]
    for name, value in tuned.items():
        torch.testing.assert_close(value, fairseq_weights[name], atol=1e-8, rtol=0)

    (tmp_path / "resume").mkdir()
    resume = [o for o in overrides if not o.startswith("checkpoint.")]
    with pytest.raises(
        CheckpointError,
        match="was written by fairseq: its optimizer and data-iterator states cannot "
        "be resumed; start a new run from its weights with "
        "checkpoint.finetune_from_model=",
    ):
        train(compose_config([*resume, f"checkpoint.save_dir={tmp_path / 'resume'}", f"checkpoint.restore_file={LM}"]))


@pytest.mark.parametrize(
    "group, option, value",
    [
        ("model", "character_embeddings", True),
        ("model", "decoder_layers_to_keep", "0"),
        ("task", "output_dictionary_size", 100),
    ],
)
def test_a_fairseq_option_fairseq_lite_lacks_is_a_one_line_error(tmp_path, group, option, value):
    state = fairseq_state(LM)
    state["cfg"][group][option] = value
    path = tmp_path / "unsupported.pt"
    torch.save(state, path)
    with pytest.raises(
        CheckpointError,
        match=rf"unsupported\.pt: the fairseq {group} uses {option}={value!r}, "
        rf"which fairseq-lite does not implement",
    ):
        load_checkpoint_to_cpu(str(path))


def test_training_components_fairseq_lite_lacks_are_left_out_for_inference(tmp_path):
    """cpu_adam, reduce_lr_on_plateau, gpt2 bpe, moses: they shaped the training run, not the network."""
    state = fairseq_state(MT)
    state["cfg"]["optimizer"] = {"_name": "cpu_adam", "fp16_adam_stats": False}
    state["cfg"]["lr_scheduler"] = {"_name": "reduce_lr_on_plateau"}
    state["cfg"]["bpe"] = {"_name": "gpt2"}
    state["cfg"]["tokenizer"] = {"_name": "moses"}
    path = tmp_path / "nag.pt"
    torch.save(state, path)
    cfg, _, model = load_model_for_inference(str(path), task_overrides={"data": str(FIXTURES / "joined")})
    assert cfg.model._name == "transformer" and cfg.optimizer is None and cfg.bpe is None
    _, _, reference = load_model_for_inference(str(MT), task_overrides={"data": str(FIXTURES / "joined")})
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items()):
        assert torch.equal(a, b), name
