"""Every catalog scenario proves all of its claims; the catalog's records are well formed."""

from __future__ import annotations

import os

import pytest
import torch

from gradcheck.scenarios import CATALOG, missing_requirement, run_scenario


@pytest.mark.parametrize("scenario", CATALOG.values(), ids=lambda s: s.id)
def test_scenario_claims_hold(scenario) -> None:
    reason = missing_requirement(scenario)
    if reason is not None:
        pytest.skip(f"{scenario.id}: {reason}")
    result = run_scenario(scenario, seed=0)
    assert result.status == "passed", result.reason or "\n".join(
        f"{c.statement}: {c.detail}" for c in result.failed_claims
    )
    assert result.claims
    for claim in result.claims:
        for check in claim.checks:
            assert check.passed or "planted-bug" in scenario.tags, check.message


def test_every_planted_bug_is_caught_by_every_oracle_that_runs_it() -> None:
    planted = [s for s in CATALOG.values() if "planted-bug" in s.tags]
    assert len(planted) >= 5
    for scenario in planted:
        result = run_scenario(scenario)
        assert [c.checks[0].status for c in result.claims] == ["failed"] * len(scenario.oracles)


NOTEBOOK_IDS = (
    "neuron/relu_backward",
    "neuron/repeated_backward",
    "neuron/sgd_step",
    "neuron/zero_grad",
    "chain/external_gradient",
    "chain/squared_loss",
    "training/gradient_descent_loop",
    "mean/square_mean_backward",
    "errors/no_requires_grad",
    "errors/non_scalar_backward",
    "errors/second_backward",
    "errors/missing_call_parentheses",
    "vector/backward_vjp",
    "tracking/detach",
    "tracking/requires_grad_false",
    "tracking/no_grad",
    "tracking/inference_mode",
    "accumulation/repeated_backward",
    "accumulation/zero_each_step",
    "polynomial/cubic_minus_square",
    "linear/mse_gradients",
    "linear/manual_update_pitfall",
    "linear/update_under_no_grad",
)


def test_every_notebook_claim_has_a_scenario_with_a_source() -> None:
    missing = [i for i in NOTEBOOK_IDS if i not in CATALOG]
    assert not missing
    for scenario_id in NOTEBOOK_IDS:
        scenario = CATALOG[scenario_id]
        assert scenario.source.startswith("seeds/") and "notebook" in scenario.tags
        assert scenario.oracles


def test_ci_runs_every_scenario_instead_of_skipping() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only enforced under CI=true (CI must install torchvision)")
    skipped = {s.id: missing_requirement(s) for s in CATALOG.values() if missing_requirement(s)}
    assert not skipped, skipped


def test_numeric_notebook_claims_record_check_results_with_stated_values() -> None:
    result = run_scenario(CATALOG["linear/mse_gradients"])
    claim = next(c for c in result.claims if c.statement.startswith("w.grad"))
    assert claim.stated == ("1.3333",)
    assert claim.measured is not None and abs(claim.measured[0] - 4 / 3) < 1e-6
    assert [c.oracle for c in claim.checks] == ["sympy", "finite_difference", "stated"]
    assert all(c.passed and c.mode == "value" for c in claim.checks)


def test_a_wrong_stated_number_fails_its_scenario(monkeypatch) -> None:
    from gradcheck.scenarios import chain

    wrong = ("99.04", "98.2528000000001", *chain.STATED_WEIGHTS[2:])
    monkeypatch.setattr(chain, "STATED_WEIGHTS", wrong)
    result = run_scenario(CATALOG["training/gradient_descent_loop"])
    assert result.status == "failed"
    failed = {c.statement.split(" (")[0] for c in result.failed_claims}
    assert "every printed weight reproduces digit for digit" in failed


class _ReluSlopeOffBy1e3(torch.autograd.Function):
    """relu whose backward multiplies by 1.001: a planted bug in the neuron's activation."""

    @staticmethod
    def forward(x: torch.Tensor) -> torch.Tensor:
        return x.clamp_min(0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x > 0).to(grad.dtype) * 1.001


def test_a_planted_relu_bug_fails_the_neuron_scenario(monkeypatch) -> None:
    from gradcheck.scenarios import neuron

    monkeypatch.setattr(neuron.F, "relu", _ReluSlopeOffBy1e3.apply)
    result = run_scenario(CATALOG["neuron/relu_backward"])
    assert result.status == "failed"
    claim = next(c for c in result.failed_claims if c.statement.startswith("a.backward() gives w"))
    failing = {c.oracle for c in claim.checks if not c.passed}
    assert failing == {"sympy", "finite_difference", "stated"}
    assert "measured 3.003" in claim.detail
