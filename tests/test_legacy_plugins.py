"""fairseq's older component style (issue 13, item 2): a plugin with no dataclasses, whose model, criterion
and optimizer declare flags with `add_args(parser)` and are built from the flat `args` Namespace
(tests/plugins/legacy_plugin). Its flags are in fairseq-train's --help and parsed; fairseq-hydra-train sets
them as `model.gru_embed_dim=...`, in multirun jobs too; two DDP ranks train it; its checkpoint evaluates."""

import argparse
import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from test_cli import command, run

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.dataclass.legacy import UNSET, dataclass_from_add_args, legacy_namespace

PLUGIN = Path(__file__).parent / "plugins" / "legacy_plugin"
SMALL = ["--tokens-per-sample", "32", "--max-tokens", "256", "--num-workers", "0", "--no-progress-bar"]


def legacy_train(data, save_dir, *flags):
    return [
        command("fairseq-train"),
        str(data),
        "--user-dir",
        str(PLUGIN),
        "--task",
        "language_modeling",
        "--arch",
        "gru_tiny",
        "--optimizer",
        "legacy_sgd",
        "--criterion",
        "legacy_scaled_ce",
        "--lr",
        "0.1",
        "--save-dir",
        str(save_dir),
        *SMALL,
        *flags,
    ]


def test_flags_become_a_config_with_fairseqs_defaults():
    class Component:
        @staticmethod
        def add_args(parser):
            parser.add_argument("--embed-dim", type=int, metavar="N", help="width")
            parser.add_argument("--drop", type=float, default=0.1, help="dropout")
            parser.add_argument("--tie", action="store_true", help="tie")
            parser.add_argument("--no-bias", action="store_false", dest="bias", help="no bias")
            parser.add_argument("--betas", type=float, nargs="+", default=[0.9, 0.98], help="betas")
            parser.add_argument("--mode", choices=["a", "b"], default="a", help="mode")

    # A model's flags, as on fairseq's model-specific group (argument_default=SUPPRESS): a flag without a
    # default, switches included, is unset until given, so that an architecture's getattr default applies.
    model_dc = dataclass_from_add_args(Component, suppress_unset=True)
    fields = {f.name: f for f in dataclasses.fields(model_dc)}
    assert fields["embed_dim"].default is None and fields["embed_dim"].metadata[UNSET]
    assert fields["tie"].metadata[UNSET] and fields["bias"].metadata[UNSET]
    assert fields["drop"].default == 0.1 and not fields["drop"].metadata.get(UNSET)
    assert fields["betas"].default_factory() == [0.9, 0.98] and fields["mode"].metadata["choices"] == ["a", "b"]
    # Any other component's, as on fairseq's main parser: no default is None, a switch is off.
    fields = {f.name: f for f in dataclasses.fields(dataclass_from_add_args(Component))}
    assert fields["embed_dim"].default is None and not fields["embed_dim"].metadata.get(UNSET)
    assert fields["tie"].default is False and fields["bias"].default is True
    # fairseq's flat args: unset flags are absent (getattr's default applies), the own group wins.
    root = {
        "task": {"_name": "language_modeling", "drop": 0.5},
        "model": {"_name": "m", "embed_dim": None, "drop": 0.2},
    }
    args = legacy_namespace(root, "model", {"model": model_dc})
    assert not hasattr(args, "embed_dim") and args.drop == 0.2 and args.task == "language_modeling"
    assert args.arch == "m"


