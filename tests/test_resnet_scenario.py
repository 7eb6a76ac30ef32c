"""The ResNet18 scenarios (seeds/003, seeds/004): they pass, they catch planted optimizer bugs,
they load local weights when asked and say which, and they never skip silently on CI.

Everything here needs torchvision. Where it is missing the tests skip with the reason, except
on CI (``CI=true``), where a missing torchvision fails the run instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gradcheck.results import ScenarioResult
from gradcheck.scenarios.base import SOURCES, run_scenario
from gradcheck.scenarios.resnet import (
    LR,
    SCENARIOS,
    WEIGHTS_ENV,
    notebook_run,
)

BY_ID = {scenario.id: scenario for scenario in SCENARIOS}
SGD_ID = "resnet18/sgd_momentum_steps"
CI_VALUES = {"true", "1", "yes"}


def torchvision_missing_reason(environ: dict[str, str] | os._Environ[str]) -> str | None:
    """None when torchvision is importable; else why the tests skip. On CI a missing
    torchvision fails instead, so the ResNet scenarios can never be skipped there silently."""
    if importlib.util.find_spec("torchvision") is not None:
        return None
    if environ.get("CI", "").strip().lower() in CI_VALUES:
        pytest.fail(
            "CI is set but torchvision is not installed, so the ResNet18 scenarios cannot run; "
            "install it (pip install -e '.[models]') instead of skipping them.",
            pytrace=False,
        )
    return "torchvision is not installed (pip install -e '.[models]')"


@pytest.fixture
def torchvision() -> None:
    """Skip (fail on CI) unless torchvision is importable."""
    reason = torchvision_missing_reason(os.environ)
    if reason is not None:
        pytest.skip(reason)


needs_torchvision = pytest.mark.usefixtures("torchvision")


@pytest.fixture(autouse=True)
def _no_weights_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)


def explain(result: ScenarioResult) -> str:
    return result.reason or "\n".join(f"{c.statement}: {c.detail}" for c in result.failed_claims)


# -- CI never skips ------------------------------------------------------------------------------


def test_on_ci_torchvision_is_installed() -> None:
    """The real guard: CI (CI=true) must have torchvision, or this fails."""
    if os.environ.get("CI", "").strip().lower() in CI_VALUES:
        assert importlib.util.find_spec("torchvision") is not None, (
            "CI=true but torchvision is missing: the ResNet18 scenarios would be skipped"
        )


@pytest.mark.parametrize(
    ("ci", "installed", "expect"),
    [("true", False, "fail"), ("", False, "skip"), ("true", True, "run"), ("", True, "run")],
)
def test_missing_torchvision_skips_locally_and_fails_on_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str, installed: bool, expect: str
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        if name == "torchvision":
            return object() if installed else None
        return real(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    environ = {"CI": ci}
    if expect == "fail":
        with pytest.raises(pytest.fail.Exception, match="CI is set but torchvision"):
            torchvision_missing_reason(environ)
    elif expect == "skip":
        assert "not installed" in str(torchvision_missing_reason(environ))
    else:
        assert torchvision_missing_reason(environ) is None


# -- the scenarios pass -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results() -> dict[str, ScenarioResult]:
    """Every scenario run once at seed 0, with random weights (shared by the tests below)."""
    reason = torchvision_missing_reason(os.environ)
    if reason is not None:
        pytest.skip(reason)
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(WEIGHTS_ENV, raising=False)
        return {scenario.id: run_scenario(scenario, seed=0) for scenario in SCENARIOS}


@pytest.mark.parametrize("scenario_id", list(BY_ID))
def test_resnet_scenario_passes(results: dict[str, ScenarioResult], scenario_id: str) -> None:
    result = results[scenario_id]
    assert result.status == "passed", explain(result)
    model = result.claims[0]
    assert model.statement == "the model is torchvision resnet18 with 62 parameter tensors"
    assert "62 parameter tensors, 11,689,512 values" in model.detail
    assert "random initialisation" in model.detail


def test_forward_backward_claims_count_every_parameter(
    results: dict[str, ScenarioResult],
) -> None:
    for scenario_id, loss in (
        ("resnet18/forward_backward_mse", "mse(yhat, labels).backward()"),
        ("resnet18/forward_backward_sum", "(prediction - labels).sum().backward()"),
    ):
        result = results[scenario_id]
        statements = {c.statement: c for c in result.claims}
        assert "model(data) has shape (1, 1000): one score per class" in statements
        grads = statements[f"{loss} gives every one of the 62 parameters a finite .grad"]
        assert grads.passed
        assert grads.detail.startswith("62 of 62 parameter tensors have a finite .grad")


def test_sgd_claims_report_float32_rounding_only(results: dict[str, ScenarioResult]) -> None:
    result = results[SGD_ID]
    first, second = result.claims[1:]
    assert first.statement.startswith(f"one SGD(lr={LR}, momentum=0.9) step moves every")
    assert "buf = 0.9*buf + grad; p -= lr*buf" in second.statement
    for claim in (first, second):
        assert "62 parameter tensor(s), 11,689,512 value(s) match" in claim.detail
        assert "ulp of float32" in claim.detail
        assert len(claim.checks) == 62
        assert all(c.tolerance.atol == 0 and c.tolerance.rtol == 0 for c in claim.checks)
        assert claim.measured is None  # 11.7 million values are not copied into the claim


@needs_torchvision
def test_scenarios_leave_the_global_rng_alone_and_are_seeded() -> None:
    state = torch.random.get_rng_state()
    first, again, other = notebook_run(0), notebook_run(0), notebook_run(1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert torch.equal(first.data, again.data) and torch.equal(first.labels, again.labels)
    weight = dict(first.model.named_parameters())["conv1.weight"]
    assert torch.equal(weight, dict(again.model.named_parameters())["conv1.weight"])
    assert not torch.equal(weight, dict(other.model.named_parameters())["conv1.weight"])
    assert first.data.shape == (1, 3, 64, 64) and first.data.dtype == torch.float32
    assert first.labels.shape == (1, 1000) and first.model.training


# -- planted bugs in the optimizer step are caught ----------------------------------------------


def patch_sgd_step(
    monkeypatch: pytest.MonkeyPatch, before: Callable[[torch.optim.SGD], Callable[[], None]]
) -> None:
    """Replace SGD.step by one that calls ``before(optimizer)`` (which returns an undo) first."""
    real = torch.optim.SGD.step

    def step(self, closure=None):  # type: ignore[no-untyped-def]
        undo = before(self)
        try:
            return real(self, closure)
        finally:
            undo()

    monkeypatch.setattr(torch.optim.SGD, "step", step)


@needs_torchvision
def test_learning_rate_off_by_a_tenth_of_a_percent_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def scale_lr(optimizer: torch.optim.SGD) -> Callable[[], None]:
        for group in optimizer.param_groups:
            group["lr"] *= 1.001
        return lambda: [g.__setitem__("lr", g["lr"] / 1.001) for g in optimizer.param_groups]

    patch_sgd_step(monkeypatch, scale_lr)
    result = run_scenario(BY_ID[SGD_ID])
    assert result.status == "failed"
    first, second = result.claims[1:]
    assert not first.passed and not second.passed
    assert first.detail.startswith("Value mismatch: ")
    assert "(float32) against formula" in first.detail
    assert "of 62 parameter tensor(s) fail" in first.detail


@needs_torchvision
def test_one_corrupted_gradient_is_caught_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    target = "layer3.0.conv1.weight"

    def corrupt(optimizer: torch.optim.SGD) -> Callable[[], None]:
        shapes = [p.shape for p in optimizer.param_groups[0]["params"]]
        param = optimizer.param_groups[0]["params"][shapes.index(torch.Size((256, 128, 3, 3)))]
        assert param.grad is not None
        param.grad.mul_(1.001)  # after the scenario recorded the gradient it saw
        return lambda: None

    patch_sgd_step(monkeypatch, corrupt)
    result = run_scenario(BY_ID[SGD_ID])
    assert result.status == "failed"
    first = result.claims[1]
    assert not first.passed
    assert first.detail.startswith(f"Value mismatch: {target}[")
    assert "in 1 of 62 parameter tensor(s) fail" in first.detail
    failed = [c.name for c in first.checks if not c.passed]
    assert len(failed) == 1 and failed[0].startswith(target)


# -- weights from a local file ------------------------------------------------------------------


@needs_torchvision
def test_weights_file_is_loaded_and_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    donor = notebook_run(123).model
    path = tmp_path / "resnet18-random.pth"
    torch.save(donor.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setenv(WEIGHTS_ENV, str(path))
    run = notebook_run(0)
    loaded = dict(run.model.named_parameters())["conv1.weight"]
    assert torch.equal(loaded, dict(donor.named_parameters())["conv1.weight"])
    assert run.weights == f"loaded from {path} (sha256 {digest})"
    result = run_scenario(BY_ID["resnet18/forward_backward_mse"])
    assert result.status == "passed", explain(result)
    assert f"weights: loaded from {path} (sha256 {digest})" in result.claims[0].detail


@needs_torchvision
def test_missing_weights_file_fails_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere" / "resnet18.pth"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    result = run_scenario(BY_ID["resnet18/forward_backward_mse"])
    assert result.status == "failed" and not result.claims
    assert result.reason.startswith("verify raised gradcheck.errors.InvalidArgument: ")
    assert f"Got {WEIGHTS_ENV}='{missing}', but no such file exists." in result.reason
    assert f"unset {WEIGHTS_ENV}" in result.reason


@needs_torchvision
def test_file_that_is_not_a_resnet18_state_dict_fails_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(3, 3)}, wrong)
    monkeypatch.setenv(WEIGHTS_ENV, str(wrong))
    result = run_scenario(BY_ID[SGD_ID])
    assert result.status == "failed"
    assert "but it is not a resnet18 state_dict" in result.reason
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    monkeypatch.setenv(WEIGHTS_ENV, str(garbage))
    result = run_scenario(BY_ID[SGD_ID])
    assert "but it could not be read as a state_dict" in result.reason


@needs_torchvision
def test_empty_weights_variable_means_random_initialisation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(WEIGHTS_ENV, "  ")
    assert notebook_run(0).weights.startswith("random initialisation")


# -- the records --------------------------------------------------------------------------------


def test_resnet_records_need_torchvision_and_name_their_notebook() -> None:
    assert set(BY_ID) == {
        "resnet18/forward_backward_mse",
        "resnet18/forward_backward_sum",
        SGD_ID,
    }
    for scenario in SCENARIOS:
        assert scenario.requires == ("torchvision",)
        assert scenario.source in (SOURCES["linear"], SOURCES["torch_autograd"])
    assert BY_ID[SGD_ID].oracles == ("formula", "observed")
