import math

import pytest
import torch
from omegaconf import OmegaConf

import fairseq_lite.optim  # noqa: F401  (registers optimizers and schedulers)
from fairseq_lite.errors import ConfigError
from fairseq_lite.optim.adam import FairseqAdam, FairseqAdamConfig
from fairseq_lite.optim.lr_scheduler import (
    CosineLRScheduleConfig,
    FixedLRScheduleConfig,
    InverseSquareRootLRScheduleConfig,
    PolynomialDecayLRScheduleConfig,
)
from fairseq_lite.optim.sgd import SGD, SGDConfig
from fairseq_lite.registry import LR_SCHEDULER_REGISTRY, OPTIMIZER_REGISTRY


def params(*values):
    return [torch.nn.Parameter(torch.tensor(v, dtype=torch.float32)) for v in values]


def adam(betas="(0.9, 0.999)", lr=0.1, params_=None, **kw):
    cfg = OmegaConf.structured(FairseqAdamConfig(adam_betas=betas, lr=[lr], _name="adam", **kw))
    return OPTIMIZER_REGISTRY.build(cfg, params_ if params_ is not None else params([1.0, 2.0]))


def sgd(lr=1.0):
    return SGD(OmegaConf.structured(SGDConfig(lr=[lr])), params([1.0]))


@pytest.mark.parametrize("betas", ["(0.9, 0.98)", "[0.9, 0.98]", [0.9, 0.98], (0.9, 0.98)])
def test_adam_betas_forms(betas):
    opt = adam(betas)
    assert isinstance(opt, FairseqAdam)
    assert tuple(opt.param_groups[0]["betas"]) == pytest.approx((0.9, 0.98))


def test_adam_betas_from_yaml_list():
    cfg = OmegaConf.merge(
        OmegaConf.structured(FairseqAdamConfig(lr=[0.1])), OmegaConf.create({"adam_betas": [0.9, 0.98]})
    )
    opt = FairseqAdam(cfg, params([1.0]))
    assert tuple(opt.param_groups[0]["betas"]) == pytest.approx((0.9, 0.98))


@pytest.mark.parametrize("betas", ["(0.9)", "(0.9, 0.98, 0.99)", "(1.2, 0.9)", "(0.9, -0.1)", "nonsense", [0.9]])
def test_adam_bad_betas(betas):
    with pytest.raises(ConfigError, match="adam_betas"):
        adam(betas)


def test_adam_uses_torch_fused_adamw_and_matches_fairseq():
    p = params([1.0, -2.0, 0.5])
    opt = adam("(0.9, 0.98)", lr=0.1, params_=p, adam_eps=1e-8, weight_decay=0.01)
    assert isinstance(opt.optimizer, torch.optim.AdamW)
    assert opt.optimizer.defaults["fused"] is True
    for step in range(3):
        p[0].grad = torch.tensor([0.3, -1.0, 2.0]) * (step + 1)
        opt.step()
    # fairseq 0.12.2's Adam (decoupled weight decay) after the same three steps.
    assert p[0].tolist() == pytest.approx([0.7057790160179138, -1.7027819156646729, 0.20727750658988953], abs=1e-6)


def test_sgd_momentum():
    cfg = OmegaConf.structured(SGDConfig(lr=[0.5], momentum=0.9, _name="sgd"))
    p = params([1.0])
    opt = OPTIMIZER_REGISTRY.build(cfg, p)
    for _ in range(2):
        p[0].grad = torch.tensor([1.0])
        opt.step()
    assert p[0].item() == pytest.approx(1.0 - 0.5 - 0.5 * 1.9)


def test_lr_get_set_multiply_and_clip():
    p = params([3.0, 0.0], [0.0])
    opt = SGD(OmegaConf.structured(SGDConfig(lr=[0.25])), p)
    assert opt.get_lr() == 0.25
    opt.set_lr(0.5)
    assert opt.get_lr() == 0.5
    p[0].grad, p[1].grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    assert opt.clip_grad_norm(0).item() == pytest.approx(5.0)  # 0: only measure
    assert p[1].grad.item() == 4.0
    opt.multiply_grads(2.0)
    assert p[1].grad.item() == 8.0
    norm = opt.clip_grad_norm(1.0)
    assert norm.item() == pytest.approx(10.0)
    assert math.hypot(p[0].grad[0].item(), p[1].grad.item()) == pytest.approx(1.0, rel=1e-5)
    opt.zero_grad()
    assert p[0].grad is None