def test_fairseq_train_parses_the_flags_and_the_components_get_them(tiny_data_bin, tmp_path):
    out = run(
        legacy_train(
            tiny_data_bin,
            tmp_path / "ck",
            "--lm",
            "0.5",
            "--legacy-nesterov",
            "True",
            "--loss-scale-factor",
            "2.0",
            "--gru-embed-dim",
            "12",
            "--max-update",
            "4",
        ),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    cfg = state["cfg"]
    # The architecture filled what the user left unset (the hidden size from the embedding size given).
    assert cfg["model"]["gru_embed_dim"] == 12 and cfg["model"]["gru_hidden_dim"] == 24
    assert cfg["model"]["gru_layers_hint"] == 1  # an attribute the architecture sets without a flag
    assert state["model"]["decoder.gru.weight_hh_l0"].shape == (3 * 24, 24)
    group = state["last_optimizer_state"]["param_groups"][0]
    assert group["momentum"] == 0.5 and group["nesterov"] is True and group["lr"] == 0.1
    assert cfg["criterion"]["loss_scale_factor"] == 2.0
    evaluated = run(
        [command("fairseq-eval-lm"), str(tiny_data_bin), "--path", str(tmp_path / "ck" / "checkpoint_best.pt"), *SMALL],
        cwd=tmp_path,
    )
    assert evaluated.returncode == 0 and "Perplexity" in evaluated.stdout + evaluated.stderr, evaluated.stderr[-2000:]


def test_help_shows_the_flags_with_their_help(tiny_data_bin, tmp_path):
    out = run(legacy_train(tiny_data_bin, tmp_path / "ck", "--help"), cwd=tmp_path)
    assert out.returncode == 0
    assert "--gru-embed-dim N" in out.stdout and "dimension of the token embeddings" in out.stdout
    assert "--legacy-momentum M, --lm M" in out.stdout and "momentum factor (default: 0.0)" in out.stdout
    assert "--loss-scale-factor" in out.stdout
    assert "--gru-layers-hint" not in out.stdout  # set by the architecture only, as in fairseq


def test_a_bad_choice_or_value_is_one_line(tiny_data_bin, tmp_path):
    out = run(
        legacy_train(tiny_data_bin, tmp_path / "ck", "--gru-embed-dim", "abc", "--max-update", "1"),
        cwd=tmp_path,
        check=False,
    )
    assert out.returncode == 2 and "argument --gru-embed-dim: invalid int value: 'abc'" in out.stderr
    assert not (tmp_path / "ck").exists()


def hydra_args(data, save_dir, *extra):
    return [
        command("fairseq-hydra-train"),
        f"common.user_dir={PLUGIN}",
        "task=language_modeling",
        f"task.data={data}",
        "task.tokens_per_sample=32",
        "model=legacy_gru_lm",
        "optimizer=legacy_sgd",
        "criterion=legacy_scaled_ce",
        "optimization.lr=[0.1]",
        "dataset.max_tokens=256",
        "dataset.num_workers=0",
        *([f"checkpoint.save_dir={save_dir}"] if save_dir else []),
        *extra,
    ]


def test_hydra_train_sets_the_flags_as_config_keys_and_sweeps_them(tiny_data_bin, tmp_path):
    out = run(
        hydra_args(
            tiny_data_bin,
            tmp_path / "ck",
            "model.gru_embed_dim=10",
            "optimizer.legacy_momentum=0.9",
            "optimization.max_update=3",
            f"hydra.run.dir={tmp_path / 'run'}",
        ),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    assert state["cfg"]["model"]["gru_embed_dim"] == 10 and state["cfg"]["model"]["gru_hidden_dim"] is None
    assert state["model"]["decoder.gru.weight_hh_l0"].shape == (3 * 20, 20)  # build_model ran the architecture
    assert state["last_optimizer_state"]["param_groups"][0]["momentum"] == 0.9
    sweep = run(
        hydra_args(
            tiny_data_bin,
            None,
            "-m",
            "model.gru_embed_dim=6,8",
            "optimization.max_update=2",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ),
        cwd=tmp_path,
    )
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    widths = sorted(
        load_checkpoint_to_cpu(str(p))["model"]["decoder.embed.weight"].shape[1]
        for p in (tmp_path / "sweep").glob("*/checkpoints/checkpoint_last.pt")
    )
    assert widths == [6, 8]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is unavailable")
def test_two_ranks_train_the_legacy_plugin(tiny_data_bin, tmp_path):
    out = run(
        legacy_train(tiny_data_bin, tmp_path / "ck", "--max-update", "3", "--distributed-world-size", "2", "--cpu"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    assert state["cfg"]["distributed_training"]["distributed_world_size"] == 2
    assert state["last_optimizer_state"]["param_groups"][0]["lr"] == 0.1


def test_args_is_a_namespace_as_in_fairseq(tiny_data_bin):
    sys.path.insert(0, str(PLUGIN.parent))
    try:
        from fairseq_lite.options.compose import compose_config
        from fairseq_lite.training import build_trainer

        cfg = compose_config(
            [
                a
                for a in hydra_args(tiny_data_bin, "/tmp/unused", "optimization.max_update=1")[1:]
                if "save_dir" not in a
            ]
        )
        trainer = build_trainer(cfg)
    finally:
        sys.path.remove(str(PLUGIN.parent))
    args = trainer.model.built_with
    assert isinstance(args, argparse.Namespace)
    assert args.data == str(tiny_data_bin) and args.lr == [0.1] and args.arch == "legacy_gru_lm"
    assert args.task == "language_modeling" and args.optimizer == "legacy_sgd"


def test_arch_takes_a_model_name_that_has_no_architecture(tiny_data_bin, tmp_path):
    flags = legacy_train(tiny_data_bin, tmp_path / "ck", "--gru-embed-dim", "6", "--max-update", "1")
    flags[flags.index("gru_tiny")] = "legacy_gru_lm"
    assert run(flags, cwd=tmp_path).returncode == 0
    state = load_checkpoint_to_cpu(str(tmp_path / "ck" / "checkpoint_last.pt"))
    assert state["cfg"]["model"]["_name"] == "legacy_gru_lm" and state["cfg"]["model"]["gru_embed_dim"] == 6


def test_a_checkpoint_finds_its_plugin_or_says_which_is_missing(tiny_data_bin, tmp_path):
    import shutil

    shutil.copytree(PLUGIN, tmp_path / "old" / "moved_legacy_plugin")
    flags = legacy_train(tiny_data_bin, tmp_path / "ck", "--max-update", "1")
    flags[flags.index(str(PLUGIN))] = str(tmp_path / "old" / "moved_legacy_plugin")
    assert run(flags, cwd=tmp_path).returncode == 0
    shutil.move(tmp_path / "old", tmp_path / "new")
    evaluate = [
        command("fairseq-eval-lm"),
        str(tiny_data_bin),
        "--path",
        str(tmp_path / "ck" / "checkpoint_last.pt"),
        *SMALL,
    ]
    missing = run(evaluate, cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert (
        missing.stderr.strip()
        .splitlines()[-1]
        .endswith(
            f"was trained with the plugin {tmp_path / 'old' / 'moved_legacy_plugin'} (--user-dir), which is not there "
            "any more: give the plugin's path with --user-dir"
        )
    )
    found = run([*evaluate, "--user-dir", str(tmp_path / "new" / "moved_legacy_plugin")], cwd=tmp_path)
    assert "Perplexity" in found.stdout + found.stderr


def test_model_overrides_change_the_rebuilt_model(tiny_data_bin, tmp_path):
    from fairseq_lite.checkpoint.inference import load_model_for_inference, parse_model_overrides
    from fairseq_lite.errors import CheckpointError, ConfigError

    assert run(legacy_train(tiny_data_bin, tmp_path / "ck", "--max-update", "1"), cwd=tmp_path).returncode == 0
    path = str(tmp_path / "ck" / "checkpoint_last.pt")
    overrides = parse_model_overrides('{"gru_dropout": 0.5, "gru_tie": True}')
    cfg, _, model = load_model_for_inference(path, user_dir=str(PLUGIN), model_overrides=overrides)
    assert cfg.model.gru_dropout == 0.5 and model.decoder.dropout.p == 0.5 and cfg.model.gru_tie is True
    with pytest.raises(CheckpointError, match="'gru_dropoutt' is not a setting"):
        load_model_for_inference(path, user_dir=str(PLUGIN), model_overrides={"gru_dropoutt": 0.5})
    with pytest.raises(ConfigError, match="--model-overrides"):
        parse_model_overrides("mem_len=640")
