"""A fairseq plugin in the add_args style that subclasses the built-in TransformerModel, TransformerDecoder
and TranslationTask (tests/plugins/transformer_subclass): the subclasses keep all of their parents'
options in both commands, `super().build_model(args, task)` builds the parent's model from `args`, beam
search gives the decoder subclass one encoder row per hypothesis, and the checkpoint generates (with
--print-alignment) without --user-dir."""

import json
from pathlib import Path

import pytest
import torch
from test_cli import command, run
from test_translation_task import bilingual_bin  # noqa: F401 (a fixture)

from fairseq_lite.checkpoint import load_checkpoint_to_cpu

PLUGIN = Path(__file__).parent / "plugins" / "transformer_subclass"
COMMON = ["--criterion", "label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "0.003"]
COMMON += ["--max-tokens", "400", "--num-workers", "0", "--log-format", "json", "--log-interval", "2"]


def json_lines(text):
    lines = [line.split(" | ", 3)[-1] for line in text.splitlines() if " | {" in line]
    return [json.loads(line) for line in lines]


def test_fairseq_train_keeps_the_parents_options_and_generate_reads_encoder_rows_per_hypothesis(
    bilingual_bin,  # noqa: F811
    tmp_path,
):
    train = [
        command("fairseq-train"),
        str(bilingual_bin),
        "--user-dir",
        str(PLUGIN),
        "--task",
        "counted_translation",
        "--count-scale",
        "0.5",  # the task subclass's own flag
        "-s",
        "en",  # the parent task's flags
        "-t",
        "es",
        "--arch",
        "tempered_transformer_tiny",
        "--logit-temperature",
        "1.5",  # the model subclass's own flag
        "--encoder-layers",
        "2",  # the parent model's flags
        "--share-all-embeddings",
        "--label-smoothing",
        "0.1",
        "--max-update",
        "6",
        "--save-dir",
        str(tmp_path / "ck"),
        *COMMON,
    ]
    out = run(train, cwd=tmp_path)
    logs = [log for log in json_lines(out.stdout + out.stderr) if "scaled_ntokens" in log]
    assert logs and all(
        float(log["scaled_ntokens"]) == pytest.approx(float(log["wpb"]) * 0.5, abs=0.1) for log in logs if "wpb" in log
    )

    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    model = state["cfg"]["model"]
    assert model["_name"] == "tempered_transformer" and model["logit_temperature"] == 1.5
    assert model["encoder_layers"] == 2 and model["encoder_embed_dim"] == 32 and model["share_all_embeddings"]
    assert state["cfg"]["task"]["count_scale"] == 0.5
    assert "encoder.layers.1.fc1.weight" in state["model"] and "decoder.layers.1.fc1.weight" not in state["model"]
    # Shared embeddings: one tensor for encoder, decoder and output projection.
    assert "decoder.embed_tokens.weight" not in state["model"] or torch.equal(
        state["model"]["decoder.embed_tokens.weight"], state["model"]["encoder.embed_tokens.weight"]
    )

    generated = run(
        [command("fairseq-generate"), str(bilingual_bin), "--path", str(tmp_path / "ck" / "checkpoint_last.pt")]
        + ["--beam", "3", "--max-len-b", "8", "--batch-size", "8", "--print-alignment"],
        cwd=tmp_path,
    )
    lines = generated.stdout.splitlines()
    hypotheses = [line for line in lines if line.startswith("H-")]
    alignments = [line for line in lines if line.startswith("A-")]
    assert len(hypotheses) == 40 and len(alignments) == 40
    for hypo, align in zip(hypotheses, alignments):
        words = len(hypo.split("\t")[2].split())
        pairs = align.split("\t")[1].split()
        assert [int(p.split("-")[1]) for p in pairs] == list(range(words))


def test_hydra_train_sets_the_parents_and_the_subclasses_options(bilingual_bin, tmp_path):  # noqa: F811
    sizes = dict(encoder_embed_dim=32, encoder_ffn_embed_dim=64, encoder_attention_heads=2, decoder_attention_heads=2)
    run(
        [
            command("fairseq-hydra-train"),
            f"common.user_dir={PLUGIN}",
            "task=counted_translation",
            f"task.data={bilingual_bin}",
            "task.count_scale=2",
            "model=tempered_transformer",
            "model.logit_temperature=3",
            "model.encoder_layers=1",
            "model.decoder_layers=1",
            *(f"model.{k}={v}" for k, v in sizes.items()),
            "criterion=label_smoothed_cross_entropy",
            "optimizer=adam",
            "optimization.lr=[0.003]",
            "optimization.max_update=2",
            "dataset.max_tokens=400",
            "dataset.num_workers=0",
            f"checkpoint.save_dir={tmp_path / 'ck'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    assert state["cfg"]["model"]["logit_temperature"] == 3.0 and state["cfg"]["task"]["count_scale"] == 2.0
    # The decoder's width was left to the architecture the model's build_model calls (base_architecture).
    assert state["model"]["decoder.layers.0.fc1.weight"].shape == (64, 32)
