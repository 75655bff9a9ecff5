"""fairseq's --fp16 (fp32 master weights) and --memory-efficient-fp16 optimizers, against fp32 references.

CPU runs fp16 Linear layers too, so everything here runs without a GPU; the CUDA variants repeat the
exactness checks on a GPU when there is one.
"""

import io
import math

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_lite.optim  # noqa: F401  (registers optimizers and schedulers)
from fairseq_lite.dataclass.configs import CommonConfig
from fairseq_lite.errors import CheckpointError, ConfigError
from fairseq_lite.optim.adam import FairseqAdamConfig
from fairseq_lite.optim.fairseq_optimizer import FairseqOptimizer
from fairseq_lite.optim.fp16_optimizer import (
    MASTER_PARAMS_KEY,
    FP16Optimizer,
    MemoryEfficientFP16Optimizer,
    build_fp16_optimizer,
)
from fairseq_lite.optim.lr_scheduler import InverseSquareRootLRScheduleConfig
from fairseq_lite.optim.precision import GradientOverflow, PrecisionOptimizer
from fairseq_lite.optim.sgd import SGDConfig
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY, component_node

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


def adam_cfg(lr=1e-2, weight_decay=0.01):
    return OmegaConf.structured(
        FairseqAdamConfig(lr=[lr], adam_betas="(0.9, 0.98)", weight_decay=weight_decay, _name="adam")
    )


def sgd_cfg(lr=0.1, momentum=0.9, weight_decay=0.01):
    return OmegaConf.structured(SGDConfig(lr=[lr], momentum=momentum, weight_decay=weight_decay, _name="sgd"))


def cfg_for(name, lr=1e-2, **values):
    node = component_node("optimizer", name)
    node.lr = [lr]
    for k, v in values.items():
        node[k] = v
    return node


CONFIGS = {
    "adam": adam_cfg,
    "sgd": sgd_cfg,
    "adam_old": lambda: cfg_for("adam", adam_betas="(0.9, 0.98)", weight_decay=0.01, use_old_adam=True),
    "adam_fp16_stats": lambda: cfg_for("adam", adam_betas="(0.9, 0.98)", weight_decay=0.01, fp16_adam_stats=True),
    "nag": lambda: cfg_for("nag", momentum=0.9, weight_decay=0.01),
    "adamax": lambda: cfg_for("adamax", weight_decay=0.01),
    "adafactor": lambda: cfg_for("adafactor", beta1=0.9, weight_decay=0.01, scale_parameter=True),
    "lamb": lambda: cfg_for("lamb", weight_decay=0.01),
    "adagrad": lambda: cfg_for("adagrad", lr=0.1, weight_decay=0.01),
    "adadelta": lambda: cfg_for("adadelta", lr=1.0, weight_decay=0.01),
}
# What --memory-efficient-fp16 runs (fairseq's list: its own fp32 update); the others only with --fp16.
MEMORY_EFFICIENT = ["adam", "sgd", "adam_old", "adam_fp16_stats", "nag", "adamax", "adafactor", "lamb"]
# Updated per tensor (shape, norm, fp16 scale): --fp16 gives them one master per parameter instead of one flat buffer.
UNFLATTENED = {"adafactor", "lamb", "adam_fp16_stats"}


