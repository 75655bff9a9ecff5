"""Every optimizer fairseq 0.12.2 registers: the update against fairseq's own (fixtures written by the real
fairseq, tests/fixtures/fairseq_0.12.2/optim/make_reference.py) or against the formula where fairseq
needs apex and a GPU (lamb, fp16_adam_stats); exact resume; fairseq's optimizer state loads."""

import io
import math
import os

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_lite.optim  # noqa: F401  (registers optimizers and schedulers)
from fairseq_lite.errors import ConfigError
from fairseq_lite.optim.adam import Adam
from fairseq_lite.options.compose import compose_config
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY, component_node
from fairseq_lite.training.checks import check_training_config

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "fairseq_0.12.2", "optim", "optimizers.pt")
REFERENCE = torch.load(FIXTURE, weights_only=False)
LRS = REFERENCE["lrs"]


def config(name, lr, **values):
    node = component_node("optimizer", name)
    node.lr = [lr]
    for k, v in values.items():
        node[k] = v
    return node


def ours(case):
    """Our optimizer configured as fairseq's case was (fairseq's adam on a CPU is its own loop: use_old_adam)."""
    args = dict(case["args"])
    args.pop("tpu", None)
    if case["optimizer"] == "adam":
        args["use_old_adam"] = True
    return config(case["optimizer"], LRS[0], **args)


def fresh_params(shapes):
    by_shape = {tuple(p.shape): p for p in REFERENCE["params"]}
    return [torch.nn.Parameter(by_shape[tuple(s)].clone()) for s in shapes]


def grads_of(step, shapes):
    by_shape = {tuple(g.shape): g for g in REFERENCE["grads"][step]}
    return [by_shape[tuple(s)] for s in shapes]


def run(opt, params, shapes, steps):
    out = []
    for step in steps:
        opt.set_lr(LRS[step])
        for p, g in zip(params, grads_of(step, shapes)):
            p.grad = g.clone()
        opt.step()
        out.append([p.detach().clone() for p in params])
    return out


def round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # what a checkpoint holds: plain containers


# --- fairseq's own updates ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(REFERENCE["cases"]))
def test_update_is_fairseqs(name):
    case = REFERENCE["cases"][name]
    shapes = [tuple(s) for s in case["shapes"]]
    params = fresh_params(shapes)
    opt = OPTIMIZER_REGISTRY.build(ours(case), params)
    for step, (got, want) in enumerate(zip(run(opt, params, shapes, range(len(LRS))), case["params_after"])):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7, msg=lambda m: f"step {step + 1}: {m}")


@pytest.mark.parametrize("name", sorted(REFERENCE["cases"]))
def test_fairseqs_optimizer_state_resumes_here(name):
    """A fairseq checkpoint's last_optimizer_state (saved after step 3) continues as fairseq would."""
    case = REFERENCE["cases"][name]
    shapes = [tuple(s) for s in case["shapes"]]
    params = [torch.nn.Parameter(p.clone()) for p in case["params_after"][2]]
    opt = OPTIMIZER_REGISTRY.build(ours(case), params)
    opt.load_state_dict(round_trip(case["state_at_3"]))
    for got, want in zip(run(opt, params, shapes, range(3, len(LRS))), case["params_after"][3:]):
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)


# --- exact resume ------------------------------------------------------------------------------------
SHAPES = [(4, 3), (3,), (2, 3, 4)]
RESUMABLE = {
    "adam": dict(adam_betas="(0.9, 0.98)", weight_decay=0.01),
    "adam_old": dict(use_old_adam=True, weight_decay=0.01),
    "adam_fp16_stats": dict(fp16_adam_stats=True, weight_decay=0.01),
    "adamax": dict(weight_decay=0.01),
    "adafactor": dict(beta1=0.9, scale_parameter=True, weight_decay=0.01),
    "adafactor_relative_step": dict(relative_step=True, warmup_init=True),
    "adagrad": dict(weight_decay=0.01),
    "adadelta": dict(weight_decay=0.01),
    "lamb": dict(weight_decay=0.01),
    "nag": dict(momentum=0.9, weight_decay=0.01),
    "sgd": dict(momentum=0.9, weight_decay=0.01),
}