def test_optimizer_state_dict_round_trip_with_overrides():
    p = params([1.0, 2.0])
    opt = adam(params_=p)
    p[0].grad = torch.tensor([1.0, -1.0])
    opt.step()
    state = opt.state_dict()
    p2 = params([1.0, 2.0])
    opt2 = adam(params_=p2, lr=0.5)
    opt2.load_state_dict(state, optimizer_overrides={"lr": 0.5})
    assert opt2.get_lr() == 0.5
    inner = opt2.optimizer.state[p2[0]]
    assert torch.equal(inner["exp_avg"], opt.optimizer.state[p[0]]["exp_avg"])


def build_scheduler(config_cls, lr, name=None, **kw):
    cfg = OmegaConf.structured(config_cls(lr=lr, _name=name, **kw))
    opt = sgd(lr=lr[0])
    if name is None:
        name = {
            FixedLRScheduleConfig: "fixed",
            InverseSquareRootLRScheduleConfig: "inverse_sqrt",
            CosineLRScheduleConfig: "cosine",
            PolynomialDecayLRScheduleConfig: "polynomial_decay",
        }[config_cls]
        cfg._name = name
    return LR_SCHEDULER_REGISTRY.build(cfg, opt), opt


STEPS = [0, 1, 5, 9, 10, 50, 99, 100, 101, 150, 250, 500, 999, 1000, 1100, 5000, 10000]

# (config class, config values, lr right after construction, lr after step_update(n) for n in STEPS),
# all computed with fairseq 0.12.2's schedulers.
FAIRSEQ_SCHEDULES = {
    "inverse_sqrt": (
        InverseSquareRootLRScheduleConfig,
        dict(warmup_updates=4000, warmup_init_lr=1e-7, lr=[5e-4]),
        1e-07,
        [
            1e-07,
            2.2497500000000001e-07,
            7.248750000000001e-07,
            1.224775e-06,
            1.34975e-06,
            6.348750000000001e-06,
            1.2472525000000003e-05,
            1.2597500000000003e-05,
            1.2722475000000002e-05,
            1.8846250000000003e-05,
            3.1343750000000006e-05,
            6.258750000000001e-05,
            0.000124950025,
            0.00012507500000000002,
            0.0001375725,
            0.0004472135954999579,
            0.00031622776601683794,
        ],
    ),
    "inverse_sqrt_default_init": (
        InverseSquareRootLRScheduleConfig,
        dict(warmup_updates=10, lr=[1e-3]),
        0.0,
        [
            0.0,
            0.0001,
            0.0005,
            0.0009000000000000001,
            0.001,
            0.00044721359549995795,
            0.00031782086308186413,
            0.00031622776601683794,
            0.0003146583877637763,
            0.00025819888974716116,
            0.00019999999999999998,
            0.0001414213562373095,
            0.00010005003753127737,
            9.999999999999999e-05,
            9.534625892455923e-05,
            4.4721359549995795e-05,
            3.1622776601683795e-05,
        ],
    ),
    "cosine": (
        CosineLRScheduleConfig,
        dict(warmup_updates=100, warmup_init_lr=1e-7, lr=[1e-3], min_lr=1e-5, max_update=1100),
        1e-07,
        [
            1e-07,
            1.0099000000000001e-05,
            5.0095e-05,
            9.0091e-05,
            0.00010009,
            0.0005000499999999999,
            0.0009900010000000001,
            0.001,
            0.0009999975572749199,
            0.0009939057285945933,
            0.0009460482294732421,
            0.000657963412215599,
            3.470989554511796e-05,
            3.4227024433899005e-05,
            0.0001,
            3.422702443389901e-09,
            3.422702443389902e-14,
        ],
    ),
    "cosine_t_mult": (
        CosineLRScheduleConfig,
        dict(warmup_updates=10, lr=[1e-3], min_lr=1e-6, t_mult=2.0, lr_period_updates=100, lr_shrink=0.5, max_update=0),
        1e-06,
        [
            1e-06,
            0.00010090000000000001,
            0.0005005000000000001,
            0.0009001000000000001,
            0.001,
            0.0006548539886902864,
            3.0530055907364385e-05,
            2.5447270110570814e-05,
            2.0833304004366997e-05,
            0.0004523019943451432,
            0.00010345063323995486,
            0.00013492257957901466,
            8.892503421123848e-05,
            8.870256736249319e-05,
            6.501378474645686e-05,
            1.125632463793718e-05,
            5.961113857656776e-06,
        ],
    ),
    "cosine_period_shrink": (
        CosineLRScheduleConfig,
        dict(warmup_updates=0, lr=[1e-3], min_lr=0.0, lr_period_updates=50, lr_shrink=0.5, max_update=1000),
        0.0,
        [
            0.001,
            0.0009990133642141358,
            0.0009755282581475768,
            0.0009221639627510075,
            0.0009045084971874737,
            0.0005,
            4.933178929321103e-07,
            0.00025,
            0.00024975334105353396,
            0.000125,
            3.125e-05,
            9.765625e-07,
            1.8818584172520077e-12,
            9.5367431640625e-10,
            2.384185791015625e-10,
            7.888609052210118e-34,
            6.223015277861142e-64,
        ],
    ),
    "polynomial_decay": (
        PolynomialDecayLRScheduleConfig,
        dict(warmup_updates=100, end_learning_rate=1e-5, power=2.0, total_num_update=1000, lr=[1e-3]),
        1e-05,
        [
            0.0,
            1e-05,
            5e-05,
            8.999999999999999e-05,
            0.0001,
            0.0005,
            0.00099,
            0.001,
            0.0009978012222222224,
            0.0008930555555555556,
            0.0006975000000000001,
            0.00031555555555555563,
            1.0001222222222223e-05,
            1e-05,
            1e-05,
            1e-05,
            1e-05,
        ],
    ),
    "fixed_warmup": (
        FixedLRScheduleConfig,
        dict(warmup_updates=10, lr=[0.25]),
        0.25,
        [0.025, 0.05, 0.15, 0.25] + [0.25] * 13,
    ),
}


