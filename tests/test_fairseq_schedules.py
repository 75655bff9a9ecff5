"""Every lr schedule fairseq 0.12.2 registers, in the trainer's call order, against the real fairseq's
(tests/fixtures/fairseq_0.12.2/optim/make_reference.py), and its exact resume from a checkpoint's state."""

import io
import json
import os

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_lite.optim  # noqa: F401  (registers optimizers and schedulers)
from fairseq_lite.errors import ConfigError
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY, component_node

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "fairseq_0.12.2", "optim", "schedules.json")
with open(FIXTURE) as f:
    REFERENCE = json.load(f)
CASES = {k: v for k, v in REFERENCE["cases"].items() if "scheduler" in v}


def events():
    """fairseq's trainer: begin_epoch + step_update, step_update per update, step(epoch, val_loss) + step_update."""
    n = 0
    for epoch in range(1, REFERENCE["epochs"] + 1):
        yield ("begin_epoch", epoch, n)
        for _ in range(REFERENCE["updates_per_epoch"]):
            n += 1
            yield ("update", epoch, n)
        yield ("end_epoch", epoch, n)


def apply(scheduler, event):
    kind, epoch, n = event
    if kind == "begin_epoch":
        scheduler.step_begin_epoch(epoch)
    elif kind == "end_epoch":
        scheduler.step(epoch, REFERENCE["val_losses"][epoch - 1])
    scheduler.step_update(n)


def build(case):
    optimizer = OPTIMIZER_REGISTRY.build(
        OmegaConf.merge(component_node("optimizer", "sgd"), {"lr": case["lr"]}), [torch.nn.Parameter(torch.zeros(2))]
    )
    values = {k: (str(tuple(v)) if k == "phase_ratio" and v is not None else v) for k, v in case["args"].items()}
    cfg = component_node("lr_scheduler", case["scheduler"])
    for k, v in dict(values, lr=case["lr"]).items():
        cfg[k] = v
    return LR_SCHEDULER_REGISTRY.build(cfg, optimizer), optimizer


def replay(scheduler, optimizer, start=0):
    lrs = []
    for event in list(events())[start:]:
        apply(scheduler, event)
        lrs.append(optimizer.get_lr())
    return lrs


@pytest.mark.parametrize("name", sorted(CASES))
def test_schedule_is_fairseqs(name):
    case = CASES[name]
    scheduler, optimizer = build(case)
    lrs = [optimizer.get_lr()]
    scheduler.step_update(0)  # the trainer's, right after building
    lrs.append(optimizer.get_lr())
    lrs += replay(scheduler, optimizer)
    assert len(lrs) == len(case["lrs"])
    for i, (got, want) in enumerate(zip(lrs, case["lrs"])):
        assert got == pytest.approx(want, rel=1e-12, abs=1e-15), f"call {i}"


def round_trip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("stop", [40, 52, 60])  # mid-epoch 2; right after epoch 2's end; mid-epoch 3
def test_schedule_resumes_exactly(name, stop):
    case = CASES[name]
    scheduler, optimizer = build(case)
    scheduler.step_update(0)
    uninterrupted = replay(scheduler, optimizer)

    scheduler, optimizer = build(case)
    scheduler.step_update(0)
    replay_events = list(events())
    for event in replay_events[:stop]:
        apply(scheduler, event)
    saved = round_trip({"lr_scheduler": scheduler.state_dict(), "optimizer": optimizer.state_dict()})
    kind, epoch, n = replay_events[stop - 1]

    # The trainer's load: build, step_update(0), the optimizer's and the schedule's state, step_update(n); the
    # loop then begins the epoch it stopped in (the next one after an epoch's end).
    scheduler, optimizer = build(case)
    scheduler.step_update(0)
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["lr_scheduler"])
    scheduler.step_update(n)
    resumed_epoch = epoch + 1 if kind == "end_epoch" else epoch
    scheduler.step_begin_epoch(resumed_epoch)
    scheduler.step_update(n)
    rest = [e for e in replay_events[stop:] if e[0] != "begin_epoch" or e[1] != resumed_epoch]
    lrs = []
    for event in rest:
        apply(scheduler, event)
        lrs.append(optimizer.get_lr())
    want = [lr for e, lr in zip(replay_events[stop:], uninterrupted[stop:]) if e in rest]
    assert lrs == want


