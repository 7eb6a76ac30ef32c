"""The run document: verdict rules, failure ordering, per-test tallies, property counts."""

from __future__ import annotations

import torch
from report_documents import planted_model_result, run_document

from gradcheck.check import check_function
from gradcheck.report.document import (
    KEPT_FAILURES,
    RUN_ORIGIN,
    CheckTally,
    examples_summary,
    failures,
    finalize,
    new_document,
    property_examples,
    verdict,
)


def test_failures_of_a_run_name_every_failed_check_with_a_reproduce_line() -> None:
    document = run_document()
    found = failures(document)
    assert [f["section"] for f in found] == ["scenarios", "models", "properties"]
    assert all(f["reproduce"] for f in found)
    model = found[1]
    assert "out.weight" in model["detail"] and "reproduce:" not in model["detail"]
    assert "test_relu_subgradient(\n    x=0.0,\n)" in found[2]["detail"]
    assert document["verdict"] == "failed"


def test_a_failed_result_inside_a_passing_test_is_evidence_not_a_failure() -> None:
    document = new_document("pytest", title="t", command="pytest")
    model = planted_model_result()
    assert model.status == "failed"
    document["models"].append({**model.to_dict(), "origin": "tests/test_x.py::test_catches"})
    document["tests"].append({"nodeid": "tests/test_x.py::test_catches", "outcome": "passed"})
    assert failures(document) == [] and verdict(document) == "passed"
    document["models"][0]["origin"] = RUN_ORIGIN
    assert verdict(document) == "failed"


def test_verdicts_empty_incomplete_and_errors_first() -> None:
    document = new_document("run", title="t", command="c")
    assert verdict(document) == "empty"
    document["models"].append(
        {
            "status": "incomplete",
            "module": "M",
            "message": "kink",
            "reproduce": "r",
            "origin": RUN_ORIGIN,
        }
    )
    assert verdict(document) == "incomplete"
    document["tests"] += [
        {"nodeid": "a", "outcome": "failed", "suite": "tests"},
        {"nodeid": "b", "outcome": "error", "suite": "tests"},
    ]
    assert [f["status"] for f in failures(document)] == ["error", "failed", "incomplete"]
    assert finalize(document, 1.0)["verdict"] == "failed"
    assert document["summary"]["tests"] == {"failed": 1, "error": 1}


def test_tally_counts_everything_keeps_failures_and_the_closest_pass() -> None:
    tally = CheckTally()
    x = torch.linspace(0.1, 1.0, 4, dtype=torch.float64)
    tally.add(check_function(torch.sin, x, name="sin"))
    tally.add(check_function(torch.exp, x, name="exp"))
    for _ in range(KEPT_FAILURES + 2):
        tally.add(_wrong_check(x))
    data = tally.to_dict()
    assert data["recorded"] == KEPT_FAILURES + 4
    assert data["counts"] == {"passed": 2, "failed": KEPT_FAILURES + 2}
    assert len(data["failures"]) == KEPT_FAILURES
    assert data["closest"]["name"] in ("sin", "exp")
    assert 0 <= data["closest"]["tolerance_used"] <= 1


class _Wrong(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x)
        return x.sin()

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (x,) = ctx.saved_tensors
        return grad * x.cos() * 1.01


def _wrong_check(x: torch.Tensor):  # type: ignore[no-untyped-def]
    return check_function(_Wrong.apply, x, name="wrong")


def test_a_property_count_that_was_not_kept_is_unknown_never_zero() -> None:
    counted = {"outcome": "passed", "hypothesis": {"examples": 12, "passing": 12}}
    plain = {"outcome": "passed"}  # a plain test in properties/: no body was counted
    assert property_examples(counted) == 12
    assert property_examples(plain) is None
    assert property_examples({"hypothesis": {"examples": "12 passing examples"}}) is None
    assert examples_summary([counted]) == "12 Hypothesis examples"
    assert examples_summary([plain]) == "unknown Hypothesis examples"
    assert examples_summary([counted, plain]) == (
        "12 Hypothesis examples (count unknown for 1 of 2 tests)"
    )
    assert examples_summary([]) == "0 Hypothesis examples"