@pytest.mark.parametrize("case", sorted(FAIRSEQ_SCHEDULES))
def test_schedules_match_fairseq(case):
    config_cls, values, initial, expected = FAIRSEQ_SCHEDULES[case]
    values = dict(values)
    scheduler, opt = build_scheduler(config_cls, values.pop("lr"), **values)
    assert opt.get_lr() == pytest.approx(initial, rel=1e-12, abs=1e-300)
    for n, lr in zip(STEPS, expected):
        assert scheduler.step_update(n) == pytest.approx(lr, rel=1e-9, abs=1e-300), n
        assert opt.get_lr() == pytest.approx(lr, rel=1e-9, abs=1e-300)


def test_fixed_per_epoch_lrs_and_force_anneal():
    scheduler, opt = build_scheduler(FixedLRScheduleConfig, [1.0, 0.5, 0.3], force_anneal=5, lr_shrink=0.5)
    lrs = []
    for epoch in range(1, 9):
        scheduler.step_begin_epoch(epoch)
        lrs.append(scheduler.step_update(7))
    assert lrs == pytest.approx([1.0, 0.5, 0.3, 0.3, 0.15, 0.075, 0.0375, 0.01875])  # fairseq's values


def test_polynomial_decay_epoch_steps():
    scheduler, _ = build_scheduler(PolynomialDecayLRScheduleConfig, [1.0], total_num_update=100)
    assert [scheduler.step_begin_epoch(e) for e in (1, 2, 3)] == [1.0, 1.0, 1.0]
    assert scheduler.step_update(30) == pytest.approx(0.7)


@pytest.mark.parametrize(
    "config_cls, values, match",
    [
        (InverseSquareRootLRScheduleConfig, dict(warmup_updates=0), "warmup_updates"),
        (InverseSquareRootLRScheduleConfig, dict(lr=[0.1, 0.2]), "single"),
        (CosineLRScheduleConfig, dict(lr=[0.1, 0.2], max_update=100), "single"),
        (CosineLRScheduleConfig, dict(lr=[0.1], min_lr=0.1, max_update=100), "min_lr"),
        (CosineLRScheduleConfig, dict(lr=[0.1], max_update=0), "max_update"),
        (CosineLRScheduleConfig, dict(lr=[0.1], max_update=100, warmup_updates=100), "max_update"),
        (PolynomialDecayLRScheduleConfig, dict(total_num_update=0), "total_num_update"),
    ],
)
def test_bad_scheduler_values(config_cls, values, match):
    values = dict(values)
    lr = values.pop("lr", [0.1])
    with pytest.raises(ConfigError, match=match) as info:
        build_scheduler(config_cls, lr, **values)
    assert "\n" not in str(info.value)


