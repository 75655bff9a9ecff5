"""Components as Hydra `_target_` nodes (fairseq_lite/targets.py): optimizer, lr_scheduler, criterion, model
and a model's sub-modules, composed from YAML as the Hydra tutorials write them, trained, checkpointed,
resumed and evaluated; and their mistakes as one line before the run."""

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import tiny_lm_overrides

from fairseq_lite.checkpoint import load_checkpoint_to_cpu
from fairseq_lite.errors import ConfigError
from fairseq_lite.options.compose import compose_config
from fairseq_lite.training import build_trainer, check_training_config, train

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "hydra_targets"
PLUGIN = EXAMPLE / "targets_plugin"
CONFIG = EXAMPLE / "config"


def overrides(data, save_dir, max_update=12, extra=(), drop=("optimizer", "lr_scheduler")):
    """The tiny LM's overrides without the groups a test configures itself, then `extra`."""
    base = [o for o in tiny_lm_overrides(data, save_dir, max_update) if o.split("=")[0].split(".")[0] not in drop]
    return [*base, *extra]


def user_config(tmp_path, files: dict[str, str]) -> Path:
    """A --config-dir of the user's own YAML: {relative path: text}."""
    root = tmp_path / "conf"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


ADAMW = """\
    _target_: torch.optim.AdamW
    lr: ${optimization.lr[0]}
    weight_decay: 0.01
"""
ONE_CYCLE = """\
    _target_: torch.optim.lr_scheduler.OneCycleLR
    max_lr: ${optimization.lr[0]}
    total_steps: ${optimization.max_update}
"""


def test_torch_optimizer_and_schedule_from_yaml_train_and_resume_exactly(tiny_data_bin, tmp_path):
    conf = user_config(tmp_path, {"optimizer/torch_adamw.yaml": ADAMW, "lr_scheduler/one_cycle.yaml": ONE_CYCLE})

    def cfg(save_dir, max_update, extra=()):
        chosen = ["optimizer=torch_adamw", "lr_scheduler=one_cycle", *extra]
        return compose_config(overrides(tiny_data_bin, save_dir, max_update, chosen), config_dir=str(conf))

    config = cfg(tmp_path / "full", 24)
    assert dict(config.optimizer) == {"_target_": "torch.optim.AdamW", "lr": 0.003, "weight_decay": 0.01}
    trainer = build_trainer(config)
    optimizer = trainer.optimizer.optimizer
    assert type(optimizer) is torch.optim.AdamW and optimizer.param_groups[0]["weight_decay"] == 0.01
    assert isinstance(trainer.lr_scheduler.scheduler, torch.optim.lr_scheduler.OneCycleLR)
    assert {id(p) for g in optimizer.param_groups for p in g["params"]} == {id(p) for p in trainer.model.parameters()}

    train(config)
    # A run stopped after its update-8 checkpoint (its schedule still planned for 24), resumed to the same end.
    planned = ["checkpoint.save_interval_updates=8", "lr_scheduler.total_steps=24"]
    train(cfg(tmp_path / "part", 20, planned))
    shutil.copyfile(tmp_path / "part" / "checkpoint_1_8.pt", tmp_path / "part" / "checkpoint_last.pt")
    train(cfg(tmp_path / "part", 24, planned))
    full = load_checkpoint_to_cpu(str(tmp_path / "full" / "checkpoint_last.pt"))
    part = load_checkpoint_to_cpu(str(tmp_path / "part" / "checkpoint_last.pt"))
    for k, v in full["model"].items():
        assert torch.equal(v, part["model"][k]), k
    # The schedule was stepped once per update, and its torch state is in the checkpoint.
    assert full["lr_scheduler_state"]["torch"]["last_epoch"] == 24
    assert full["lr_scheduler_state"] == part["lr_scheduler_state"]
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.003)
    one_cycle = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.003, total_steps=24)
    for _ in range(24):
        reference.step()
        one_cycle.step()
    assert full["last_optimizer_state"]["param_groups"][0]["lr"] == pytest.approx(reference.param_groups[0]["lr"])
    assert full["cfg"]["optimizer"] == {"_target_": "torch.optim.AdamW", "lr": 0.003, "weight_decay": 0.01}


