"""The config system: composition, architectures, legacy flags == hydra overrides, clear errors."""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fairseq_cli.train import legacy_overrides
from fairseq_lite.dataclass import FairseqDataclass
from fairseq_lite.dataclass.configs import FairseqConfig
from fairseq_lite.errors import ConfigError, RegistryError
from fairseq_lite.options.compose import bundled_config_dir, compose_config, to_plain_dict
from fairseq_lite.options.initialize import import_components
from fairseq_lite.registry import ARCH_REGISTRY, Registry

import_components()  # registers the built-in architectures, which parametrize a test below

ROOT = Path(__file__).resolve().parent.parent

HYDRA_ACCEPTANCE = [
    "task=language_modeling",
    "task.data=DATA",
    "model=transformer_lm/transformer_lm_gpt",
    "model.decoder_layers=2",
    "model.decoder_embed_dim=128",
    "model.decoder_input_dim=128",
    "model.decoder_output_dim=128",
    "model.decoder_ffn_embed_dim=512",
    "model.decoder_attention_heads=4",
    "optimizer=adam",
    "lr_scheduler=inverse_sqrt",
    "lr_scheduler.warmup_updates=100",
    "optimization.lr=[0.0005]",
    "optimization.max_update=50",
    "dataset.max_tokens=2048",
    "task.tokens_per_sample=128",
    "checkpoint.save_dir=DIR",
    "common.log_format=json",
]
LEGACY_ACCEPTANCE = [
    "DATA",
    "--task",
    "language_modeling",
    "--arch",
    "transformer_lm_gpt",
    "--decoder-layers",
    "2",
    "--decoder-embed-dim",
    "128",
    "--decoder-ffn-embed-dim",
    "512",
    "--decoder-attention-heads",
    "4",
    "--optimizer",
    "adam",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "100",
    "--lr",
    "0.0005",
    "--max-update",
    "50",
    "--max-tokens",
    "2048",
    "--tokens-per-sample",
    "128",
    "--save-dir",
    "DIR",
    "--log-format",
    "json",
]


def test_nested_defaults_use_default_factory():
    # A dataclass instance as a default is what makes fairseq 0.12.2 fail on Python 3.11.
    for f in dataclasses.fields(FairseqConfig):
        assert not dataclasses.is_dataclass(f.default), f.name


def test_arch_yaml_puts_values_into_model_and_overrides_win():
    cfg = compose_config(HYDRA_ACCEPTANCE)
    assert cfg.model._name == "transformer_lm"
    assert cfg.model.decoder_layers == 2 and cfg.model.decoder_embed_dim == 128
    assert cfg.model.activation_fn == "gelu"  # from the gpt architecture
    assert cfg.model.max_target_positions == 128  # interpolated from task.tokens_per_sample
    assert cfg.optimizer.lr == [0.0005] and cfg.lr_scheduler.lr == [0.0005]


def test_fairseq_docs_command_gets_sensible_defaults():
    cfg = compose_config(
        [
            "distributed_training.distributed_world_size=1",
            "dataset.batch_size=2",
            "task.data=DATA",
            "model=transformer_lm/transformer_lm_gpt",
            "task=language_modeling",
            "optimization.max_update=5",
        ]
    )
    assert cfg.optimizer._name == "adam" and cfg.lr_scheduler._name == "fixed"
    assert cfg.criterion._name == "cross_entropy" and cfg.model.decoder_layers == 12


def test_legacy_flags_resolve_to_the_same_config_as_hydra():
    hydra_cfg = to_plain_dict(compose_config(HYDRA_ACCEPTANCE))
    legacy_cfg = to_plain_dict(compose_config(legacy_overrides(LEGACY_ACCEPTANCE)))
    assert legacy_cfg == hydra_cfg