def test_scheduler_state_dict_round_trip():
    scheduler, _ = build_scheduler(FixedLRScheduleConfig, [1.0, 0.5], force_anneal=2)
    scheduler.step(1, val_loss=3.5)
    scheduler.step(2, val_loss=4.0)
    scheduler.step_begin_epoch(3)
    state = scheduler.state_dict()
    assert state == {"best": 3.5, "lr": pytest.approx(0.005)}  # 0.5 * 0.1 ** (3 + 1 - 2)
    assert all(isinstance(v, (int, float, type(None))) for v in state.values())
    restored, opt = build_scheduler(FixedLRScheduleConfig, [1.0, 0.5], force_anneal=2)
    restored.load_state_dict(state)
    assert restored.best == 3.5
    assert restored.step_update(10) == pytest.approx(0.005) and opt.get_lr() == pytest.approx(0.005)

    cosine, _ = build_scheduler(CosineLRScheduleConfig, [1e-3], max_update=100)
    cosine.step(1, val_loss=2.0)
    assert cosine.state_dict() == {"best": 2.0}


def nag(lr=0.1, momentum=0.9, weight_decay=0.01, params_=None):
    from fairseq_lite.optim.nag import FairseqNAGConfig

    cfg = OmegaConf.structured(FairseqNAGConfig(lr=[lr], momentum=momentum, weight_decay=weight_decay, _name="nag"))
    return OPTIMIZER_REGISTRY.build(cfg, params_ if params_ is not None else params([1.0, -2.0, 0.5]))


def test_nag_follows_fairseqs_update_with_lr_changes():
    """fairseq's NAG: p <- p(1 - lr wd) + m^2 c buf - (1 + m) lr g; buf <- m c buf - lr g, c = lr / lr_old.
    (fairseq 0.12.2's own NAG gives these very numbers, bit for bit, on this sequence.)"""
    grads = [[0.5, -1.0, 2.0], [0.1, 0.3, -0.2], [-0.4, 0.2, 0.9], [1.0, 1.0, 1.0]]
    lrs = [0.1, 0.1, 0.05, 0.2]
    m, wd = 0.9, 0.01
    opt = nag(lr=0.1, momentum=m, weight_decay=wd)
    (p,) = opt.param_groups[0]["params"]
    expected = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    buf = torch.zeros(3, dtype=torch.float64)
    lr_old = lrs[0]
    for g, lr in zip(grads, lrs):
        opt.set_lr(lr)
        p.grad = torch.tensor(g)
        opt.step()
        g = torch.tensor(g, dtype=torch.float64)
        c = lr / lr_old
        expected = expected * (1 - lr * wd) + m * m * c * buf - (1 + m) * lr * g
        buf = m * c * buf - lr * g
        lr_old = lr
    torch.testing.assert_close(p.detach().double(), expected, rtol=1e-6, atol=1e-7)


def test_nag_resumes_exactly():
    grads = [torch.tensor([0.5, -1.0, 2.0]) * k for k in (1.0, -0.5, 0.25, 2.0)]
    straight = nag()
    for g in grads:
        straight.param_groups[0]["params"][0].grad = g.clone()
        straight.step()
    first = nag()
    for g in grads[:2]:
        first.param_groups[0]["params"][0].grad = g.clone()
        first.step()
    state = first.state_dict()
    resumed = nag(params_=[torch.nn.Parameter(first.param_groups[0]["params"][0].detach().clone())])
    resumed.load_state_dict(state)
    resumed.set_lr(0.1)
    for g in grads[2:]:
        resumed.param_groups[0]["params"][0].grad = g.clone()
        resumed.step()
    assert torch.equal(resumed.param_groups[0]["params"][0], straight.param_groups[0]["params"][0])


def test_nag_bad_momentum():
    with pytest.raises(ConfigError, match=r"optimizer\.momentum must be in \[0, 1\)"):
        nag(momentum=1.5)
