"""fp16 loss scaling with fairseq's semantics (inf/NaN gradients injected), and precision choices."""

import math

import pytest
import torch
from omegaconf import OmegaConf

from fairseq_lite.dataclass.configs import CommonConfig
from fairseq_lite.errors import ConfigError
from fairseq_lite.optim.dynamic_loss_scaler import DynamicLossScaler, GradientOverflow, MinimumLossScaleReached
from fairseq_lite.optim.precision import PrecisionOptimizer, check_precision


def test_overflow_skips_and_halves():
    scaler = DynamicLossScaler(init_scale=128, scale_window=100)
    scaler.check_overflow(3.0)  # finite: nothing happens
    with pytest.raises(GradientOverflow, match="setting loss scale to: 64.0"):
        scaler.check_overflow(float("inf"))
    with pytest.raises(GradientOverflow):
        scaler.check_overflow(float("nan"))
    assert scaler.loss_scale == 32.0


def test_scale_grows_after_a_window_of_clean_updates():
    scaler = DynamicLossScaler(init_scale=8, scale_window=3)
    with pytest.raises(GradientOverflow):
        scaler.check_overflow(float("inf"))  # at iter 0 -> 4
    scales = []
    for _ in range(6):
        scaler.check_overflow(1.0)
        scaler.update()
        scales.append(scaler.loss_scale)
    assert scales == [4, 4, 8, 8, 8, 16]  # doubled every 3 clean updates after the overflow


def test_tolerance_and_threshold():
    tolerant = DynamicLossScaler(init_scale=16, scale_window=1000, tolerance=0.5)
    for _ in range(3):
        tolerant.check_overflow(1.0)
        tolerant.update()
    with pytest.raises(GradientOverflow):
        tolerant.check_overflow(float("inf"))  # 1 overflow in 4 updates: under the 50% tolerance
    assert tolerant.loss_scale == 16
    floored = DynamicLossScaler(init_scale=4, threshold=2.0)
    for _ in range(3):
        with pytest.raises(GradientOverflow):
            floored.check_overflow(float("inf"))
    assert floored.loss_scale == 2.0


def test_minimum_scale_stops_with_advice():
    scaler = DynamicLossScaler(init_scale=1.0, min_loss_scale=0.25)
    with pytest.raises(GradientOverflow):
        scaler.check_overflow(float("inf"))  # 0.5
    with pytest.raises(MinimumLossScaleReached, match="minimum loss scale reached.*lower learning rate"):
        scaler.check_overflow(float("inf"))
    assert scaler.loss_scale == 0.5  # the last usable scale is kept


def test_state_round_trip():
    a = DynamicLossScaler(init_scale=64, scale_window=2)
    with pytest.raises(GradientOverflow):
        a.check_overflow(float("inf"))
    a.update()
    b = DynamicLossScaler()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()


def test_trainer_skips_an_overflowing_update_and_trains_on(tiny_data_bin, tmp_path):
    """The fp16 path end to end (autocast fp16 runs on CPU too, though the command only allows it on
    CUDA): an inf gradient skips the update, halves the scale and leaves the weights untouched."""
    from conftest import tiny_lm_overrides

    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import build_trainer

    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path))
    trainer = build_trainer(cfg)
    task = trainer.task
    task.load_dataset("train")
    # fp16 loss scaling around the fp32 model's optimizer (the command allows fp16 on CUDA only)
    trainer._optimizer = PrecisionOptimizer(trainer.optimizer.wrapped, cfg.common, torch.device("cpu"), mode="fp16")
    dataset = task.dataset("train")
    batch = dataset.collater([dataset[i] for i in range(4)])
    weight = trainer.model.decoder.embed_tokens.weight
    before = weight.detach().clone()

    hook = weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    assert trainer.train_step([batch]) is None
    hook.remove()
    assert torch.equal(weight.detach(), before) and trainer.get_num_updates() == 0
    assert trainer.loss_scale == cfg.common.fp16_init_scale / 2

    for step in (1, 2):  # the warmup's first update has learning rate 0
        out = trainer.train_step([batch])
        assert out is not None and math.isfinite(out["gnorm"]) and trainer.get_num_updates() == step
    assert not torch.equal(weight.detach(), before)