def test_legacy_list_and_tuple_flags():
    cfg = compose_config(
        legacy_overrides(
            [
                "DATA",
                "--task",
                "language_modeling",
                "--arch",
                "transformer_lm",
                "--adam-betas",
                "(0.9, 0.98)",
                "--update-freq",
                "16",
                "--lr",
                "0.25",
                "--share-decoder-input-output-embed",
            ]
        )
    )
    assert cfg.optimizer.adam_betas == "(0.9, 0.98)"
    assert cfg.optimization.update_freq == [16] and cfg.optimization.lr == [0.25]
    assert cfg.model.share_decoder_input_output_embed is True


@pytest.mark.parametrize("arch", sorted(ARCH_REGISTRY))
def test_bundled_arch_yaml_equals_the_python_architecture(arch):
    spec = importlib.util.spec_from_file_location("write_arch_configs", ROOT / "scripts" / "write_arch_configs.py")
    writer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(writer)
    entry = ARCH_REGISTRY[arch]
    path = Path(bundled_config_dir()) / "model" / entry.model / f"{arch}.yaml"
    assert path.read_text() == writer.arch_yaml(arch), f"rerun scripts/write_arch_configs.py ({path})"
    # the models whose positions follow the task's max_source_positions need a translation task
    tasks = {"transformer": "translation", "transformer_align": "translation"}
    tasks["multilingual_transformer"] = "multilingual_translation"
    task = tasks.get(entry.model, "language_modeling")
    model = compose_config([f"task={task}", "task.data=D", f"model={entry.model}/{arch}"]).model
    for key, value in entry.values().items():
        assert model[key] == value, key


def test_missing_required_value_says_how_to_set_it():
    with pytest.raises(ConfigError, match=r"task\.data is required.*task\.data=.*data directory as its first argument"):
        compose_config(["task=language_modeling", "model=transformer_lm"])


def test_no_model_lists_choices():
    with pytest.raises(ConfigError, match="no model selected.*transformer_lm"):
        compose_config(["task=language_modeling", "task.data=D"])


def test_unknown_arch_lists_choices():
    with pytest.raises(
        RegistryError, match="unknown architecture 'transformer_lm_gtp'.*did you mean 'transformer_lm_gpt'"
    ):
        legacy_overrides(["DATA", "--arch", "transformer_lm_gtp"])


def test_unknown_group_option_and_wrong_type_are_config_errors():
    with pytest.raises(ConfigError):
        compose_config(["task=language_modeling", "task.data=D", "model=transformer_lm/nope"])
    with pytest.raises(ConfigError):
        compose_config(["task=language_modeling", "task.data=D", "model=transformer_lm", "dataset.max_tokens=abc"])
    with pytest.raises(ConfigError):
        compose_config(["task=language_modeling", "task.data=D", "model=transformer_lm", "dataset.max_tokenz=5"])


def test_bare_component_names_and_name_dicts_are_typed():
    from fairseq_lite.options.compose import finalize_config
    from fairseq_lite.options.initialize import hydra_init, import_components

    import_components()
    hydra_init()
    cfg = OmegaConf.structured(FairseqConfig)
    cfg.task = {"_name": "language_modeling", "data": "D", "tokens_per_sample": 64}
    cfg.model = {"_name": "transformer_lm", "decoder_layers": 3}
    cfg.criterion, cfg.optimizer, cfg.lr_scheduler = "cross_entropy", "adam", {"_name": "cosine"}
    cfg = finalize_config(cfg)
    assert cfg.model.decoder_layers == 3 and cfg.model.decoder_embed_dim == 512
    assert cfg.model.max_target_positions == 64
    assert cfg.optimizer.adam_eps == 1e-8 and cfg.lr_scheduler.max_update == 0


def test_registry_rejects_duplicates_and_lists_choices():
    @dataclasses.dataclass
    class Cfg(FairseqDataclass):
        x: int = 1

    reg = Registry("thing")

    @reg.register("a", dataclass=Cfg)
    class A:
        def __init__(self, cfg):
            self.cfg = cfg

    with pytest.raises(RegistryError, match="duplicate thing 'a'"):

        @reg.register("a")
        class Other:
            pass

    with pytest.raises(RegistryError, match="unknown thing 'b'.*choose from: a"):
        reg.get("b")
    assert reg.build({"_name": "a", "x": 2}).cfg["x"] == 2


