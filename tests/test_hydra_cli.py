"""fairseq-hydra-train as users drive it: their own YAML, sweeps, launcher/sweeper plugins, --user-dir."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch
import yaml
from test_cli import command, run

ROOT = Path(__file__).resolve().parent.parent
PLUGIN = ROOT / "examples" / "user_dir" / "lstm_lm_plugin"
PLUGIN_CONFIG = ROOT / "examples" / "user_dir" / "config"
TINY = ["task.tokens_per_sample=32", "dataset.max_tokens=256", "dataset.num_workers=0", "dataset.max_valid_steps=3"]


@pytest.fixture(scope="module")
def data_bin(tiny_data_bin):
    return tiny_data_bin


def ckpt(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_fairseq_style_external_config_trains_and_cli_override_wins(data_bin, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    # The shape of fairseq's documentation example (wiki103.yaml), with a tiny model.
    (conf / "wiki103.yaml").write_text(f"""# @package _group_
common:
  log_format: json
  log_interval: 1
task:
  _name: language_modeling
  data: {data_bin}
  tokens_per_sample: 32
model:
  _name: transformer_lm
  decoder_layers: 1
  decoder_embed_dim: 32
  decoder_ffn_embed_dim: 64
  decoder_attention_heads: 2
criterion: cross_entropy
optimizer: adam
lr_scheduler:
  _name: cosine
optimization:
  lr: [0.25]
  max_update: 20
dataset:
  batch_size: 2
  num_workers: 0