def test_partial_optimizer_and_a_registered_class_as_target(tiny_data_bin, tmp_path):
    conf = user_config(
        tmp_path,
        {
            "optimizer/sgd_partial.yaml": """\
                _target_: torch.optim.SGD
                _partial_: true
                lr: 0.05
                momentum: 0.9
            """,
            # A _target_ naming one of our registered classes is that component, its config checked as such.
            "lr_scheduler/ours.yaml": """\
                _target_: fairseq_lite.optim.lr_scheduler.step_lr_scheduler.StepLRSchedule
                lr_deacy_period: 4
                lr_decay: 0.5
            """,
        },
    )
    config = compose_config(
        overrides(tiny_data_bin, tmp_path, 9, ["optimizer=sgd_partial", "lr_scheduler=ours", "optimization.lr=[0.05]"]),
        config_dir=str(conf),
    )
    check_training_config(config)
    trainer = build_trainer(config)
    assert type(trainer.optimizer.optimizer) is torch.optim.SGD
    assert type(trainer.lr_scheduler).__name__ == "StepLRSchedule"
    train(config)
    state = load_checkpoint_to_cpu(str(tmp_path / "checkpoint_last.pt"))
    assert state["last_optimizer_state"]["param_groups"][0]["lr"] == pytest.approx(0.05 * 0.5**2)  # 9 // 4 = 2