# --- a composite optimizer with lr_scheduler=pass_through ------------------------------------------
def composite_config(groups):
    root = OmegaConf.create(
        {"optimization": {"lr": [0.25], "max_update": 100}, "optimizer": {"_name": "composite", "groups": groups}}
    )
    return root.optimizer


def composite_params():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))]
    params[1].param_group = "decoder"
    return params


def test_composite_with_pass_through_is_fairseqs():
    case = REFERENCE["cases"]["composite_pass_through"]
    optimizer = OPTIMIZER_REGISTRY.build(composite_config(case["groups"]), composite_params())
    scheduler = LR_SCHEDULER_REGISTRY.build(component_node("lr_scheduler", "pass_through"), optimizer)
    lrs = {name: [lr] for name, lr in optimizer.group_lrs().items()}
    scheduler.step_update(0)
    for event in [None, *events()]:
        if event is not None:
            apply(scheduler, event)
        for name, lr in optimizer.group_lrs().items():
            lrs[name].append(lr)
    for name, want in case["lrs"].items():
        assert lrs[name] == pytest.approx(want, rel=1e-12, abs=1e-15), name
    assert optimizer.get_lr() == optimizer.group_lrs()["default"]


def test_composite_steps_each_group_with_its_optimizer_and_resumes():
    groups = {
        "default": {"optimizer": {"_name": "adam", "weight_decay": 0.0}},  # lr: optimization.lr
        "decoder": {"lr_float": 0.5, "optimizer": {"_name": "sgd", "momentum": 0.9}},
    }

    def make():
        params = composite_params()
        return params, OPTIMIZER_REGISTRY.build(composite_config(groups), params)

    def steps(params, opt, count, start=0):
        for i in range(start, start + count):
            params[0].grad = torch.full((3,), 1.0 + i)
            params[1].grad = torch.full((2,), -1.0 - i)
            opt.step()

    params, opt = make()
    assert opt.group_lrs() == {"default": 0.25, "decoder": 0.5}
    steps(params, opt, 1)
    # adam's first step moves by lr (sign of the gradient); sgd's by lr * grad.
    torch.testing.assert_close(params[0].detach(), torch.full((3,), -0.25), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(params[1].detach(), torch.full((2,), 0.5))
    steps(params, opt, 3, start=1)
    uninterrupted = [p.detach().clone() for p in params]

    params, opt = make()
    steps(params, opt, 2)
    saved = round_trip({"params": [p.detach() for p in params], "optimizer": opt.state_dict()})
    assert set(saved["optimizer"]) >= {"state", "param_groups"}  # torch's layout
    params, opt = make()
    with torch.no_grad():
        for p, q in zip(params, saved["params"]):
            p.copy_(q)
    opt.load_state_dict(saved["optimizer"])
    steps(params, opt, 2, start=2)
    for p, q in zip(params, uninterrupted):
        assert torch.equal(p.detach(), q)


def test_composite_loads_fairseqs_per_group_state():
    """fairseq's composite saves {group: that optimizer's state}; it loads here into the groups."""
    groups = {
        "default": {"optimizer": {"_name": "sgd", "momentum": 0.9}},
        "decoder": {"optimizer": {"_name": "sgd", "momentum": 0.9}},
    }
    sgd = OmegaConf.merge(component_node("optimizer", "sgd"), {"lr": [0.25], "momentum": 0.9})
    fairseq_layout = {}
    for name, p in zip(("default", "decoder"), composite_params()):
        single = OPTIMIZER_REGISTRY.build(sgd, [p])
        p.grad = torch.full_like(p, 2.0 if name == "decoder" else 1.0)
        single.step()
        fairseq_layout[name] = single.state_dict()
    params = composite_params()
    opt = OPTIMIZER_REGISTRY.build(composite_config(groups), params)
    opt.load_state_dict(round_trip(fairseq_layout))
    assert torch.equal(opt.optimizer.state[params[0]]["momentum_buffer"], torch.ones(3))
    assert torch.equal(opt.optimizer.state[params[1]]["momentum_buffer"], torch.full((2,), 2.0))
    assert set(opt.state_dict()["state"]) == {0, 1}  # saved again in torch's layout


@pytest.mark.parametrize(
    "groups,message",
    [
        (
            {"default": {"optimizer": {"_name": "sgd"}}},
            r"names \['default'\] but the model's parameters are in groups \['decoder', 'default'\]",
        ),
        (
            {"default": {"optimizer": {"_name": "sgd"}}, "decoder": {"optimizer": {"_name": "sdg"}}},
            r"unknown optimizer 'sdg' \(did you mean 'sgd'\?\)",
        ),
        (
            {"default": {"optimizer": {"_name": "sgd"}}, "decoder": {"optimiser": {}}},
            r"optimizer\.groups\.decoder\.optimiser is not a setting of a composite group "
            r"\(did you mean 'optimizer'\?\)",
        ),
        (
            {"default": {"optimizer": {"_name": "sgd", "momentun": 0.9}}, "decoder": {"optimizer": {"_name": "sgd"}}},
            r"optimizer\.groups\.default\.optimizer\.momentun: optimizer 'sgd' has no such setting "
            r"\(did you mean 'momentum'\?\)",
        ),
        (
            {
                "default": {"optimizer": {"_name": "sgd"}, "lr_scheduler": {"_name": "fixed"}},
                "decoder": {"optimizer": {"_name": "sgd"}},
            },
            r"groups \['decoder'\] have no lr_scheduler",
        ),
    ],
)
def test_composite_mistakes_are_one_line(groups, message):
    with pytest.raises(ConfigError, match=message) as error:
        OPTIMIZER_REGISTRY.build(composite_config(groups), composite_params())
    assert "\n" not in str(error.value)


def test_fp16_composite_keeps_a_flat_master_per_group():
    from fairseq_lite.optim.fp16_optimizer import FP16Optimizer

    groups = {"default": {"optimizer": {"_name": "adam"}}, "decoder": {"lr_float": 0.5, "optimizer": {"_name": "sgd"}}}
    params = [
        torch.nn.Parameter(torch.zeros(3, dtype=torch.float16)),
        torch.nn.Parameter(torch.zeros(2, dtype=torch.float16)),
        torch.nn.Parameter(torch.zeros(4, dtype=torch.float16)),
    ]
    params[1].param_group = "decoder"
    opt = FP16Optimizer(composite_config(groups), params)
    assert sorted(m.numel() for m in opt.params) == [2, 7]  # default: 3 + 4 flattened; decoder: 2
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    assert params[1].tolist() == [-0.5, -0.5] and all(abs(v + 0.25) < 1e-3 for v in params[0].tolist())


def test_composite_resume_takes_the_checkpoints_group_settings():
    groups = {"default": {"optimizer": {"_name": "sgd"}}, "decoder": {"lr_float": 0.5, "optimizer": {"_name": "sgd"}}}
    params = composite_params()
    opt = OPTIMIZER_REGISTRY.build(composite_config(groups), params)
    opt.optimizers["decoder"].set_lr(0.125)  # e.g. lowered by its schedule before the save
    saved = round_trip(opt.state_dict())
    resumed = OPTIMIZER_REGISTRY.build(composite_config(groups), composite_params())
    resumed.load_state_dict(saved)
    assert resumed.group_lrs() == {"default": 0.25, "decoder": 0.125}
    assert resumed.optimizers["decoder"].optimizer.param_groups[0] is resumed.optimizer.param_groups[1]