def resumable_config(name):
    return config(name.split("_")[0], LRS[0], **RESUMABLE[name])


@pytest.mark.parametrize("name", sorted(RESUMABLE))
def test_state_dict_resumes_exactly(name):
    params = fresh_params(SHAPES)
    opt = OPTIMIZER_REGISTRY.build(resumable_config(name), params)
    uninterrupted = run(opt, params, SHAPES, range(6))

    params = fresh_params(SHAPES)
    opt = OPTIMIZER_REGISTRY.build(resumable_config(name), params)
    run(opt, params, SHAPES, range(3))
    saved = round_trip({"params": [p.detach() for p in params], "optimizer": opt.state_dict()})
    params = [torch.nn.Parameter(p.clone()) for p in saved["params"]]
    opt = OPTIMIZER_REGISTRY.build(resumable_config(name), params)
    opt.load_state_dict(saved["optimizer"])
    for got, want in zip(run(opt, params, SHAPES, range(3, 6)), uninterrupted[3:]):
        for g, w in zip(got, want):
            assert torch.equal(g, w)


# --- updates fairseq only runs with apex on a GPU: against the formula --------------------------------
def lamb_reference(params, grads_per_step, lrs, betas, eps, weight_decay, max_grad_norm=1.0):
    """apex's FusedLAMB (csrc/multi_tensor_lamb.cu) as fairseq configures it, written out in float64."""
    params = [p.double().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    b1, b2 = betas
    out = []
    for t, (grads, lr) in enumerate(zip(grads_per_step, lrs), start=1):
        grads = [g.double() for g in grads]
        norm = math.sqrt(sum(float((g * g).sum()) for g in grads))
        clip = norm / max_grad_norm if norm > max_grad_norm else 1.0
        for i, (p, g) in enumerate(zip(params, grads)):
            g = g / clip
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            update = (m[i] / (1 - b1**t)) / ((v[i] / (1 - b2**t)).sqrt() + eps) + weight_decay * p
            p_norm, u_norm = float(p.detach().norm()), float(update.detach().norm())
            ratio = lr * p_norm / u_norm if weight_decay != 0 and p_norm and u_norm else lr
            params[i] = p - ratio * update
        out.append([p.float() for p in params])
    return out


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_lamb_is_apexs_fused_lamb(weight_decay):
    params = fresh_params(SHAPES)
    opt = OPTIMIZER_REGISTRY.build(
        config("lamb", LRS[0], lamb_betas="(0.9, 0.98)", lamb_eps=1e-6, weight_decay=weight_decay), params
    )
    got = run(opt, params, SHAPES, range(6))
    grads = [grads_of(step, SHAPES) for step in range(6)]
    norms = [math.sqrt(sum(float((g.double() ** 2).sum()) for g in gs)) for gs in grads]
    assert max(norms) > 1.0  # the global clipping at norm 1.0 is exercised
    want = lamb_reference(fresh_params(SHAPES), grads, LRS, (0.9, 0.98), 1e-6, weight_decay)
    for step, (g_step, w_step) in enumerate(zip(got, want)):
        for g, w in zip(g_step, w_step):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6, msg=lambda m: f"step {step + 1}: {m}")