def test_the_hydra_tutorials_sequential_builds_as_a_model_sub_module(tiny_data_bin, tmp_path):
    """examples/hydra_targets: the model is a _target_ whose head is the tutorial's Sequential of two Linear
    layers (in_features: ${..[0].out_features}); trained, resumed, and scored by fairseq-eval-lm."""
    base = [
        f"common.user_dir={PLUGIN}",
        f"task.data={tiny_data_bin}",
        "task.tokens_per_sample=32",
        "dataset.max_tokens=256",
        "dataset.num_workers=0",
        "common.log_format=json",
    ]

    def cfg(save_dir, max_update, extra=()):
        return compose_config(
            [*base, f"checkpoint.save_dir={save_dir}", f"optimization.max_update={max_update}", *extra],
            config_dir=str(CONFIG),
            config_name="targets",
        )

    config = cfg(tmp_path / "full", 6)
    assert config.model.head._args_[1].in_features == 100  # the relative interpolation, resolved
    model = build_trainer(config).model
    head = model.decoder.head
    assert isinstance(head, torch.nn.Sequential) and model.head_was_built_by_hydra
    assert [(m.in_features, m.out_features) for m in head] == [(9216, 100), (100, 10)]
    assert model.decoder.embed.embedding_dim == 9216 and model.decoder.out.in_features == 10

    train(config)
    train(cfg(tmp_path / "part", 6, ["checkpoint.save_interval_updates=3"]))
    shutil.copyfile(tmp_path / "part" / "checkpoint_1_3.pt", tmp_path / "part" / "checkpoint_last.pt")
    train(cfg(tmp_path / "part", 6, ["checkpoint.save_interval_updates=3"]))
    full = load_checkpoint_to_cpu(str(tmp_path / "full" / "checkpoint_last.pt"))
    part = load_checkpoint_to_cpu(str(tmp_path / "part" / "checkpoint_last.pt"))
    assert "decoder.head.1.weight" in full["model"]
    for k, v in full["model"].items():
        assert torch.equal(v, part["model"][k]), k

    # The checkpoint rebuilds the _target_ model (its plugin imported from the stored user_dir) for inference.
    env_path = str(Path(sys.executable).parent)
    result = subprocess.run(
        [
            f"{env_path}/fairseq-eval-lm",
            str(tiny_data_bin),
            "--path",
            str(tmp_path / "full" / "checkpoint_last.pt"),
            "--tokens-per-sample",
            "32",
            "--max-tokens",
            "256",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Loss (base 2):" in result.stdout + result.stderr


def test_not_recursive_hands_the_sub_module_config_to_the_model(tiny_data_bin, tmp_path):
    conf = user_config(
        tmp_path,
        {
            "model/small.yaml": """\
                _target_: targets_plugin.FeedForwardLM
                _recursive_: false
                embed_dim: 16
                head:
                  _target_: torch.nn.Sequential
                  _args_:
                    - {_target_: torch.nn.Linear, in_features: 16, out_features: 8}
                    - {_target_: torch.nn.Tanh}
                    - {_target_: torch.nn.Linear, in_features: "${..[0].out_features}", out_features: 8}
            """
        },
    )
    extra = [f"common.user_dir={PLUGIN}", "model=small"]
    config = compose_config(overrides(tiny_data_bin, tmp_path, 3, extra, drop=("model",)), config_dir=str(conf))
    model = build_trainer(config).model
    assert not model.head_was_built_by_hydra  # it got the head's config and built it itself
    assert [type(m).__name__ for m in model.decoder.head] == ["Linear", "Tanh", "Linear"]
    train(config)


def test_a_plain_module_criterion_target(tiny_data_bin, tmp_path):
    """A criterion that is not registered: any module keeping FairseqCriterion's contract."""
    plugin = tmp_path / "my_criterions"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(
        textwrap.dedent(
            """\
            import math
            import torch.nn.functional as F
            from fairseq_lite import metrics
            from fairseq_lite.criterions.fairseq_criterion import FairseqCriterion

            class ScaledCrossEntropy(FairseqCriterion):
                def __init__(self, task, scale: float = 1.0):
                    super().__init__(task)
                    self.scale = scale

                def forward(self, model, sample, reduce=True):
                    out = model(**sample["net_input"])
                    lprobs = model.get_normalized_probs(out, log_probs=True).reshape(-1, out[0].size(-1))
                    loss = self.scale * F.nll_loss(lprobs, sample["target"].reshape(-1),
                                                   ignore_index=self.padding_idx, reduction="sum")
                    n = sample["ntokens"]
                    return loss, n, {"loss": loss.detach(), "ntokens": n, "nsentences": sample["target"].size(0),
                                     "sample_size": n}

                @classmethod
                def reduce_metrics(cls, logging_outputs):
                    loss = sum(log["loss"] for log in logging_outputs)
                    size = sum(log["sample_size"] for log in logging_outputs)
                    metrics.log_scalar("loss", loss / size / math.log(2), size, round=3)

                @staticmethod
                def logging_outputs_can_be_summed():
                    return True
            """
        )
    )
    conf = user_config(tmp_path, {"criterion/scaled.yaml": "_target_: my_criterions.ScaledCrossEntropy\nscale: 2.0\n"})
    extra = [f"common.user_dir={plugin}", "criterion=scaled"]
    config = compose_config(overrides(tiny_data_bin, tmp_path, 4, extra, drop=("criterion",)), config_dir=str(conf))
    trainer = build_trainer(config)
    assert type(trainer.criterion).__name__ == "ScaledCrossEntropy" and trainer.criterion.scale == 2.0
    assert trainer.criterion.task is trainer.task  # handed over, not copied into the config
    assert train(config) > 0


# --- mistakes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "yaml,message",
    [
        (
            "_target_: torch.optim.AdamX\nlr: 0.1\n",
            r"^optimizer\._target_=torch\.optim\.AdamX: cannot import it \(no 'AdamX' in torch\.optim\); the nearest "
            r"importable name is torch\.optim\.Adam",
        ),
        (
            "_target_: torch.optimm.AdamW\n",
            r"^optimizer\._target_=torch\.optimm\.AdamW: cannot import it \(no 'optimm' in torch\); the nearest "
            r"importable name is torch\.optim$",
        ),
        (
            "_target_: torch.optim.AdamW\nweight_decy: 0.1\n",
            r"torch\.optim\.AdamW takes no argument 'weight_decy' "
            r"\(did you mean 'weight_decay'\?\)",
        ),
        ("_name: adam\n_target_: torch.optim.AdamW\n", r"has both _name \(adam\) and _target_ \(torch\.optim\.AdamW\)"),
    ],
)
def test_a_wrong_target_is_one_line_before_the_run(tiny_data_bin, tmp_path, yaml, message):
    conf = user_config(tmp_path, {"optimizer/bad.yaml": yaml})
    with pytest.raises(ConfigError, match=message) as error:
        check_training_config(
            compose_config(overrides(tiny_data_bin, tmp_path, 3, ["optimizer=bad"]), config_dir=str(conf))
        )
    assert "\n" not in str(error.value)
    assert not list(tmp_path.glob("checkpoint*"))


def test_a_missing_argument_and_a_task_target_are_one_line(tiny_data_bin, tmp_path):
    conf = user_config(
        tmp_path,
        {"lr_scheduler/one_cycle.yaml": "_target_: torch.optim.lr_scheduler.OneCycleLR\ntotal_steps: 10\n"},
    )
    cfg = compose_config(overrides(tiny_data_bin, tmp_path, 3, ["lr_scheduler=one_cycle"]), config_dir=str(conf))
    with pytest.raises(
        ConfigError,
        match=r"^lr_scheduler: torch\.optim\.lr_scheduler\.OneCycleLR.*missing a required "
        r"argument: 'max_lr'",
    ):
        check_training_config(cfg)
    conf = user_config(
        tmp_path, {"task/mine.yaml": "_target_: fairseq_lite.tasks.language_modeling.LanguageModelingTask\n"}
    )
    with pytest.raises(
        ConfigError,
        match=r"a task cannot be a _target_ node \(that works for model, criterion, "
        r"optimizer, lr_scheduler\)",
    ):
        compose_config(overrides(tiny_data_bin, tmp_path, 3, ["task=mine"], drop=("task",)), config_dir=str(conf))


def test_the_command_exits_non_zero_with_one_line(tiny_data_bin, tmp_path):
    conf = user_config(tmp_path, {"optimizer/bad.yaml": "_target_: torch.optim.AdamX\n"})
    command = [str(Path(sys.executable).parent / "fairseq-hydra-train"), "--config-dir", str(conf)]
    result = subprocess.run(
        command + overrides(tiny_data_bin, tmp_path / "ck", 3, ["optimizer=bad", f"hydra.run.dir={tmp_path / 'run'}"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "torch.optim.AdamX" in lines[0] and "torch.optim.Adam" in lines[0], result.stderr
    assert not (tmp_path / "ck").exists()
