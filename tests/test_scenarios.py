"""Every catalog scenario comes out as it expects with each of its oracles."""

from __future__ import annotations

import pytest

from gradcheck.scenarios import CATALOG, outcome_matches, run_scenario


@pytest.mark.parametrize("scenario", CATALOG.values(), ids=lambda s: s.id)
def test_scenario_outcome(scenario) -> None:
    for result in run_scenario(scenario):
        assert outcome_matches(scenario, result), result.message
        assert result.name == scenario.id


def test_every_planted_bug_is_caught_by_every_oracle_that_runs_it() -> None:
    planted = [s for s in CATALOG.values() if "planted-bug" in s.tags]
    assert len(planted) >= 5
    for scenario in planted:
        assert all(r.status == "failed" for r in run_scenario(scenario)), scenario.id