def test_precision_choices_are_checked():
    cfg = OmegaConf.structured(CommonConfig)
    assert check_precision(cfg, torch.device("cpu")) == "fp32"
    cfg.bf16 = True
    assert check_precision(cfg, torch.device("cpu")) == "bf16"
    cfg.fp16 = True
    with pytest.raises(ConfigError, match="both set"):
        check_precision(cfg, torch.device("cpu"))
    cfg.bf16 = False
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        check_precision(cfg, torch.device("cpu"))


def _tiny_trainer(tiny_data_bin, tmp_path, extra=()):
    from conftest import tiny_lm_overrides

    from fairseq_lite.options.compose import compose_config
    from fairseq_lite.training import build_trainer

    cfg = compose_config(tiny_lm_overrides(tiny_data_bin, tmp_path, extra=list(extra)))
    trainer = build_trainer(cfg)
    trainer.task.load_dataset("train")
    dataset = trainer.task.dataset("train")
    return trainer, dataset.collater([dataset[i] for i in range(4)])


def test_nan_loss_names_the_first_module_that_went_nonfinite(tiny_data_bin, tmp_path):
    from fairseq_lite.errors import NonFiniteLossError

    trainer, batch = _tiny_trainer(tiny_data_bin, tmp_path)
    with torch.no_grad():
        trainer.model.decoder.layers[0].fc2.weight[0, 0] = float("nan")
    with pytest.raises(
        NonFiniteLossError,
        match=r"loss is nan at update 1: the first non-finite output came "
        r"from decoder\.layers\.0\.fc2 \(Linear\)",
    ):
        trainer.train_step([batch])


def test_nan_loss_can_be_skipped(tiny_data_bin, tmp_path):
    trainer, batch = _tiny_trainer(tiny_data_bin, tmp_path, extra=["optimization.skip_nonfinite_loss=true"])
    with torch.no_grad():
        trainer.model.decoder.layers[0].fc2.weight[0, 0] = float("inf")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert trainer.train_step([batch]) is None and trainer.get_num_updates() == 0
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_minimum_loss_scale_is_a_one_line_user_error(capsys):
    """fp16 overflows that would push the loss scale below common.min_loss_scale stop the run with one
    line naming the update and what to try (no traceback), in the spelling of the command's user."""
    from fairseq_lite.cli_utils import user_errors_exit
    from fairseq_lite.errors import FairseqLiteError
    from fairseq_lite.optim.sgd import SGD, SGDConfig

    common = OmegaConf.structured(CommonConfig(fp16_init_scale=4, min_loss_scale=1.0))
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = PrecisionOptimizer(
        SGD(OmegaConf.structured(SGDConfig(lr=[0.1])), [weight]), common, torch.device("cpu"), mode="fp16"
    )
    optimizer.num_updates = 6

    def overflowing_update():
        optimizer.zero_grad()
        optimizer.backward((weight * float("inf")).sum())
        optimizer.multiply_grads(1.0)
        optimizer.clip_grad_norm(0.0)

    with pytest.raises(GradientOverflow):  # 4 -> 2
        overflowing_update()
    with pytest.raises(MinimumLossScaleReached) as caught:  # 2 -> 1 is not above the minimum
        overflowing_update()
    assert isinstance(caught.value, FairseqLiteError) and isinstance(caught.value, FloatingPointError)
    assert str(caught.value).startswith("update 7: minimum loss scale reached (common.min_loss_scale=1.0)")
    assert "optimization.clip_norm" in str(caught.value) and "common.bf16=true" in str(caught.value)

    @user_errors_exit("fairseq-train", flags=True)
    def command():
        raise caught.value

    with pytest.raises(SystemExit) as exit_info:
        command()
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith("fairseq-train: error: update 7: minimum loss scale reached (--min-loss-scale 1.0)")
    assert "(--clip-norm)" in err and "or --bf16 instead of fp16" in err