""")
    run(
        [
            command("fairseq-hydra-train"),
            "--config-dir",
            str(conf),
            "--config-name",
            "wiki103",
            "optimization.max_update=3",
            "model.decoder_layers=2",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
    )
    state = ckpt(tmp_path / "run" / "checkpoints" / "checkpoint_last.pt")
    cfg = state["cfg"]
    assert state["num_updates"] == 3  # the command line beat the YAML's max_update: 20
    assert cfg["model"]["decoder_layers"] == 2 and cfg["model"]["decoder_embed_dim"] == 32
    assert cfg["optimization"]["lr"] == [0.25] and cfg["lr_scheduler"]["_name"] == "cosine"
    assert cfg["lr_scheduler"]["max_update"] == 3 and cfg["optimizer"]["adam_eps"] == 1e-8
    assert (tmp_path / "run" / ".hydra" / "config.yaml").is_file() and (tmp_path / "run" / "train.log").is_file()


def test_two_by_two_sweep_gets_four_run_directories(data_bin, tmp_path):
    out = tmp_path / "sweep"
    run(
        [
            command("fairseq-hydra-train"),
            "-m",
            "task=language_modeling",
            f"task.data={data_bin}",
            "model=transformer_lm",
            "model.decoder_layers=1",
            "model.decoder_embed_dim=32",
            "model.decoder_ffn_embed_dim=64",
            "model.decoder_attention_heads=2",
            *TINY,
            "optimization.max_update=2",
            "optimization.lr=[0.001],[0.0005]",
            "model.dropout=0.1,0.3",
            f"hydra.sweep.dir={out}",
        ],
        cwd=tmp_path,
    )
    jobs = sorted(p for p in out.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1", "2", "3"]
    seen = set()
    for job in jobs:
        state = ckpt(job / "checkpoints" / "checkpoint_best.pt")
        seen.add((tuple(state["cfg"]["optimization"]["lr"]), state["cfg"]["model"]["dropout"]))
        assert (job / ".hydra" / "config.yaml").is_file() and (job / ".hydra" / "overrides.yaml").is_file()
        log = (job / "train.log").read_text()
        assert "valid on 'valid' subset" in log and str(job / "checkpoints") in log
        assert (job / "tensorboard").is_dir()
    assert seen == {((0.001,), 0.1), ((0.001,), 0.3), ((0.0005,), 0.1), ((0.0005,), 0.3)}


def test_task_function_returns_the_best_validation_loss(data_bin, tmp_path, monkeypatch):
    from conftest import tiny_lm_overrides

    from fairseq_cli.hydra_train import hydra_main
    from fairseq_lite.options.compose import compose_config

    cfg = compose_config(tiny_lm_overrides(data_bin, tmp_path, max_update=4))
    best = hydra_main(cfg)
    assert best == ckpt(tmp_path / "checkpoint_best.pt")["extra_state"]["best"]
    assert isinstance(best, float) and 0 < best < 20


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is None,
    reason="hydra-optuna-sweeper is not installed (pip install 'fairseq-lite[sweep]')",
)
def test_optuna_sweeper_minimizes_the_returned_validation_loss(data_bin, tmp_path):
    out = tmp_path / "optuna"
    run(
        [
            command("fairseq-hydra-train"),
            "-m",
            "hydra/sweeper=optuna",
            "hydra.sweeper.n_trials=2",
            "hydra.sweeper.direction=minimize",
            "hydra.sweeper.sampler.seed=1",
            "task=language_modeling",
            f"task.data={data_bin}",
            "model=transformer_lm",
            "model.decoder_layers=1",
            "model.decoder_ffn_embed_dim=64",
            "model.decoder_attention_heads=2",
            *TINY,
            "optimization.max_update=2",
            "model.decoder_embed_dim=choice(16,32)",
            f"hydra.sweep.dir={out}",
        ],
        cwd=tmp_path,
    )
    result = yaml.safe_load((out / "optimization_results.yaml").read_text())
    bests = [
        ckpt(job / "checkpoints" / "checkpoint_best.pt")["extra_state"]["best"]
        for job in out.iterdir()
        if (job / "checkpoints").is_dir()
    ]
    assert len(bests) == 2 and result["best_value"] == pytest.approx(min(bests))


@pytest.mark.skipif(
    importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is None,
    reason="hydra-submitit-launcher is not installed (pip install 'fairseq-lite[slurm]')",
)
def test_submitit_slurm_launcher_composes_with_our_config(data_bin, tmp_path):
    out = run(
        [
            command("fairseq-hydra-train"),
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.gpus_per_node=8",
            "task=language_modeling",
            f"task.data={data_bin}",
            "model=transformer_lm",
            "--cfg",
            "hydra",
        ],
        cwd=tmp_path,
    ).stdout
    launcher = yaml.safe_load(out)["hydra"]["launcher"]
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["gpus_per_node"] == 8


def test_cfg_job_prints_the_config_without_training(data_bin, tmp_path):
    out = run(
        [
            command("fairseq-hydra-train"),
            "task=language_modeling",
            f"task.data={data_bin}",
            "model=transformer_lm/transformer_lm_gpt",
            "model.decoder_layers=3",
            "--cfg",
            "job",
        ],
        cwd=tmp_path,
    ).stdout
    cfg = yaml.safe_load(out)
    assert cfg["model"]["decoder_layers"] == 3 and cfg["model"]["decoder_embed_dim"] == 768
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "checkpoints").exists()


def test_help_lists_config_groups(tmp_path):
    out = run([command("fairseq-hydra-train"), "--help"], cwd=tmp_path).stdout
    assert out.startswith("fairseq-hydra-train is powered by Hydra")
    groups = dict(line.split(": ", 1) for line in out.split("== Config ==")[0].splitlines() if ": " in line)
    assert "transformer_lm_gpt" in groups["model/transformer_lm"].split(", ")
    assert {"adam", "nag", "composite"} <= set(groups["optimizer"].split(", "))


def test_user_dir_plugin_with_both_commands_and_a_sweep(data_bin, tmp_path):
    hydra_args = [
        "--config-dir",
        str(PLUGIN_CONFIG),
        f"common.user_dir={PLUGIN}",
        "task=language_modeling",
        f"task.data={data_bin}",
        "model=toy_lstm_lm/toy_lstm_lm_tiny",
        *TINY,
        "optimization.max_update=2",
    ]
    run([command("fairseq-hydra-train"), *hydra_args, f"hydra.run.dir={tmp_path / 'hydra'}"], cwd=tmp_path)
    state = ckpt(tmp_path / "hydra" / "checkpoints" / "checkpoint_last.pt")
    assert state["cfg"]["model"]["_name"] == "toy_lstm_lm" and state["cfg"]["model"]["embed_dim"] == 32
    assert any(k.startswith("decoder.lstm.") for k in state["model"])

    run(
        [
            command("fairseq-train"),
            str(data_bin),
            "--user-dir",
            str(PLUGIN),
            "--task",
            "language_modeling",
            "--arch",
            "toy_lstm_lm_tiny",
            "--tokens-per-sample",
            "32",
            "--max-tokens",
            "256",
            "--num-workers",
            "0",
            "--max-update",
            "2",
            "--max-valid-steps",
            "3",
            "--save-dir",
            str(tmp_path / "legacy"),
        ],
        cwd=tmp_path,
    )
    legacy = ckpt(tmp_path / "legacy" / "checkpoint_last.pt")
    assert legacy["cfg"]["model"] == state["cfg"]["model"]

    run(
        [
            command("fairseq-hydra-train"),
            "-m",
            *hydra_args,
            "model.embed_dim=16,32",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=tmp_path,
    )
    dims = sorted(
        ckpt(tmp_path / "sweep" / j / "checkpoints" / "checkpoint_last.pt")["cfg"]["model"]["embed_dim"]
        for j in ("0", "1")
    )
    assert dims == [16, 32]


def test_importing_a_plugin_twice_is_harmless():
    from fairseq_lite.options.initialize import import_user_module
    from fairseq_lite.registry import MODEL_REGISTRY

    import_user_module(str(PLUGIN))
    import_user_module(str(PLUGIN))
    assert "toy_lstm_lm" in MODEL_REGISTRY


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_user_dir_plugin_on_two_ranks(data_bin, tmp_path):
    """The dataclass plugin (examples/user_dir) on 2 DDP ranks: every spawned worker imports it."""
    run(
        [
            command("fairseq-hydra-train"),
            "--config-dir",
            str(PLUGIN_CONFIG),
            f"common.user_dir={PLUGIN}",
            "task=language_modeling",
            f"task.data={data_bin}",
            "model=toy_lstm_lm/toy_lstm_lm_tiny",
            *TINY,
            "optimization.max_update=2",
            "common.cpu=true",
            "distributed_training.distributed_world_size=2",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=tmp_path,
    )
    state = ckpt(tmp_path / "hydra" / "checkpoints" / "checkpoint_last.pt")
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2 and state["num_updates"] == 2
    assert state["cfg"]["model"]["_name"] == "toy_lstm_lm"


def test_help_shows_a_dataclass_plugins_flags_with_their_help(data_bin, tmp_path):
    out = run(
        [command("fairseq-train"), str(data_bin), "--user-dir", str(PLUGIN), "--task", "language_modeling"]
        + ["--arch", "toy_lstm_lm_tiny", "--help"],
        cwd=tmp_path,
    ).stdout
    assert "model (toy_lstm_lm):" in out and "--embed-dim EMBED_DIM" in out
    assert "embedding and hidden size (default: 256)" in out and "--share-embeddings" in out


def test_a_criterion_that_cannot_be_summed_sees_every_ranks_outputs(data_bin, tmp_path):
    """logging_outputs_can_be_summed() False on 2 ranks x update_freq 2: reduce_metrics gets the 4
    micro-batches' logging outputs, gathered from both ranks (fairseq's all_gather_list path), and in
    validation every batch of both ranks, as many as one rank alone validates."""

    def logs(world_size):
        out = run(
            [
                command("fairseq-hydra-train"),
                f"common.user_dir={ROOT / 'tests' / 'plugins' / 'gathered_criterion'}",
                "task=language_modeling",
                f"task.data={data_bin}",
                "model=transformer_lm/transformer_lm_gpt",
                "model.decoder_layers=1",
                "model.decoder_embed_dim=32",
                "model.decoder_input_dim=32",
                "model.decoder_output_dim=32",
                "model.decoder_ffn_embed_dim=64",
                "model.decoder_attention_heads=2",
                "criterion=gathered_cross_entropy",
                *TINY,
                "optimization.max_update=2",
                "optimization.update_freq=[2]",
                "common.cpu=true",
                "common.log_format=json",
                "common.log_interval=1",
                f"distributed_training.distributed_world_size={world_size}",
                f"checkpoint.save_dir={tmp_path / f'ck{world_size}'}",
                f"hydra.run.dir={tmp_path / f'hydra{world_size}'}",
            ],
            cwd=tmp_path,
        )
        return [json.loads(line.split(" | ", 3)[-1]) for line in out.stdout.splitlines() if " | {" in line]

    two = logs(2)
    train = [log for log in two if "outputs_seen" in log and "update" in log]
    assert train and all(log["outputs_seen"] == "4" for log in train)
    valid = [log["valid_outputs_seen"] for log in two if "valid_outputs_seen" in log]
    alone = [log["valid_outputs_seen"] for log in logs(1) if "valid_outputs_seen" in log]
    assert valid and valid == alone
