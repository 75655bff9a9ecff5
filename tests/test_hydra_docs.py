"""The use cases of fairseq 0.12.2's docs/hydra_integration.md, run as written there (the data path and
the number of updates changed only), with fairseq's own YAML conventions (`# @package _group_`, `_name`)."""

import glob
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
import torch
from test_cli import command, run

GPT_YAML = "fairseq/config/model/transformer_lm/transformer_lm_gpt.yaml"

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


@pytest.fixture(scope="session")
def fairseqs_gpt_yaml(tmp_path_factory):
    """fairseq 0.12.2's own transformer_lm_gpt.yaml, read at run time (never committed here): from the
    reference install of ../shared/bench/fairseq_reference.sh when there is one, else from fairseq's
    wheel on PyPI (downloaded, not installed)."""
    ref = os.environ.get("FAIRSEQ_REF", "/tmp/fairseq-ref")
    for path in glob.glob(f"{ref}/lib/python*/site-packages/{GPT_YAML}"):
        return open(path, encoding="utf-8").read()
    wheels = tmp_path_factory.mktemp("fairseq-wheel")
    download = [sys.executable, "-m", "pip", "download", "fairseq==0.12.2", "--no-deps", "--only-binary=:all:"]
    download += ["--python-version", "3.8", "--platform", "manylinux1_x86_64", "-d", str(wheels), "-q"]
    try:
        subprocess.run(download, check=True, capture_output=True, timeout=300)
    except (subprocess.SubprocessError, OSError):
        pytest.skip("fairseq 0.12.2 is neither installed as a reference nor downloadable from PyPI here")
    (wheel,) = wheels.glob("fairseq-0.12.2-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(GPT_YAML).decode("utf-8")


def test_use_case_3_with_fairseqs_own_transformer_lm_gpt_yaml(tiny_data_bin, tmp_path, fairseqs_gpt_yaml):
    """The document's case 3 exactly: `2_layers.yaml` is fairseq's transformer_lm_gpt.yaml with
    decoder_layers set to 2 (its `# @package _group_` header and every one of its keys included)."""
    assert fairseqs_gpt_yaml.startswith("# @package _group_") and "decoder_layers: 12" in fairseqs_gpt_yaml
    group = tmp_path / "configs" / "model" / "transformer_lm"
    group.mkdir(parents=True)
    (group / "2_layers.yaml").write_text(fairseqs_gpt_yaml.replace("decoder_layers: 12", "decoder_layers: 2"))
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
    assert (model["decoder_layers"], model["decoder_embed_dim"], model["decoder_input_dim"]) == (2, 768, 768)
    assert model["activation_fn"] == "gelu" and model["decoder_normalize_before"] is True
    drop_checkpoints(tmp_path)