def mlp(dtype=torch.float16, device="cpu", seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model.to(device=device, dtype=dtype)


def batch(step, device="cpu"):
    g = torch.Generator().manual_seed(100 + step)
    return torch.randn(16, 6, generator=g).to(device), torch.randn(16, 3, generator=g).to(device)


def backward(model, step, scale=1.0):
    """A summed squared error, scaled like a loss-scaled fp16 loss; the loss itself in fp32."""
    x, y = batch(step, next(model.parameters()).device)
    out = model(x.to(next(model.parameters()).dtype)).float()
    ((out - y) ** 2).sum().mul(scale).backward()


def fp32_copy(params):
    return [torch.nn.Parameter(p.detach().float().clone()) for p in params]


def masters(opt):
    """FP16Optimizer's fp32 master weights, one tensor per model parameter."""
    return opt.state_dict()[MASTER_PARAMS_KEY]


def save_load(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


# --- FP16Optimizer --------------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fp16_optimizer_equals_fp32_optimizer_on_the_master_weights(name, device):
    model = mlp(device=device)
    params = list(model.parameters())
    opt = FP16Optimizer(CONFIGS[name](), params)
    reference = fp32_copy(params)
    ref_opt = OPTIMIZER_REGISTRY.build(CONFIGS[name](), reference)
    assert all(m.dtype == torch.float32 for m in opt.params)
    if name in UNFLATTENED:  # one master per parameter, shaped like it
        assert [m.shape for m in opt.params] == [p.shape for p in params]
    else:
        assert len(list(opt.params)) == 1  # one flat buffer
    scale, clipped = 128.0, 0
    for step in range(6):
        opt.zero_grad()
        ref_opt.zero_grad()
        backward(model, step, scale)
        for p, r in zip(params, reference):
            assert p.grad.dtype == torch.float16
            r.grad = p.grad.float()  # the reference sees exactly the gradients the fp16 model produced
        for o in (opt, ref_opt):  # the trainer's order: unscale, normalize, clip
            o.multiply_grads(1.0 / scale)
            o.multiply_grads(1.0 / 16)
        norm, ref_norm = opt.clip_grad_norm(0.5), ref_opt.clip_grad_norm(0.5)
        assert norm.item() == pytest.approx(ref_norm.item(), rel=1e-6)
        clipped += ref_norm.item() > 0.5
        opt.step()
        ref_opt.step()
        for m, r, p in zip(masters(opt), reference, params):
            torch.testing.assert_close(m, r.detach(), rtol=1e-6, atol=1e-7)
            assert torch.equal(p.detach(), m.half())  # the model holds the masters' fp16 rounding
    assert clipped >= 2  # the clipping path was exercised


@pytest.mark.parametrize("device", DEVICES)
def test_fp16_optimizer_keeps_updates_that_fp16_weights_would_lose(device):
    """The point of master weights: updates below half an fp16 ulp accumulate in fp32."""
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.float16, device=device))
    opt = FP16Optimizer(sgd_cfg(lr=1e-4, momentum=0.0, weight_decay=0.0), [p])
    for _ in range(20):
        opt.zero_grad()
        p.grad = torch.ones_like(p)
        opt.step()
    assert masters(opt)[0].tolist() == pytest.approx([1 - 20e-4] * 4, rel=1e-6)
    assert p.tolist() == pytest.approx([1 - 20e-4] * 4, abs=5e-4)  # a single 1e-4 step would round away


def test_fp16_optimizer_param_groups_and_unused_params():
    model = mlp()
    params = list(model.parameters())
    groups = [{"params": params[:2], "weight_decay": 0.1}, {"params": params[2:]}]
    opt = FP16Optimizer(adam_cfg(), groups)
    ref_params = fp32_copy(params)
    ref_opt = OPTIMIZER_REGISTRY.build(
        adam_cfg(), [{"params": ref_params[:2], "weight_decay": 0.1}, {"params": ref_params[2:]}]
    )
    assert [g["weight_decay"] for g in opt.param_groups] == [0.1, 0.01]
    for step in range(3):
        opt.zero_grad()
        ref_opt.zero_grad()
        backward(model, step)
        params[-1].grad = None  # an unused parameter: fairseq's flat buffer steps it with a zero gradient
        for p, r in zip(params, ref_params):
            r.grad = p.grad.float() if p.grad is not None else torch.zeros_like(r)
        opt.step()
        ref_opt.step()
    for m, r in zip(masters(opt), ref_params):
        torch.testing.assert_close(m, r.detach(), rtol=1e-6, atol=1e-7)
    assert [len(g["params"]) for g in opt.state_dict()["param_groups"]] == [2, 2]


