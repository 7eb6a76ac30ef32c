"""Every catalog scenario proves all of its claims; the catalog's records are well formed."""

from __future__ import annotations

import pytest

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