def test_fp16_adam_stats_keeps_scaled_fp16_moments():
    """fairseq's Adam with m and v stored as fp16 over a per-tensor scale (1e-8 + max / 65504) after every
    step: the same trajectory as the formula with that rounding, and close to full-precision Adam."""
    params = fresh_params(SHAPES)
    opt = OPTIMIZER_REGISTRY.build(config("adam", LRS[0], fp16_adam_stats=True, weight_decay=0.01), params)
    got = run(opt, params, SHAPES, range(6))
    for p in params:
        state = opt.optimizer.state[p]
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float16
        assert isinstance(state["exp_avg_scale"], float) and state["exp_avg_scale"] > 0
        restored = state["exp_avg"].float() * state["exp_avg_scale"]
        assert restored.abs().max() <= 65504 * state["exp_avg_scale"]

    # The formula, with the rounding written out (in the loop's own operation order, so that no element
    # rounds to another fp16 neighbour).
    ref = [p.detach().clone() for p in fresh_params(SHAPES)]
    m = [torch.zeros_like(p) for p in ref]
    v = [torch.zeros_like(p) for p in ref]
    b1, b2, eps, wd = 0.9, 0.999, 1e-8, 0.01
    for t in range(1, 7):
        lr = LRS[t - 1]
        for i, g in enumerate(grads_of(t - 1, SHAPES)):
            m[i].mul_(b1).add_(g, alpha=1 - b1)
            v[i].mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
            ref[i].add_(ref[i], alpha=-wd * lr)
            ref[i].addcdiv_(m[i], v[i].sqrt().add_(eps), value=-step_size)
            for moments in (m, v):
                scale = 1e-8 + moments[i].abs().max().item() / 65504.0
                moments[i] = (moments[i] / scale).half().float() * scale
        for g, w in zip(got[t - 1], ref):
            torch.testing.assert_close(g, w, rtol=1e-6, atol=1e-7)

    full = fresh_params(SHAPES)
    plain = run(
        OPTIMIZER_REGISTRY.build(config("adam", LRS[0], use_old_adam=True, weight_decay=0.01), full),
        full,
        SHAPES,
        range(6),
    )
    for g, w in zip(got[-1], plain[-1]):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-4)


def test_fp16_adam_stats_resumes_without_them_and_back():
    """Switching fp16_adam_stats between runs of one checkpoint reads the moments either way."""
    params = fresh_params(SHAPES)
    opt = OPTIMIZER_REGISTRY.build(config("adam", LRS[0], fp16_adam_stats=True), params)
    run(opt, params, SHAPES, range(2))
    plain = OPTIMIZER_REGISTRY.build(config("adam", LRS[0], use_old_adam=True), params)
    plain.load_state_dict(round_trip(opt.state_dict()))
    run(plain, params, SHAPES, range(2, 3))
    assert all(plain.optimizer.state[p]["exp_avg"].dtype == torch.float32 for p in params)
    assert all("exp_avg_scale" not in plain.optimizer.state[p] for p in params)
    back = OPTIMIZER_REGISTRY.build(config("adam", LRS[0], fp16_adam_stats=True), params)
    back.load_state_dict(round_trip(plain.state_dict()))
    run(back, params, SHAPES, range(3, 4))
    assert all(back.optimizer.state[p]["exp_avg"].dtype == torch.float16 for p in params)


@pytest.mark.parametrize("warmup_init", [False, True])
def test_adafactor_relative_step_takes_its_rate_from_the_step_count(warmup_init):
    """relative_step: a = min(1e-2, 1/sqrt(t)) (warmup_init: min(1e-6 t, 1/sqrt(t))); the lr is not used."""
    runs = []
    for lr in (0.5, 1e-9):
        params = [torch.nn.Parameter(torch.zeros(3))]  # so that p_before - p_after is the step, unrounded
        cfg = config("adafactor", lr, relative_step=True, warmup_init=warmup_init, clip_threshold=1e9)
        opt = OPTIMIZER_REGISTRY.build(cfg, params)
        steps = []
        for _ in range(4):
            before = params[0].detach().clone()
            params[0].grad = torch.tensor([1.0, -2.0, 0.5])
            opt.step()
            steps.append(before - params[0].detach())
        runs.append(steps)
    for t, (a, b) in enumerate(zip(*runs), start=1):
        assert torch.equal(a, b)
        rate = min(1e-6 * t if warmup_init else 1e-2, 1 / math.sqrt(t))
        # Unfactored, no first moment: the update is rate * g / sqrt(v) with v the decayed mean of g^2 + eps1;
        # at t = 1 that is rate * sign(g).
        if t == 1:
            torch.testing.assert_close(a, rate * torch.tensor([1.0, -1.0, 1.0]), rtol=1e-5, atol=0)