# --- MemoryEfficientFP16Optimizer -----------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", MEMORY_EFFICIENT)
def test_memory_efficient_step_is_the_fp32_step_rounded_to_fp16(name, device):
    """Each update equals torch's fp32 AdamW/SGD update from the same fp16 weights, rounded to fp16."""
    model = mlp(device=device)
    params = list(model.parameters())
    opt = MemoryEfficientFP16Optimizer(CONFIGS[name](), params)
    reference = fp32_copy(params)
    ref_opt = OPTIMIZER_REGISTRY.build(CONFIGS[name](), reference)
    scale = 1024.0
    for step in range(6):
        with torch.no_grad():
            for p, r in zip(params, reference):
                r.copy_(p)  # start from the same (fp16) weights; the optimizer state carries over
        opt.zero_grad()
        ref_opt.zero_grad()
        backward(model, step, scale)
        grads_before = [p.grad.clone() for p in params]
        for p, r in zip(params, reference):
            r.grad = p.grad.float()
        for o in (opt, ref_opt):
            o.multiply_grads(1.0 / scale)
            o.multiply_grads(1.0 / 16)
        norm, ref_norm = opt.clip_grad_norm(0.5), ref_opt.clip_grad_norm(0.5)
        assert norm.item() == pytest.approx(ref_norm.item(), rel=1e-5)
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads_before))  # scaling stays pending
        opt.step()
        ref_opt.step()
        for p, r in zip(params, reference):
            assert p.dtype == torch.float16
            torch.testing.assert_close(p.detach().float(), r.detach().half().float(), rtol=1e-3, atol=1e-6)
    for p, r in zip(params, reference):  # fp32 state (fp16 with fp16_adam_stats), equal to the reference's
        for key, value in opt.optimizer.state[p].items():
            if torch.is_tensor(value) and key != "step":
                assert value.dtype == (torch.float16 if name == "adam_fp16_stats" else torch.float32)
                torch.testing.assert_close(value, ref_opt.optimizer.state[r][key], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", MEMORY_EFFICIENT)
def test_memory_efficient_math_on_fp32_params_is_torchs(name):
    """On fp32 parameters nothing is rounded: the update must be the optimizer's own to float precision."""
    model, ref_model = mlp(torch.float32), mlp(torch.float32)
    opt = MemoryEfficientFP16Optimizer(CONFIGS[name](), model.parameters())
    ref_opt = OPTIMIZER_REGISTRY.build(CONFIGS[name](), ref_model.parameters())
    for step in range(8):
        for m, o in ((model, opt), (ref_model, ref_opt)):
            o.zero_grad()
            backward(m, step)
            o.multiply_grads(0.25)
            o.step()
    for p, r in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, r, rtol=1e-6, atol=1e-7)


