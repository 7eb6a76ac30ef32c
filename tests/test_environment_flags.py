"""The one ``CI=true`` rule that ``gradcheck run``'s profile and the Hypothesis profile share."""

from __future__ import annotations

import pytest

from gradcheck.environment_flags import running_in_ci


@pytest.mark.parametrize(
    ("environ", "expected"),
    [({"CI": "true"}, True), ({"CI": "TRUE"}, True), ({"CI": "1"}, False), ({}, False)],
)
def test_ci_is_ci_equals_true_in_any_case(environ: dict[str, str], expected: bool) -> None:
    assert running_in_ci(environ) is expected


def test_both_defaults_follow_the_one_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck.runner import default_profile

    monkeypatch.setenv("CI", "true")
    assert running_in_ci() and default_profile() == "ci"
    monkeypatch.setenv("CI", "false")
    assert not running_in_ci() and default_profile() == "dev"