# --- the configs: fairseq's flags, and mistakes as one line -------------------------------------------
def test_fairseq_train_flags_of_the_new_optimizers(tiny_data_bin):
    from fairseq_cli.train import legacy_overrides

    cfg = compose_config(
        legacy_overrides(
            [
                str(tiny_data_bin),
                "--task",
                "language_modeling",
                "--arch",
                "transformer_lm",
                "--max-tokens",
                "64",
                "--optimizer",
                "adafactor",
                "--adafactor-eps",
                "(1e-30, 1e-2)",
                "--clip-threshold",
                "0.5",
                "--beta1",
                "0.9",
                "--wd",
                "0.1",
                "--scale-parameter",
                "--decay-rate",
                "-0.5",
                "--lr-scheduler",
                "tri_stage",
                "--phase-ratio",
                "(0.1, 0.4, 0.5)",
                "--max-update",
                "10",
                "--final-lr-scale",
                "0.05",
            ]
        )
    )
    assert cfg.optimizer._name == "adafactor" and cfg.optimizer.beta1 == 0.9 and cfg.optimizer.weight_decay == 0.1
    assert cfg.optimizer.scale_parameter is True and cfg.optimizer.clip_threshold == 0.5
    assert cfg.lr_scheduler._name == "tri_stage" and cfg.lr_scheduler.max_update == 10


@pytest.mark.parametrize(
    "overrides,message",
    [
        (
            ["optimizer=adadelta", "optimizer.anneal_eps=true"],
            r"optimizer\.anneal_eps: fairseq 0\.12\.2 accepts it but",
        ),
        (
            ["optimizer=adafactor", "optimizer.warmup_init=true"],
            r"optimizer\.warmup_init needs optimizer\.relative_step=true",
        ),
        (["optimizer=adafactor", "optimizer.adafactor_eps='(1e-30)'"], r"optimizer\.adafactor_eps must be two numbers"),
        (
            ["optimizer=lamb", "optimizer.lamb_betas='(0.9, 1.5)'"],
            r"optimizer\.lamb_betas must be two numbers in \[0, 1\)",
        ),
        (["optimizer=adamax", "optimizer.adamax_betas=oops"], r"optimizer\.adamax_betas must be two numbers"),
        (["optimizer=composite"], r"optimizer composite needs optimizer\.groups"),
        (["lr_scheduler=pass_through"], r"lr_scheduler\._name=pass_through hands the schedule to the optimizer's own"),
        (["lr_scheduler=triangular"], r"lr_scheduler\.max_lr is required but not set"),
        (["lr_scheduler=tri_stage"], r"lr_scheduler tri_stage needs lr_scheduler\.warmup_steps"),
        (["lr_scheduler=tri_stage", "lr_scheduler.phase_ratio='(0.5, 0.4)'"], r"phase_ratio must be three fractions"),
        (["lr_scheduler=manual", "lr_scheduler.epoch2lr=[1, 2]"], r"lr_scheduler\.epoch2lr must be a dict like"),
        (["lr_scheduler=manual", "lr_scheduler.update2lr=\"{'a-b': 0.1}\""], r"is not 'number', 'a-b' or 'a,b'"),
        (
            ["lr_scheduler=reduce_lr_on_plateau", "lr_scheduler.lr_shrink=1.0"],
            r"lr_scheduler\.lr_shrink must be in \[0, 1\)",
        ),
        (["lr_scheduler=step", "lr_scheduler.min_lr=1.0"], r"lr_scheduler\.min_lr \(1\.0\) must be >= 0 and less than"),
    ],
)
def test_bad_settings_are_one_line_errors_before_the_run(tiny_data_bin, tmp_path, overrides, message):
    from conftest import tiny_lm_overrides

    base = tiny_lm_overrides(tiny_data_bin, tmp_path, extra=overrides)
    if any(o.startswith("lr_scheduler=") for o in overrides):  # inverse_sqrt's warmup_updates is not theirs
        base = [o for o in base if o != "lr_scheduler.warmup_updates=4"]
    with pytest.raises(ConfigError, match=message) as error:  # composing (the schema) or the checks
        check_training_config(compose_config(base))
    assert "\n" not in str(error.value)