def test_memory_efficient_tracks_fp32_training():
    """Over many steps the fp16 weights stay within fp16 precision of an fp32 AdamW run."""
    model, ref_model = mlp(), mlp(torch.float32)
    with torch.no_grad():
        for p, r in zip(model.parameters(), ref_model.parameters()):
            r.copy_(p)
    opt = MemoryEfficientFP16Optimizer(adam_cfg(lr=1e-2), model.parameters())
    ref_opt = OPTIMIZER_REGISTRY.build(adam_cfg(lr=1e-2), ref_model.parameters())
    for step in range(20):
        for m, o in ((model, opt), (ref_model, ref_opt)):
            o.zero_grad()
            backward(m, step)
            o.step()
    for p, r in zip(model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(p.float(), r.detach(), rtol=0, atol=5e-3)


def test_memory_efficient_unsupported_optimizer_is_a_clear_error():
    with pytest.raises(
        ConfigError,
        match=r"^Unsupported optimizer 'adagrad' with --memory-efficient-fp16 "
        r"\(supported: adam, adafactor, adamax, lamb, nag, sgd\); use --fp16 instead$",
    ):
        MemoryEfficientFP16Optimizer(OmegaConf.create({"_name": "adagrad"}), mlp().parameters())

    class Adagrad(FairseqOptimizer):
        def __init__(self, params):
            super().__init__(None)
            self._optimizer = torch.optim.Adagrad(params)

    with pytest.raises(ConfigError, match="Unsupported optimizer 'Adagrad'"):
        MemoryEfficientFP16Optimizer(Adagrad, mlp().parameters())
    # FP16Optimizer wraps any optimizer, built from a config or a callable.
    assert isinstance(FP16Optimizer(Adagrad, mlp().parameters()).optimizer, torch.optim.Adagrad)


# --- both: overflow, zero_grad, fp32 norms, schedulers ----------------------------------------------
@pytest.mark.parametrize("cls", [FP16Optimizer, MemoryEfficientFP16Optimizer])
@pytest.mark.parametrize("bad", [float("inf"), float("nan")])
def test_overflowed_grads_give_a_nonfinite_norm_and_zero_grad_clears_them(cls, bad):
    model = mlp()
    opt = cls(adam_cfg(), model.parameters())
    backward(model, 0, scale=64.0)
    model[0].weight.grad[0, 0] = bad
    opt.multiply_grads(1 / 64.0)
    norm = opt.clip_grad_norm(1.0)
    assert math.isinf(norm.item()) if bad == float("inf") else math.isnan(norm.item())
    opt.zero_grad()  # what the trainer does when it skips the update
    assert all(p.grad is None for p in model.parameters())
    if cls is FP16Optimizer:
        assert all(m.grad is None for m in opt.params)
    else:
        assert opt._multiply_factor == 1.0
    before = [p.detach().clone() for p in model.parameters()]
    backward(model, 1)
    assert math.isfinite(opt.clip_grad_norm(1.0).item())
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not all(torch.equal(p, b) for p, b in zip(model.parameters(), before))


@pytest.mark.parametrize("cls", [FP16Optimizer, MemoryEfficientFP16Optimizer])
def test_norm_of_large_scaled_fp16_grads_does_not_overflow(cls):
    """Each element fits fp16, their norm does not: it must be computed in fp32."""
    p = torch.nn.Parameter(torch.zeros(100, dtype=torch.float16))
    opt = cls(sgd_cfg(), [p])
    p.grad = torch.full_like(p, 60000.0)
    assert opt.clip_grad_norm(0).item() == pytest.approx(600000.0)
    opt.multiply_grads(1 / 60000.0)
    assert opt.clip_grad_norm(0).item() == pytest.approx(10.0)


@pytest.mark.parametrize("cls", [FP16Optimizer, MemoryEfficientFP16Optimizer])
def test_lr_scheduler_sets_the_wrapped_optimizers_lr(cls):
    opt = cls(adam_cfg(lr=1e-3), mlp().parameters())
    cfg = OmegaConf.structured(InverseSquareRootLRScheduleConfig(lr=[1e-3], warmup_updates=10, _name="inverse_sqrt"))
    scheduler = LR_SCHEDULER_REGISTRY.build(cfg, opt)
    assert opt.get_lr() == 0.0
    assert scheduler.step_update(5) == pytest.approx(5e-4)
    assert all(g["lr"] == pytest.approx(5e-4) for g in opt.optimizer.param_groups)
    scheduler.step_update(40)
    assert opt.get_lr() == pytest.approx(1e-3 * math.sqrt(10 / 40))
    wrapped = opt.fp32_optimizer if cls is FP16Optimizer else opt.wrapped_optimizer
    assert wrapped.get_lr() == opt.get_lr()


def test_trainer_flow_with_loss_scaling_skips_an_overflow():
    """The fp16 loss scaler (inside the PrecisionOptimizer a task's train_step receives) + FP16Optimizer,
    in the trainer's call order: a loss scale so large that the fp16 grads overflow skips the update and
    halves the scale, then training proceeds."""
    common = OmegaConf.structured(CommonConfig(fp16_init_scale=2**30))
    model = mlp()
    fp16 = build_fp16_optimizer(adam_cfg(), list(model.parameters()), memory_efficient=False)
    opt = PrecisionOptimizer(fp16, common, torch.device("cpu"), mode="fp16")
    updates = skips = 0
    while updates < 3:
        opt.zero_grad()
        x, y = batch(updates)
        opt.backward(((model(x.half()).float() - y) ** 2).sum())
        opt.multiply_grads(1 / 16)
        try:
            opt.clip_grad_norm(0.0)
        except GradientOverflow:
            skips += 1
            opt.zero_grad()
            continue
        opt.step()
        updates += 1
    assert skips >= 1 and opt.loss_scale < 2**30
    assert all(torch.isfinite(p).all() for p in model.parameters())


# --- checkpoints ----------------------------------------------------------------------------------
def build(kind, name="adam", seed=0):
    """(model, optimizer) for an fp32 run, an --fp16 run or a --memory-efficient-fp16 run."""
    model = mlp(torch.float32 if kind == "fp32" else torch.float16, seed=seed)
    cls = {"fp32": OPTIMIZER_REGISTRY.build, "fp16": FP16Optimizer, "me": MemoryEfficientFP16Optimizer}[kind]
    return model, cls(CONFIGS[name](), list(model.parameters()))


def train(model, opt, steps, start=0):
    for step in range(start, start + steps):
        opt.zero_grad()
        backward(model, step, scale=8.0)
        opt.multiply_grads(1 / 8.0)
        opt.clip_grad_norm(1.0)
        opt.step()


@pytest.mark.parametrize(
    "kind,name", [("fp16", name) for name in sorted(CONFIGS)] + [("me", name) for name in MEMORY_EFFICIENT]
)
def test_state_dict_round_trip_resumes_exactly(kind, name):
    model, opt = build(kind, name)
    train(model, opt, 3)
    state = save_load({"model": model.state_dict(), "optimizer": opt.state_dict()})  # weights_only=True
    resumed_model, resumed = build(kind, name, seed=1)
    resumed_model.load_state_dict(state["model"])
    resumed = type(resumed)(CONFIGS[name](), list(resumed_model.parameters()))  # built after the weights
    resumed.load_state_dict(state["optimizer"])
    if kind == "fp16":  # the saved fp32 masters are restored, not their fp16 rounding
        for a, b in zip(masters(resumed), masters(opt)):
            assert torch.equal(a, b)
    train(model, opt, 2, start=3)
    train(resumed_model, resumed, 2, start=3)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("source", ["fp32", "fp16", "me"])
@pytest.mark.parametrize("target", ["fp32", "fp16", "me"])
def test_checkpoints_move_between_fp32_fp16_and_memory_efficient_runs(source, target):
    """All three save torch's per-parameter layout with fp32 state, so each loads the others'."""
    model, opt = build(source)
    train(model, opt, 3)
    saved = save_load(opt.state_dict())
    target_model, target_opt = build(target)
    with torch.no_grad():
        for p, q in zip(target_model.parameters(), model.parameters()):
            p.copy_(q)
    target_opt.load_state_dict(saved, optimizer_overrides={"lr": 5e-3})
    assert target_opt.get_lr() == 5e-3
    reloaded = target_opt.state_dict()["state"]
    for index, entry in saved["state"].items():
        for key, value in entry.items():
            assert reloaded[index][key].dtype == torch.float32
            torch.testing.assert_close(reloaded[index][key].cpu(), value.float().cpu(), rtol=0, atol=0)
    train(target_model, target_opt, 1, start=3)
    steps = [entry["step"].item() for entry in target_opt.state_dict()["state"].values()]
    assert steps == [4.0] * 4  # every parameter counted its own step (no shared counter tensors)


@pytest.mark.parametrize("kind", ["fp16", "me"])
def test_checkpoint_of_another_model_is_a_one_line_error(kind):
    model, opt = build("fp32")
    train(model, opt, 1)
    state = save_load(opt.state_dict())
    _, target = build(kind)
    state["state"][0]["exp_avg"] = state["state"][0]["exp_avg"].t().contiguous()
    with pytest.raises(
        CheckpointError,
        match=r"'exp_avg' of parameter 0 has shape \(6, 8\) but the parameter "
        r"has shape \(8, 6\).*--reset-optimizer",
    ) as info:
        target.load_state_dict(state)
    assert "\n" not in str(info.value)
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:3]
    with pytest.raises(CheckpointError, match=r"sizes \[3\], this model's has \[4\]"):
        target.load_state_dict(state)


def test_stale_master_weights_are_rebuilt_from_the_model():
    model, opt = build("fp16")
    train(model, opt, 2)
    state = save_load(opt.state_dict())
    with torch.no_grad():
        model[0].weight.add_(1.0)  # e.g. averaged or fine-tuned weights loaded after saving
    resumed = FP16Optimizer(adam_cfg(), list(model.parameters()))
    resumed.load_state_dict(state)
    for m, p in zip(masters(resumed), model.parameters()):
        assert torch.equal(m, p.detach().float())
