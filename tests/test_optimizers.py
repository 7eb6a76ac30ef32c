"""The documented-update references of ``gradcheck.optimizers`` and the check built on them.

The references are tested three ways: against numbers worked out by hand, against the real
``torch.optim`` optimizers over many hyper-parameter combinations (and implementations), and by
planted bugs: hand-written optimizers that are wrong in one specific, realistic way (dampening
at the first step, Nesterov computed as plain momentum, no bias correction, ...), each of which
``check_optimizer_steps`` must report as a failing claim. A hand-written optimizer without a bug
passes, so each failure is the bug's doing.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
import torch

from gradcheck.errors import InvalidArgument
from gradcheck.optimizers import (
    adam_reference,
    adam_trajectory,
    check_optimizer_steps,
    judge_steps,
    record_steps,
    sgd_reference,
    sgd_trajectory,
)
from gradcheck.results import Claim
from gradcheck.scenarios.base import run_scenario
from gradcheck.scenarios.optim import SCENARIOS

F64 = torch.float64
SGD, ADAM, ADAMW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW


def failing(claims: list[Claim]) -> list[Claim]:
    return [claim for claim in claims if not claim.passed]


def explain(claims: list[Claim]) -> str:
    return "\n".join(f"{c.statement}: {c.detail}" for c in claims)


# -- the references against hand-worked numbers --------------------------------------------------


def scalar(value: float) -> torch.Tensor:
    return torch.tensor([value], dtype=F64)


def test_sgd_reference_by_hand_momentum_dampening() -> None:
    # step 1: buf = g = 2 (no dampening at the first step), p = 1 - 0.1*2 = 0.8
    # step 2: buf = 0.9*2 + (1 - 0.5)*3 = 3.3, p = 0.8 - 0.33 = 0.47
    steps = sgd_reference(
        [scalar(1.0)], [[scalar(2.0)], [scalar(3.0)]], lr=0.1, momentum=0.9, dampening=0.5
    )
    assert [float(s[0]) for s in steps] == pytest.approx([0.8, 0.47], abs=1e-15)


def test_sgd_reference_by_hand_nesterov_weight_decay_maximize() -> None:
    # g = -2 + 0.5*1 = -1.5; buf = -1.5; d = g + 0.9*buf = -2.85; p = 1 + 0.285 = 1.285
    steps = sgd_reference(
        [scalar(1.0)],
        [[scalar(2.0)]],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
        weight_decay=0.5,
        maximize=True,
    )
    assert float(steps[0][0][0]) == pytest.approx(1.285, abs=1e-15)


def test_adam_reference_by_hand_first_step_is_lr_times_sign() -> None:
    # m = 0.1*2 = 0.2, v = 0.001*4 = 0.004; m_hat = 2, v_hat = 4: p = 1 - 0.1*2/(2 + eps)
    steps = adam_reference([scalar(1.0)], [[scalar(2.0)]], lr=0.1)
    assert float(steps[0][0][0]) == pytest.approx(1 - 0.1 * 2 / (2 + 1e-8), abs=1e-15)


def test_adam_reference_by_hand_amsgrad_keeps_the_raw_maximum() -> None:
    # betas (0.5, 0.5), eps 0: step 1 g=2: m=1, v=2, m_hat=2, v_hat=4 -> p = 1 - 0.1 = 0.9
    # step 2 g=0: m=0.5, v=1, v_max=max(2, 1)=2; m_hat=0.5/0.75, v_hat=2/0.75
    # -> p = 0.9 - 0.1*(2/3)/sqrt(8/3)
    grads = [[scalar(2.0)], [scalar(0.0)]]
    ams = adam_reference([scalar(1.0)], grads, lr=0.1, betas=(0.5, 0.5), eps=0.0, amsgrad=True)
    plain = adam_reference([scalar(1.0)], grads, lr=0.1, betas=(0.5, 0.5), eps=0.0)
    assert float(ams[1][0][0]) == pytest.approx(0.9 - 0.1 * (2 / 3) / math.sqrt(8 / 3), 1e-15)
    assert float(plain[1][0][0]) == pytest.approx(0.9 - 0.1 * (2 / 3) / math.sqrt(4 / 3), 1e-15)


def test_adamw_reference_decays_before_the_update() -> None:
    # p = 1*(1 - 0.1*0.5) = 0.95, then - 0.1*2/2 = 0.85 (eps 0)
    steps = adam_reference(
        [scalar(1.0)],
        [[scalar(2.0)]],
        lr=0.1,
        eps=0.0,
        weight_decay=0.5,
        decoupled_weight_decay=True,
    )
    assert float(steps[0][0][0]) == pytest.approx(0.85, abs=1e-15)


def test_references_never_call_torch_optim(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the reference called torch.optim")

    for cls in (SGD, ADAM, ADAMW):
        monkeypatch.setattr(cls, "step", refuse)
        monkeypatch.setattr(cls, "__init__", refuse)
    p = [torch.randn(4, dtype=F64, generator=torch.Generator().manual_seed(0))]
    grads = [[torch.ones(4, dtype=F64)], [torch.full((4,), 0.5, dtype=F64)]]
    assert len(sgd_reference(p, grads, lr=0.1, momentum=0.9)) == 2
    assert len(adam_reference(p, grads, lr=0.1, amsgrad=True)) == 2


def test_references_leave_their_inputs_alone() -> None:
    p = [torch.tensor([1.0, -2.0], dtype=F64)]
    g = [[torch.tensor([0.5, 0.25], dtype=F64)]]
    sgd_reference(p, g, lr=0.1, momentum=0.9, weight_decay=0.1, maximize=True)
    adam_reference(p, g, lr=0.1, weight_decay=0.1, maximize=True, decoupled_weight_decay=True)
    assert p[0].tolist() == [1.0, -2.0] and g[0][0].tolist() == [0.5, 0.25]


# -- the references against torch.optim ----------------------------------------------------------


def sgd_grid() -> list[dict[str, Any]]:
    grid = []
    for momentum, dampening, nesterov, weight_decay, maximize in itertools.product(
        (0.0, 0.9), (0.0, 0.3), (False, True), (0.0, 0.05), (False, True)
    ):
        if nesterov and (momentum == 0 or dampening != 0):
            continue
        grid.append(
            {
                "lr": 0.1,
                "momentum": momentum,
                "dampening": dampening,
                "nesterov": nesterov,
                "weight_decay": weight_decay,
                "maximize": maximize,
            }
        )
    return grid


def adam_grid() -> list[tuple[type[torch.optim.Optimizer], dict[str, Any]]]:
    grid = []
    for cls, amsgrad, weight_decay, maximize, betas in itertools.product(
        (ADAM, ADAMW), (False, True), (0.0, 0.05), (False, True), ((0.9, 0.999), (0.5, 0.9))
    ):
        grid.append(
            (
                cls,
                {
                    "lr": 0.05,
                    "betas": betas,
                    "weight_decay": weight_decay,
                    "amsgrad": amsgrad,
                    "maximize": maximize,
                },
            )
        )
    grid.append((ADAM, {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}))
    grid.append((ADAM, {"lr": 0.05, "eps": 0.0}))
    grid.append((ADAM, {"lr": 0.05, "eps": 0.1, "betas": (0.0, 0.0)}))
    return grid


def label(value: Any) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items() if v not in (0.0, False))
    return getattr(value, "__name__", str(value))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("hyper", sgd_grid(), ids=label)
def test_torch_sgd_follows_the_documented_update(hyper: dict[str, Any], dtype) -> None:
    claims = check_optimizer_steps(SGD, hyper, steps=4, seed=3, dtype=dtype)
    assert len(claims) == 4
    assert not failing(claims), explain(failing(claims))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize(("cls", "hyper"), adam_grid(), ids=label)
def test_torch_adam_follows_the_documented_update(cls, hyper: dict[str, Any], dtype) -> None:
    claims = check_optimizer_steps(cls, hyper, steps=4, seed=5, dtype=dtype)
    assert not failing(claims), explain(failing(claims))


@pytest.mark.parametrize("implementation", [{"foreach": True}, {"fused": True}, {"foreach": False}])
@pytest.mark.parametrize(
    ("cls", "hyper"),
    [
        (SGD, {"lr": 0.1, "momentum": 0.9, "dampening": 0.2, "weight_decay": 0.01}),
        (SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True}),
        (ADAM, {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01}),
        (ADAMW, {"lr": 0.05, "amsgrad": True, "maximize": True}),
    ],
    ids=label,
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_every_torch_implementation_follows_the_documented_update(
    cls, hyper: dict[str, Any], implementation: dict[str, bool], dtype
) -> None:
    claims = check_optimizer_steps(cls, {**hyper, **implementation}, seed=11, dtype=dtype)
    assert not failing(claims), explain(failing(claims))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["f16", "bf16"])
@pytest.mark.parametrize(
    ("cls", "hyper"),
    [(SGD, {"lr": 0.1, "momentum": 0.9}), (ADAM, {"lr": 0.05, "eps": 1e-3})],
    ids=label,
)
def test_half_precision_steps_pass_against_the_float64_reference(cls, hyper, dtype) -> None:
    claims = check_optimizer_steps(cls, hyper, seed=2, dtype=dtype)
    assert not failing(claims), explain(failing(claims))


def random_configs(count: int, seed: int) -> list[tuple[type[torch.optim.Optimizer], dict]]:
    rng = random.Random(seed)
    configs: list[tuple[type[torch.optim.Optimizer], dict]] = []
    for _ in range(count):
        if rng.random() < 0.5:
            momentum = rng.choice([0.0, 0.5, 0.99])
            nesterov = momentum > 0 and rng.random() < 0.4
            configs.append(
                (
                    SGD,
                    {
                        "lr": 10 ** rng.uniform(-4, 1),
                        "momentum": momentum,
                        "dampening": 0.0 if nesterov else rng.choice([0.0, 0.5, 1.0]),
                        "nesterov": nesterov,
                        "weight_decay": rng.choice([0.0, 0.1, 1.0]),
                        "maximize": rng.random() < 0.3,
                    },
                )
            )
        else:
            configs.append(
                (
                    rng.choice([ADAM, ADAMW]),
                    {
                        "lr": 10 ** rng.uniform(-4, 0.5),
                        "betas": (rng.choice([0.0, 0.9, 0.99]), rng.choice([0.0, 0.999])),
                        "eps": rng.choice([0.0, 1e-12, 1e-8, 1e-3]),
                        "weight_decay": rng.choice([0.0, 0.1, 1.0]),
                        "amsgrad": rng.random() < 0.5,
                        "maximize": rng.random() < 0.3,
                    },
                )
            )
    return configs


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_rounding_bound_alone_covers_torch(dtype) -> None:
    """With ``atol=rtol=0`` only the propagated rounding bound is allowed: it must hold for
    random hyper-parameters, parameter scales and gradient scales (it is a bound, not a
    tolerance picked to pass)."""
    rng = random.Random(17)
    for cls, hyper in random_configs(60, seed=23):
        generator = torch.Generator().manual_seed(rng.randrange(2**31))
        scale, weight = 10 ** rng.uniform(-3, 2), 10 ** rng.uniform(-3, 2)
        params = [
            (scale * torch.randn(shape, generator=generator, dtype=F64)).to(dtype).requires_grad_()
            for shape in ((5,), (3, 4))
        ]
        weights = [weight * torch.randn(p.shape, generator=generator, dtype=F64) for p in params]

        def loss(params=params, weights=weights) -> torch.Tensor:
            return sum((w.to(dtype) * torch.sin(p)).sum() for w, p in zip(weights, params))

        recording = record_steps(cls, hyper, params, loss, steps=5)
        claims = judge_steps(cls, hyper, recording, atol=0.0, rtol=0.0)
        assert not failing(claims), f"{cls.__name__}{hyper}\n" + explain(failing(claims))


def test_trajectory_bounds_grow_with_the_measured_precision() -> None:
    p = [torch.tensor([1.0, -0.5], dtype=F64)]
    grads = [[torch.tensor([0.3, 0.2], dtype=F64)]] * 3
    for trajectory in (sgd_trajectory, adam_trajectory):
        f64 = trajectory(p, grads, lr=0.1, measured_dtype=torch.float64)
        f32 = trajectory(p, grads, lr=0.1, measured_dtype=torch.float32)
        assert torch.equal(f64.values[2][0], f32.values[2][0])
        assert bool((f32.errors[2][0] > 1e6 * f64.errors[2][0]).all())
        assert bool((f64.errors[2][0] > f64.errors[0][0]).all())  # errors accumulate


# -- claims: what they say ----------------------------------------------------------------------


def test_claims_name_the_optimizer_the_step_and_the_hyper_parameters() -> None:
    claims = check_optimizer_steps(ADAM, {"amsgrad": True, "weight_decay": 0.01})
    assert [c.statement for c in claims] == [
        f"Adam(weight_decay=0.01, amsgrad=True) step {t} matches the documented update"
        for t in (1, 2, 3)
    ]
    assert all(c.passed and c.measured is not None and len(c.measured) == 7 for c in claims)
    assert all(len(c.checks) == 2 and c.checks[0].oracle == "formula" for c in claims)
    assert "match the documented Adam update" in claims[0].detail
    reproduce = claims[0].checks[0].reproduce
    assert reproduce.startswith("gradcheck.optimizers.check_optimizer_steps(torch.optim.adam.Adam")
    assert Claim.from_dict(claims[1].to_dict()) == claims[1]


def test_float32_claims_say_so() -> None:
    claims = check_optimizer_steps(SGD, {"lr": 0.1}, steps=1, dtype=torch.float32)
    assert claims[0].statement == "SGD(lr=0.1) step 1 matches the documented update (in float32)"
    assert claims[0].checks[0].dtype == "float32"


def test_check_is_seeded_and_leaves_rng_and_grad_mode_alone() -> None:
    state = torch.random.get_rng_state()
    with torch.no_grad():
        first = check_optimizer_steps(SGD, {"lr": 0.1, "momentum": 0.9}, seed=4)
    assert torch.is_grad_enabled()
    assert torch.equal(state, torch.random.get_rng_state())
    again = check_optimizer_steps(SGD, {"lr": 0.1, "momentum": 0.9}, seed=4)
    other = check_optimizer_steps(SGD, {"lr": 0.1, "momentum": 0.9}, seed=5)
    assert [c.measured for c in first] == [c.measured for c in again]
    assert first[0].measured != other[0].measured
    assert all(c.passed for c in first)


def test_gradients_change_size_between_steps_so_amsgrad_matters() -> None:
    """The loss scale differs per step, so AMSGrad's maximum is used (otherwise an Adam that
    ignores amsgrad would pass every amsgrad scenario)."""
    claims = check_optimizer_steps(IgnoresAmsgradAdam, {"lr": 0.1, "amsgrad": True})
    assert failing(claims)


def test_check_runs_inside_inference_mode() -> None:
    with torch.inference_mode():
        claims = check_optimizer_steps(ADAM, {"lr": 0.1}, steps=2)
    assert all(c.passed for c in claims)


# -- planted bugs: hand-written optimizers, each wrong in one way ----------------------------------


class HandSGD(torch.optim.SGD):
    """SGD written out by hand; ``bug`` names the one thing a subclass gets wrong."""

    bug: ClassVar[str | None] = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, mu, tau = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            if self.bug == "lr_off_by_1e-6":
                lr = lr * (1 + 1e-6)
            for p in group["params"]:
                g = -p.grad if maximize and self.bug != "maximize_flips_the_step" else p.grad
                if wd and self.bug != "weight_decay_outside_momentum":
                    g = g + wd * p
                direction = g
                if mu:
                    state = self.state[p]
                    if "buf" not in state:
                        first = (1 - tau) * g if self.bug == "dampening_at_first_step" else g
                        state["buf"] = first.clone()
                    else:
                        state["buf"] = mu * state["buf"] + (1 - tau) * g
                    buf = state["buf"]
                    if nesterov and self.bug != "nesterov_as_plain_momentum":
                        direction = g + mu * buf
                    else:
                        direction = buf
                if wd and self.bug == "weight_decay_outside_momentum":
                    direction = direction + wd * p
                if self.bug == "maximize_flips_the_step" and maximize:
                    p.add_(direction, alpha=lr)
                else:
                    p.add_(direction, alpha=-lr)


class HandAdam(torch.optim.Adam):
    """Adam (and AdamW, via ``decoupled_weight_decay``) written out by hand."""

    bug: ClassVar[str | None] = None

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad = group["weight_decay"], group["amsgrad"]
            decoupled = group["decoupled_weight_decay"]
            if self.bug == "ignores_amsgrad":
                amsgrad = False
            if self.bug == "adamw_decay_coupled":
                decoupled = False
            for p in group["params"]:
                state = self.state[p]
                if not state:
                    state.update(t=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                    state.update(v_max=torch.zeros_like(p), v_hat_max=torch.zeros_like(p))
                state["t"] += 1
                t = state["t"]
                g = -p.grad if group["maximize"] else p.grad
                if wd and decoupled:
                    p.mul_(1 - lr * wd)
                elif wd:
                    g = g + wd * p
                state["m"] = beta1 * state["m"] + (1 - beta1) * g
                state["v"] = beta2 * state["v"] + (1 - beta2) * g * g
                c1, c2 = 1 - beta1**t, 1 - beta2**t
                if self.bug == "no_bias_correction":
                    c1 = c2 = 1.0
                if amsgrad and self.bug == "amsgrad_max_of_corrected":
                    state["v_hat_max"] = torch.maximum(state["v_hat_max"], state["v"] / c2)
                    v_hat = state["v_hat_max"]
                elif amsgrad:
                    state["v_max"] = torch.maximum(state["v_max"], state["v"])
                    v_hat = state["v_max"] / c2
                else:
                    v_hat = state["v"] / c2
                if self.bug == "eps_inside_sqrt":
                    denominator = (v_hat + eps).sqrt()
                else:
                    denominator = v_hat.sqrt() + eps
                p.sub_(lr * (state["m"] / c1) / denominator)


def planted(base: type, bug: str) -> type:
    return type(f"{base.__name__}_{bug}", (base,), {"bug": bug, "__module__": __name__})


def hand_adamw(bug: str | None) -> type:
    """HandAdam's step on an AdamW subclass (AdamW's defaults and decoupled weight decay)."""
    name = f"HandAdamW_{bug}"
    return type(name, (torch.optim.AdamW,), {"step": HandAdam.step, "bug": bug})


IgnoresAmsgradAdam = planted(HandAdam, "ignores_amsgrad")

SGD_HYPER = {"lr": 0.1, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.05}
NESTEROV_HYPER = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.05}
MAXIMIZE_HYPER = {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.2, "maximize": True}
ADAM_HYPER = {"lr": 0.1, "betas": (0.8, 0.99), "weight_decay": 0.05, "amsgrad": True}


@pytest.mark.parametrize(
    ("cls", "hyper"),
    [
        (HandSGD, SGD_HYPER),
        (HandSGD, NESTEROV_HYPER),
        (HandSGD, MAXIMIZE_HYPER),
        (HandAdam, ADAM_HYPER),
        (HandAdam, {**ADAM_HYPER, "decoupled_weight_decay": True}),
        (hand_adamw(None), ADAM_HYPER),
    ],
    ids=label,
)
def test_hand_written_optimizers_without_a_bug_pass(cls, hyper) -> None:
    claims = check_optimizer_steps(cls, hyper, steps=4, seed=1)
    assert not failing(claims), explain(failing(claims))


PLANTED = [
    # (optimizer, hyper-parameters, the first step at which the bug shows)
    (planted(HandSGD, "dampening_at_first_step"), SGD_HYPER, 1),
    (planted(HandSGD, "nesterov_as_plain_momentum"), NESTEROV_HYPER, 1),
    (planted(HandSGD, "weight_decay_outside_momentum"), SGD_HYPER, 2),
    (planted(HandSGD, "maximize_flips_the_step"), MAXIMIZE_HYPER, 1),
    (planted(HandSGD, "lr_off_by_1e-6"), {"lr": 0.1}, 1),
    (planted(HandAdam, "no_bias_correction"), {"lr": 0.1}, 1),
    (planted(HandAdam, "eps_inside_sqrt"), {"lr": 0.1}, 1),
    (planted(HandAdam, "amsgrad_max_of_corrected"), ADAM_HYPER, 2),
    (IgnoresAmsgradAdam, ADAM_HYPER, 2),
    (hand_adamw("adamw_decay_coupled"), {"lr": 0.1, "weight_decay": 0.1}, 1),
]


def bug_name(value: Any) -> str | None:
    return getattr(value, "bug", None) if isinstance(value, type) else None


@pytest.mark.parametrize(("cls", "hyper", "first_bad_step"), PLANTED, ids=bug_name)
def test_planted_bug_is_caught(cls, hyper, first_bad_step: int) -> None:
    claims = check_optimizer_steps(cls, hyper, steps=4, seed=1)
    bad = failing(claims)
    assert bad, f"{cls.__name__} was not caught:\n" + explain(claims)
    assert claims.index(bad[0]) + 1 == first_bad_step, explain(claims)
    assert bad[0].detail.startswith("Value mismatch: p"), bad[0].detail
    assert "against formula" in bad[0].detail
    assert any(check.status == "failed" for check in bad[0].checks)


def test_planted_bug_is_caught_in_float32_too() -> None:
    cls = planted(HandSGD, "dampening_at_first_step")
    claims = check_optimizer_steps(cls, SGD_HYPER, steps=2, dtype=torch.float32)
    assert not claims[0].passed and "(float32)" in claims[0].detail


def test_subclass_is_held_to_the_documented_defaults() -> None:
    class QuietDefaultSGD(torch.optim.SGD):
        def __init__(self, params, lr=1e-3, momentum=0.5, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(params, lr=lr, momentum=momentum, **kwargs)

    assert failing(check_optimizer_steps(QuietDefaultSGD, {"lr": 0.1}))
    assert not failing(check_optimizer_steps(QuietDefaultSGD, {"lr": 0.1, "momentum": 0.0}))


# -- the scenarios ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_optim_scenario_passes(scenario) -> None:
    result = run_scenario(scenario, seed=0)
    assert result.status == "passed", result.reason or explain(list(result.failed_claims))
    assert len(result.claims) == 3
    assert all(c.checks and all(k.passed for k in c.checks) for c in result.claims)
    assert result.claims[0].checks[0].reproduce == f"gradcheck run -k {scenario.id} --seed 0"


def test_optim_scenarios_are_small_well_formed_records() -> None:
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids)) and all(i.startswith("optim/") for i in ids)
    for needed in ("sgd_momentum_dampening", "sgd_nesterov_weight_decay", "adam", "adamw"):
        assert f"optim/{needed}" in ids
    assert "optim/adam_amsgrad_weight_decay" in ids
    assert all(s.oracles == ("formula",) and "optimizer" in s.tags for s in SCENARIOS)


def test_optim_scenario_fails_when_torch_misbehaves(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = next(s for s in SCENARIOS if s.id == "optim/sgd_momentum_dampening")
    monkeypatch.setattr(torch.optim.SGD, "step", HandSGD.step)
    monkeypatch.setattr(torch.optim.SGD, "bug", "dampening_at_first_step", raising=False)
    result = run_scenario(scenario)
    assert result.status == "failed"
    assert "Value mismatch" in result.failed_claims[0].detail


# -- bad arguments -------------------------------------------------------------------------------

ONE_PARAM = [torch.zeros(2)]

BAD_ARGUMENTS = {
    "unknown_optimizer": (
        lambda: check_optimizer_steps(torch.optim.RMSprop, {"lr": 0.1}),
        r"Got optimizer_cls=torch\.optim\.rmsprop\.RMSprop, but gradcheck has documented "
        r"reference updates only for torch\.optim\.SGD, torch\.optim\.Adam and "
        r"torch\.optim\.AdamW",
    ),
    "optimizer_instance": (
        lambda: check_optimizer_steps(SGD([torch.zeros(1, requires_grad=True)]), {}),
        r"must be an optimizer class \(not an instance\)",
    ),
    "nesterov_without_momentum": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1, "nesterov": True}),
        r"Got nesterov=True with momentum=0, but Nesterov momentum needs momentum > 0\. "
        r"Pass momentum=0\.9 \(for example\) or nesterov=False\.",
    ),
    "nesterov_with_dampening": (
        lambda: check_optimizer_steps(
            SGD, {"lr": 0.1, "nesterov": True, "momentum": 0.9, "dampening": 0.1}
        ),
        r"Got nesterov=True with dampening=0\.1, but Nesterov momentum needs dampening=0",
    ),
    "negative_lr": (
        lambda: check_optimizer_steps(SGD, {"lr": -0.1}),
        r"Got lr=-0\.1, but lr must be >= 0\. Pass, for example, lr=0\.01\.",
    ),
    "nan_lr": (
        lambda: check_optimizer_steps(SGD, {"lr": math.nan}),
        r"Got lr=nan, but lr must be finite",
    ),
    "tensor_lr": (
        lambda: check_optimizer_steps(SGD, {"lr": torch.tensor(0.1)}),
        r"Got lr=tensor\(0\.1000\), but lr must be a real number",
    ),
    "negative_momentum": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1, "momentum": -0.9}),
        r"Got momentum=-0\.9, but momentum must be >= 0",
    ),
    "beta_of_one": (
        lambda: check_optimizer_steps(ADAM, {"betas": (0.9, 1.0)}),
        r"Got betas=\(0\.9, 1\.0\), but betas must be a pair \(beta1, beta2\) of numbers in "
        r"\[0, 1\)\. Pass, for example, betas=\(0\.9, 0\.999\)\.",
    ),
    "betas_not_a_pair": (
        lambda: check_optimizer_steps(ADAM, {"betas": 0.9}),
        r"Got betas=0\.9, but betas must be a pair",
    ),
    "negative_eps": (
        lambda: check_optimizer_steps(ADAM, {"eps": -1e-8}),
        r"Got eps=-1e-08, but eps must be >= 0",
    ),
    "flag_not_bool": (
        lambda: check_optimizer_steps(ADAM, {"amsgrad": 1}),
        r"Got amsgrad=1, but amsgrad must be True or False",
    ),
    "misspelt_key": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1, "momentun": 0.9}),
        r"Got hyper key 'momentun', but SGD accepts only lr, momentum, dampening, "
        r"weight_decay, nesterov, maximize, foreach, fused\. Did you mean 'momentum'\?",
    ),
    "adamw_is_always_decoupled": (
        lambda: check_optimizer_steps(ADAMW, {"decoupled_weight_decay": False}),
        r"Got hyper key 'decoupled_weight_decay', but AdamW accepts only",
    ),
    "capturable": (
        lambda: check_optimizer_steps(ADAM, {"capturable": True}),
        r"Got hyper key 'capturable', but .* leave 'capturable' out",
    ),
    "foreach_and_fused": (
        lambda: check_optimizer_steps(ADAM, {"foreach": True, "fused": True}),
        r"Got foreach=True and fused=True, but torch runs one implementation at a time",
    ),
    "hyper_not_a_dict": (
        lambda: check_optimizer_steps(SGD, [("lr", 0.1)]),
        r"Got hyper=\[\('lr', 0\.1\)\], but hyper must be a dict of keyword arguments",
    ),
    "zero_steps": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, steps=0),
        r"Got steps=0, but steps must be an integer >= 1\. Pass, for example, steps=3\.",
    ),
    "bool_steps": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, steps=True),
        r"Got steps=True, but steps must be an integer",
    ),
    "empty_shape": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, shapes=((0,),)),
        r"Got shapes=\(\(0,\),\), but shapes must be a non-empty sequence of tensor shapes "
        r"with at least one element each",
    ),
    "no_shapes": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, shapes=()),
        r"Got shapes=\(\), but shapes must be a non-empty sequence",
    ),
    "negative_seed": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, seed=-1),
        r"Got seed=-1, but seed must be an integer in \[0, 9223372036854775806\]",
    ),
    "integer_dtype": (
        lambda: check_optimizer_steps(SGD, {"lr": 0.1}, dtype=torch.int64),
        r"Got dtype=torch\.int64, but dtype must be one of torch\.float64",
    ),
    "gradient_shape": (
        lambda: sgd_reference(ONE_PARAM, [[torch.zeros(3)]], lr=0.1),
        r"Got grads_per_step\[0\]\[0\] of shape \(3,\) for a parameter of shape \(2,\)",
    ),
    "gradient_count": (
        lambda: sgd_reference(ONE_PARAM, [[torch.zeros(2), torch.zeros(2)]], lr=0.1),
        r"Got 2 gradient\(s\) in grads_per_step\[0\] for 1 parameter\(s\)",
    ),
    "params_not_a_list": (
        lambda: sgd_reference(torch.zeros(2), [[torch.zeros(2)]], lr=0.1),
        r"Got params=tensor\(shape=\(2,\), dtype=torch\.float32\), but params must be a "
        r"non-empty list of tensors",
    ),
    "no_steps_of_gradients": (
        lambda: sgd_reference(ONE_PARAM, [], lr=0.1),
        r"Got grads_per_step=\[\], but it must be a non-empty list",
    ),
    "integer_parameter": (
        lambda: adam_reference([torch.zeros(2, dtype=torch.int64)], [[torch.zeros(2)]], lr=1),
        r"Got params\[0\]=tensor\(.*\), but every entry must be a floating-point tensor",
    ),
    "integer_measured_dtype": (
        lambda: sgd_trajectory(ONE_PARAM, [ONE_PARAM], lr=0.1, measured_dtype=torch.int32),
        r"Got measured_dtype=torch\.int32, but it must be one of",
    ),
    "parameter_without_grad": (
        lambda: record_steps(SGD, {"lr": 0.1}, [torch.zeros(2)], lambda: torch.zeros(()), steps=1),
        r"Got parameter p0=tensor\(.*\), but every parameter must be a leaf tensor with "
        r"requires_grad=True",
    ),
}


@pytest.mark.parametrize(("call", "message"), list(BAD_ARGUMENTS.values()), ids=list(BAD_ARGUMENTS))
def test_bad_argument_is_refused_with_a_fix(call: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        call()


def test_parameter_left_out_of_the_loss_is_named() -> None:
    used = torch.ones(2, requires_grad=True)
    unused = torch.ones(2, requires_grad=True)
    with pytest.raises(InvalidArgument, match=r"Parameter p1 has no \.grad .* at step 1"):
        record_steps(SGD, {"lr": 0.1}, [used, unused], lambda: used.sum(), steps=1)
