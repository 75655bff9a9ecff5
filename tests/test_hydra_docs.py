"""The use cases of fairseq 0.12.2's docs/hydra_integration.md, run as written there (the data path and
the number of updates changed only), with fairseq's own YAML conventions (`# @package _group_`, `_name`)."""

import shutil

import torch
from test_cli import command, run

# Use case 2's external config, as the document shows it (data path and max_update changed).
WIKI103 = """# @package _group_

model:
  _name: transformer_lm
distributed_training:
  distributed_world_size: 1
dataset:
  batch_size: 2
task:
  _name: language_modeling
  data: {data}
  add_bos_token: false
  max_target_positions: 1024
optimization:
  max_update: 2
  lr: [ 0.25 ]
criterion: cross_entropy
optimizer: adam
lr_scheduler:
  _name: cosine
"""


def last_checkpoint(run_dir):
    (path,) = run_dir.glob("outputs/*/*/checkpoints/checkpoint_last.pt")
    return torch.load(path, map_location="cpu", weights_only=True)


def drop_checkpoints(run_dir):
    """These runs train fairseq's full-size models: free the disk their checkpoints take."""
    shutil.rmtree(run_dir / "outputs", ignore_errors=True)


def test_use_case_1_command_line_overrides(tiny_data_bin, tmp_path):
    run(
        [
            command("fairseq-hydra-train"),
            "distributed_training.distributed_world_size=1",
            "dataset.batch_size=2",
            f"task.data={tiny_data_bin}",
            "model=transformer_lm/transformer_lm_gpt",
            "task=language_modeling",
            "optimization.max_update=2",
        ],
        cwd=tmp_path,
    )
    state = last_checkpoint(tmp_path)
    assert state["num_updates"] == 2
    model = state["cfg"]["model"]
    assert (model["_name"], model["decoder_layers"], model["decoder_embed_dim"]) == ("transformer_lm", 12, 768)
    drop_checkpoints(tmp_path)


def test_use_case_2_external_config_replaces_the_bundled_tree(tiny_data_bin, tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "wiki103.yaml").write_text(WIKI103.format(data=tiny_data_bin))
    # As the document writes it, and with the file's suffix (which fairseq users write too).
    for name in ("wiki103", "wiki103.yaml"):
        run([command("fairseq-hydra-train"), "--config-path", str(configs), "--config-name", name], cwd=tmp_path)
        state = last_checkpoint(tmp_path)
        cfg = state["cfg"]
        assert state["num_updates"] == 2 and cfg["model"]["_name"] == "transformer_lm"
        assert cfg["model"]["decoder_layers"] == 6  # the dataclass's default: no bundled arch YAML applies
        assert cfg["lr_scheduler"]["_name"] == "cosine" and cfg["optimization"]["lr"] == [0.25]
        assert cfg["task"]["max_target_positions"] == 1024 and cfg["dataset"]["batch_size"] == 2
        drop_checkpoints(tmp_path)


def test_use_case_3_external_config_directory_with_group_files(tiny_data_bin, tmp_path):
    """`model=transformer_lm/2_layers` from the user's --config-dir: a `# @package _group_` file without
    `_name` configures the model its directory names (here a small copy of transformer_lm_gpt.yaml's keys;
    tests/test_hydra_docs_fairseq_yaml.py runs fairseq's own file)."""
    group = tmp_path / "configs" / "model" / "transformer_lm"
    group.mkdir(parents=True)
    (group / "2_layers.yaml").write_text(
        "# @package _group_\n"
        'activation_fn: "gelu"\n'
        "dropout: 0.1\n"
        "attention_dropout: 0.1\n"
        "decoder_embed_dim: 64\n"
        "decoder_output_dim: 64\n"
        "decoder_input_dim: 64\n"
        "decoder_ffn_embed_dim: 128\n"
        "decoder_layers: 2\n"
        "decoder_attention_heads: 4\n"
        "decoder_normalize_before: true\n"
    )
    run(
        [
            command("fairseq-hydra-train"),
            "distributed_training.distributed_world_size=1",
            "dataset.batch_size=2",
            f"task.data={tiny_data_bin}",
            "model=transformer_lm/2_layers",
            "task=language_modeling",
            "optimization.max_update=2",
            "--config-dir",
            str(tmp_path / "configs"),
        ],
        cwd=tmp_path,
    )
    state = last_checkpoint(tmp_path)
    model = state["cfg"]["model"]
    assert state["num_updates"] == 2 and model["_name"] == "transformer_lm"
    assert (model["decoder_layers"], model["decoder_embed_dim"], model["activation_fn"]) == (2, 64, "gelu")
    drop_checkpoints(tmp_path)


def test_group_files_with_package_group_compose_from_python(tiny_data_bin, tmp_path):
    from fairseq_lite.options import compose_config

    group = tmp_path / "model" / "transformer_lm"
    group.mkdir(parents=True)
    (group / "tiny.yaml").write_text("# @package _group_\ndecoder_layers: 3\ndecoder_embed_dim: 48\n")
    cfg = compose_config(
        ["task=language_modeling", f"task.data={tiny_data_bin}", "model=transformer_lm/tiny"], config_dir=str(tmp_path)
    )
    assert cfg.model._name == "transformer_lm" and (cfg.model.decoder_layers, cfg.model.decoder_embed_dim) == (3, 48)