def test_old_checkpoint_config_loads_with_renames_new_defaults_and_dropped_keys(caplog):
    from fairseq_lite.options.compose import config_from_dict

    plain = to_plain_dict(compose_config(HYDRA_ACCEPTANCE))
    del plain["dataset"]["batch_size"]  # written before the rename
    plain["dataset"]["max_sentences"] = 7
    del plain["checkpoint"]["patience"]  # written before this field existed
    plain["common"]["old_flag_we_removed"] = 1  # a field that no longer exists
    cfg = config_from_dict(plain)
    assert cfg.dataset.batch_size == 7
    assert cfg.checkpoint.patience == -1
    assert "old_flag_we_removed" not in cfg.common
    assert cfg.model.decoder_layers == 2


def test_checkpoint_with_unknown_model_is_a_clear_error():
    from fairseq_lite.options.compose import config_from_dict

    plain = to_plain_dict(compose_config(HYDRA_ACCEPTANCE))
    plain["model"]["_name"] = "transformer_xl"
    with pytest.raises(RegistryError, match="unknown model 'transformer_xl'"):
        config_from_dict(plain)


def test_default_components_match_config_yaml():
    from fairseq_lite.options.compose import DEFAULT_COMPONENTS

    defaults = OmegaConf.load(Path(bundled_config_dir()) / "config.yaml")["defaults"]
    chosen = {k: v for d in defaults if isinstance(d, dict) or OmegaConf.is_dict(d) for k, v in d.items() if v}
    assert chosen == DEFAULT_COMPONENTS


def test_scalar_for_list_fields_and_user_group_options(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "my_lm.yaml").write_text("_name: transformer_lm\ndecoder_layers: 3\n")
    cfg = compose_config(
        ["task=language_modeling", "task.data=D", "model=my_lm", "optimization.lr=0.001", "optimization.update_freq=4"],
        config_dir=str(tmp_path),
    )
    assert cfg.optimization.lr == [0.001] and cfg.optimization.update_freq == [4]
    assert cfg.model.decoder_layers == 3 and cfg.model.decoder_embed_dim == 512


def test_hydra_override_grammar():
    base = ["task=language_modeling", "task.data=D", "model=transformer_lm/transformer_lm_gpt"]
    cfg = compose_config(
        base
        + [
            "optimizer.adam_betas='(0.9, 0.98)'",  # a tuple passed as a quoted string
            "optimization.update_freq=[16]",  # a list
            "++checkpoint.save_dir=/tmp/x",  # force-set
            "model.decoder_layers=3",
            "common.log_file='a, b.log'",  # quoted: comma and space kept
            "checkpoint.best_checkpoint_metric=${task._name}",  # interpolation across groups
        ]
    )
    assert cfg.optimizer.adam_betas == "(0.9, 0.98)" and cfg.optimization.update_freq == [16]
    assert cfg.checkpoint.save_dir == "/tmp/x" and cfg.common.log_file == "a, b.log"
    assert cfg.model.decoder_layers == 3 and cfg.checkpoint.best_checkpoint_metric == "language_modeling"
    with pytest.raises(ConfigError, match="cannot be deleted"):
        compose_config(base + ["~model.decoder_layers"])  # a schema field always exists
    assert compose_config(base + ["~lr_scheduler"]).lr_scheduler._name == "fixed"  # deselect: default
    with pytest.raises(ConfigError, match="model.nope"):
        compose_config(base + ["+model.nope=1"])  # adding a key the schema lacks is still an error


def test_fairseqs_old_batch_size_flags_are_aliases():
    """--max-sentences and --max-sentences-valid are fairseq's older names of --batch-size(-valid)."""
    old = legacy_overrides(
        ["data", "--task", "language_modeling", "--arch", "transformer_lm"] + ["--max-sentences", "8"]
    )
    assert "dataset.batch_size=8" in old
    valid = legacy_overrides(
        ["data", "--task", "language_modeling", "--arch", "transformer_lm", "--max-sentences-valid", "4"]
    )
    assert "dataset.batch_size_valid=4" in valid
