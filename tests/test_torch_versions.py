"""Facts of torch's surface that can change between releases (grad_fn names, error wording,
zero_grad's default) fail inside their known version range and are skipped, with the range,
outside it; the report and the matrix show them as skipped, never as passed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from html_parsing import Page
from report_documents import run_document

from gradcheck.report.document import summarise
from gradcheck.report.merge import merge_documents
from gradcheck.report.render import render_report
from gradcheck.scenarios import CATALOG, run_scenario
from gradcheck.semantics import raises
from gradcheck.torch_versions import (
    GRAD_FN_NAMES,
    OLDEST_SUPPORTED,
    VERIFIED,
    ZERO_GRAD_SETS_NONE,
    error_claim,
    minor_release,
    versioned_claim,
)

ROOT = Path(__file__).parents[1]

NEWER = "2.99.0+cu999"


def test_inside_the_range_a_fact_passes_or_fails_and_names_its_range() -> None:
    held = versioned_claim("a.grad_fn is ReluBackward0", True, "ReluBackward0", GRAD_FN_NAMES)
    assert held.status == "passed" and f"verified on {VERIFIED[0]} to {VERIFIED[1]}" in held.detail
    broken = versioned_claim("x", False, "ReluBackward1", GRAD_FN_NAMES, version="2.14.1+cpu")
    assert broken.status == "failed" and broken.failed and not broken.skipped


@pytest.mark.parametrize("version", [NEWER, "1.13.1"])
def test_outside_the_range_a_changed_fact_is_skipped_with_the_range(version: str) -> None:
    claim = versioned_claim(
        "zero_grad() leaves every .grad None",
        False,
        ".grad = zeros",
        ZERO_GRAD_SETS_NONE,
        version=version,
    )
    assert claim.status == "skipped" and not claim.passed and not claim.failed
    assert f"not judged on torch {version}" in claim.skipped
    assert "torch >= 2.0" in claim.skipped and ".grad = zeros" in claim.skipped
    assert versioned_claim("s", True, "d", ZERO_GRAD_SETS_NONE, version=version).passed


@pytest.mark.parametrize(
    ("version", "known"),
    [
        (VERIFIED[1], True),
        ("2.15.1+cu130", True),  # a patch release of the newest verified minor
        ("2.15.0rc1", True),
        ("2.16.0a0+git1234", False),
        ("2.1.2", False),  # older than the oldest supported
        (OLDEST_SUPPORTED, True),
    ],
)
def test_patch_releases_of_a_verified_minor_count_as_verified(version: str, known: bool) -> None:
    assert GRAD_FN_NAMES.known_on(version) is known


def test_an_unreadable_version_names_the_expected_form() -> None:
    with pytest.raises(ValueError, match=r"expected MAJOR\.MINOR"):
        minor_release("nightly")


def test_only_the_wording_of_an_error_is_version_dependent() -> None:
    def non_scalar() -> None:
        torch.ones(2, requires_grad=True).mul(2).backward()

    reworded = raises(non_scalar, RuntimeError, "a wording torch never used")
    assert reworded.expected_type and not reworded.matched
    assert error_claim("raises", reworded).status == "failed"  # this torch: a real failure
    assert error_claim("raises", reworded, version=NEWER).status == "skipped"
    silent = raises(lambda: None, RuntimeError, "anything")
    other = raises(lambda: [][1], RuntimeError, "anything")  # IndexError
    for outcome in (silent, other):  # not the change a release brings: fails on every torch
        assert not outcome.expected_type
        assert error_claim("raises", outcome).status == "failed"
        assert error_claim("raises", outcome, version=NEWER).status == "failed"
    assert error_claim("raises", raises(non_scalar, RuntimeError, "scalar")).passed


def test_only_the_changes_a_release_brings_are_skipped() -> None:
    claim = versioned_claim(
        "zero_grad() leaves every .grad None",
        False,
        ".grad = [3.0] (not cleared at all)",
        ZERO_GRAD_SETS_NONE,
        version=NEWER,
        release_change=False,
    )
    assert claim.status == "failed"


def test_the_verified_range_matches_the_tox_matrix_and_pyproject() -> None:
    tox = (ROOT / "tox.ini").read_text(encoding="utf-8")
    matrix = sorted(
        set(re.findall(r"^\s*torch\d+: torch==(\S+)", tox, re.MULTILINE)), key=minor_release
    )
    assert (matrix[0], matrix[-1]) == VERIFIED, "update VERIFIED with tox.ini's torch pins"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on 3.10
    assert f'"torch>={OLDEST_SUPPORTED}"' in pyproject, "OLDEST_SUPPORTED is pyproject's torch"


def test_a_newer_torch_with_another_zero_grad_default_skips_that_claim(monkeypatch) -> None:
    scenario = CATALOG["neuron/zero_grad"]
    clean = run_scenario(scenario)
    original = torch.optim.Optimizer.zero_grad

    def zeros_by_default(self, set_to_none: bool = False) -> None:  # torch < 2.0's default
        original(self, set_to_none=set_to_none)

    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", zeros_by_default)
    on_this_torch = run_scenario(scenario)
    assert on_this_torch.status == "failed"  # inside the verified range: a real failure
    assert [c.statement for c in on_this_torch.failed_claims] == [
        "zero_grad() (default set_to_none=True) leaves every .grad None"
    ]
    monkeypatch.setattr(torch, "__version__", NEWER)
    on_a_newer_torch = run_scenario(scenario)
    assert on_a_newer_torch.status == "passed" and not on_a_newer_torch.failed_claims
    skipped = [c for c in on_a_newer_torch.claims if c.status == "skipped"]
    assert len(skipped) == 1 and "set_to_none=True" in skipped[0].skipped

    newer, this = run_document(), run_document()
    newer["scenarios"].append({**on_a_newer_torch.to_dict(), "origin": "gradcheck run"})
    this["scenarios"].append({**clean.to_dict(), "origin": "gradcheck run"})
    page = Page(render_report(newer))
    assert f"not judged on torch {NEWER}" in page.text
    assert summarise(newer)["claims"]["skipped"] == 1
    matrix = merge_documents([newer, this], ["newer.json", "this.json"])
    differing = [row for row in matrix["rows"] if row["differs"]]
    assert len(differing) == 1 and "leaves every .grad None" in differing[0]["key"]
    assert [cell["verdict"] for cell in differing[0]["cells"]] == ["skipped", "passed"]


def test_a_zero_grad_that_clears_nothing_fails_on_every_torch(monkeypatch) -> None:
    monkeypatch.setattr(torch.optim.Optimizer, "zero_grad", lambda self, set_to_none=True: None)
    monkeypatch.setattr(torch, "__version__", NEWER)
    result = run_scenario(CATALOG["neuron/zero_grad"])
    assert result.status == "failed"
    statements = [c.statement for c in result.failed_claims]
    assert "zero_grad() (default set_to_none=True) leaves every .grad None" in statements