def test_memory_efficient_fp16_with_adagrad_is_refused_before_the_run(tiny_data_bin, tmp_path):
    from conftest import tiny_lm_overrides

    cfg = compose_config(
        tiny_lm_overrides(tiny_data_bin, tmp_path, extra=["optimizer=adagrad", "common.memory_efficient_fp16=true"])
    )
    if cfg.common.cpu or not torch.cuda.is_available():
        pytest.skip("fp16 needs a GPU")
    with pytest.raises(ConfigError, match="does not work with optimizer 'adagrad'"):
        check_training_config(cfg)


def test_fairseqs_adam_loop_is_importable_under_fairseqs_name():
    p = torch.nn.Parameter(torch.ones(2))
    opt = Adam([p], lr=0.1)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.allclose(p.detach(), torch.full((2,), 0.9), atol=1e-6)  # the first step moves by lr
    assert OmegaConf.is_config(component_node("optimizer", "adam"))
    assert "lamb" in OPTIMIZER_REGISTRY and "pass_through" in LR_SCHEDULER_REGISTRY


# --- through the trainer ------------------------------------------------------------------------------
TRAINER_RUNS = {
    "adafactor": ["optimizer=adafactor", "optimizer.scale_parameter=true", "optimizer.beta1=0.9"],
    "lamb": ["optimizer=lamb", "optimizer.weight_decay=0.01"],
    "nag": ["optimizer=nag", "optimization.lr=[0.05]"],
    "adamax": ["optimizer=adamax"],
    "adagrad": ["optimizer=adagrad", "optimization.lr=[0.05]"],
    "adadelta": ["optimizer=adadelta", "optimization.lr=[1.0]"],
    "adam_old": ["optimizer.use_old_adam=true"],
    "composite_pass_through": [
        "optimizer=composite",
        "optimizer.groups={default: {optimizer: {_name: adam}, "
        "lr_scheduler: {_name: tri_stage, phase_ratio: '(0.2, 0.3, 0.5)'}}}",
        "lr_scheduler=pass_through",
    ],
    "reduce_lr_on_plateau": [
        "lr_scheduler=reduce_lr_on_plateau",
        "lr_scheduler.lr_patience=0",
        "lr_scheduler.lr_shrink=0.5",
    ],
    "manual": ["lr_scheduler=manual", "lr_scheduler.update2lr=\"{'1-4': 0.001, '5': 0.003}\""],
}


@pytest.mark.parametrize("name", sorted(TRAINER_RUNS))
def test_trains_and_resumes_exactly_through_the_trainer(tiny_data_bin, tmp_path, name):
    import shutil

    from conftest import tiny_lm_overrides

    from fairseq_lite.checkpoint import load_checkpoint_to_cpu
    from fairseq_lite.training import train

    extra = TRAINER_RUNS[name]

    def run(save_dir, max_update, more=()):
        overrides = tiny_lm_overrides(tiny_data_bin, save_dir, max_update, extra=[*extra, *more])
        if any(o.startswith("lr_scheduler=") for o in extra):
            overrides = [o for o in overrides if o != "lr_scheduler.warmup_updates=4"]
        return train(compose_config(overrides))

    # 20 updates an epoch: 24 updates cross an epoch's end (a validation loss for reduce_lr_on_plateau).
    run(tmp_path / "full", 24)
    run(tmp_path / "part", 20, ["checkpoint.save_interval_updates=8"])
    shutil.copyfile(tmp_path / "part" / "checkpoint_1_8.pt", tmp_path / "part" / "checkpoint_last.pt")
    run(tmp_path / "part", 24, ["checkpoint.save_interval_updates=8"])
    full = load_checkpoint_to_cpu(str(tmp_path / "full" / "checkpoint_last.pt"))
    part = load_checkpoint_to_cpu(str(tmp_path / "part" / "checkpoint_last.pt"))
    assert full["num_updates"] == part["num_updates"] == 24
    for k, v in full["model"].items():
        assert torch.isfinite(v).all(), k
        assert torch.equal(v, part["model"][k]), k
    assert full["lr_scheduler_state"] == part["lr_scheduler_state"]
