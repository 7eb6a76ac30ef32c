"""``gradcheck ops`` and ``check_ops``: real OpInfo samples against torch.autograd.gradcheck,
planted records with known answers (a 1e-6 backward bug, torch's own skip, a soft timeout, a
C-level hang and a crash in worker processes), the classes, and the command's exit status."""

from __future__ import annotations

import json
import sys
import time

import pytest
import torch

pytest.importorskip(
    "expecttest", reason="gradcheck ops needs expecttest: pip install 'gradcheck[ops]'"
)

from gradcheck.cli import main
from gradcheck.errors import InvalidArgument
from gradcheck.ops import OpsResult, check_ops
from gradcheck.ops import classify as c

PLANTED = "ops_planted:RIGHT_AND_WRONG"


@pytest.fixture(scope="module")
def planted() -> OpsResult:
    return check_ops(database=PLANTED, samples=2)


def test_real_ops_agree_with_torch_and_round_trip_through_json() -> None:
    result = check_ops(["sin", "mul", "round"], samples=1)
    rows = {row.key: row for row in result.rows}
    assert {"sin", "mul", "round", "round.decimals_3"} <= set(rows)
    for key in ("sin", "mul", "round"):
        row = rows[key]
        assert row.category == c.AGREE_PASS and not row.unexplained, row
        assert row.ours.status == "passed" and row.ours.checked and row.ours.checked > 0
        assert row.torch_slow.status == row.torch_fast.status == "passed"
        assert row.ours.time_s > 0 and row.torch_slow.time_s > 0
    assert rows["sin"].ours.max_rel_error < 1e-8 and rows["sin"].shapes == ((20, 20),)
    assert result.isolated and result.settings.samples == 1 and result.summary["ops"] == len(rows)
    assert result.summary["median_time_ratio"] > 0
    again = OpsResult.from_dict(json.loads(result.to_json()))
    assert again.to_dict() == result.to_dict()


def test_a_planted_backward_bug_is_ours_fail_torch_pass_and_listed_first(planted) -> None:
    by_key = {(row.key, row.sample): row for row in planted.rows}
    bug = by_key[("planted.sin_bug", 0)]
    assert bug.category == c.OURS_FAIL and bug.unexplained and not bug.reason
    assert bug.ours.status == "failed" and 5e-7 < bug.ours.max_rel_error < 2e-6
    assert "Gradient mismatch" in bug.ours.message
    assert bug.torch_slow.status == bug.torch_fast.status == "passed"
    assert by_key[("planted.sin", 1)].category == c.AGREE_PASS
    summary = planted.summary
    assert summary["counts"] == {c.OURS_FAIL: 2, c.AGREE_PASS: 2}
    assert [d["key"] for d in summary["disagreements"]] == ["planted.sin_bug"] * 2
    assert summary["unexplained"] == 2 and not planted.passed
    assert [(s.key, s.reason) for s in planted.skipped] == [
        ("planted.skipped", "torch's OpInfo skips test_fn_grad here (planted skip)")
    ]


def test_the_hard_limit_kills_a_hung_worker_and_a_crash_is_recorded() -> None:
    result = check_ops(database="ops_planted:STUCK", samples=2, timeout_s=1)
    rows = {(row.key, row.sample): row for row in result.rows}
    assert len(rows) == 4  # both samples of each op: the run went on after each kill
    for sample in (0, 1):
        hang, crash = rows[("planted.hang", sample)], rows[("planted.crash", sample)]
        assert hang.category == c.TIMEOUT and not hang.unexplained
        assert hang.ours.status == "timeout" and "hard limit of 4 s" in hang.ours.message
        assert 3.5 < hang.ours.time_s < 10 and hang.torch_slow.status == "not run"
        assert crash.category == c.OURS_ERROR and crash.unexplained
        assert "worker process died (exit code -9)" in crash.ours.message


def test_a_check_over_its_budget_is_a_timeout_in_process() -> None:
    result = check_ops(database="ops_planted:SLOW", samples=1, timeout_s=0.5, isolate=False)
    (row,) = result.rows
    assert row.category == c.TIMEOUT and not result.isolated
    for outcome in (row.ours, row.torch_slow, row.torch_fast):
        assert outcome.status == "timeout" and 0.5 <= outcome.time_s < 1.5


def test_the_command_exits_1_on_an_unexplained_disagreement(tmp_path, capsys) -> None:
    report, data = tmp_path / "ops.html", tmp_path / "ops.json"
    argv = ["ops", "--database", PLANTED, "--samples", "1", "--report", str(report)]
    assert main([*argv, "--json", str(data)]) == 1
    printed = capsys.readouterr().out
    assert "UNEXPLAINED ours-fail-torch-pass: planted.sin_bug sample 0" in printed
    assert "verdict: FAILED (1 unexplained)" in printed
    saved = json.loads(data.read_text())
    assert saved["summary"]["counts"] == {c.OURS_FAIL: 1, c.AGREE_PASS: 1}
    document = json.loads(report.with_suffix(".json").read_text())
    assert document["kind"] == "ops" and document["verdict"] == "failed"
    assert "planted.sin_bug" in report.read_text()


def test_the_command_exits_0_when_everything_agrees(capsys) -> None:
    assert main(["ops", "--database", PLANTED, "--op", "planted.sin", "--samples", "1"]) == 0
    assert "agree-pass                              1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"samples": 0}, "samples must be an integer >= 1"),
        ({"timeout_s": -1}, "timeout_s must be a number of seconds > 0"),
        ({"op": ["no-such-op*"]}, "matches no differentiable OpInfo entry"),
        ({"seed": -1}, "seed must be an integer"),
        ({"database": "no_such_module:X"}, "cannot be loaded"),
    ],
)
def test_bad_arguments_name_the_problem_and_the_fix(arguments, expected) -> None:
    settings = {"database": PLANTED, "isolate": False, **arguments}
    with pytest.raises(InvalidArgument, match=expected):
        check_ops(**settings)


def test_the_command_refuses_a_glob_that_selects_nothing(capsys) -> None:
    argv = ["ops", "--database", PLANTED, "--op", "nothing*", "--in-process"]
    assert main(argv) == 2
    assert "matches no differentiable OpInfo entry" in capsys.readouterr().err


def test_without_expecttest_the_error_says_what_to_install(monkeypatch) -> None:
    from gradcheck.ops.database import op_database

    monkeypatch.setitem(sys.modules, "expecttest", None)
    with pytest.raises(InvalidArgument, match=r"pip install 'gradcheck\[ops\]'"):
        op_database()


def test_tensor_lists_and_keyword_tensors_are_flattened_as_torch_does() -> None:
    import torch

    from gradcheck.ops.database import torch_test_imports
    from gradcheck.ops.samples import case_of

    with torch_test_imports():
        from torch.testing._internal.opinfo.core import SampleInput

    a, b = (torch.randn(2, dtype=torch.float64, requires_grad=True) for _ in range(2))
    fixed = torch.randn(2, dtype=torch.float64)
    w = torch.randn(2, dtype=torch.float64, requires_grad=True)
    sample = SampleInput([a, fixed, b], args=(0,), kwargs={"weight": w})

    class Op:
        name = "weighted_stack"

        @staticmethod
        def get_op():
            return lambda tensors, dim, weight: torch.stack(tensors, dim) * weight

        @staticmethod
        def gradcheck_wrapper(op, *args, **kwargs):
            return op(*args, **kwargs)

    case = case_of(Op, sample)
    assert case.inputs == (a, b, w) and case.shapes == ((2,), (2,), (2,))
    x, y, z = (torch.full((2,), v, dtype=torch.float64) for v in (1.0, 2.0, 3.0))
    assert torch.equal(case.fn(x, y, z), torch.stack([x, fixed, y]) * z)
    assert "weight=Tensor[2]" in case.description and "Tensor[2] (no grad)" in case.description


def _row(op: str, ours: str, slow: str, fast: str | None = None) -> dict:
    return {
        "op": op,
        "ours": {"status": ours},
        "torch_slow": {"status": slow},
        "torch_fast": {"status": fast or slow},
    }


@pytest.mark.parametrize(
    ("ours", "slow", "fast", "expected"),
    [
        ("passed", "passed", None, c.AGREE_PASS),
        ("failed", "failed", None, c.AGREE_FAIL),
        ("failed", "passed", None, c.OURS_FAIL),
        ("passed", "failed", None, c.TORCH_FAIL),
        ("inconclusive", "passed", None, c.OURS_INCONCLUSIVE),
        ("inconclusive", "failed", None, c.INCONCLUSIVE_TORCH_FAIL),
        ("error", "passed", None, c.OURS_ERROR),
        ("error", "error", None, c.BOTH_ERROR),
        ("passed", "error", "error", c.TORCH_ERROR),
        ("timeout", "passed", None, c.TIMEOUT),
        ("passed", "timeout", "timeout", c.TIMEOUT),
        ("failed", "timeout", "passed", c.OURS_FAIL),  # fast mode stands in for slow
        ("skipped", "passed", None, c.NOTHING),
    ],
)
def test_classes(ours, slow, fast, expected) -> None:
    assert c.classify(_row("sin", ours, slow, fast)) == expected


def test_known_disagreements_are_explained_but_our_exceptions_never_are() -> None:
    unpool = _row("nn.functional.max_unpool2d", "failed", "passed")
    category, reason, unexplained = c.explain(unpool)
    assert category == c.OURS_FAIL and reason.startswith("documented: duplicate indices")
    assert not unexplained
    category, reason, unexplained = c.explain(_row("as_strided_scatter", "failed", "passed"))
    assert reason.startswith("torch-bug:") and not unexplained
    assert c.explain(_row("as_strided_scatter", "error", "passed"))[2]
    assert c.explain(_row("sin", "passed", "failed")) == (c.TORCH_FAIL, "", True)
    assert c.explain(_row("normal", "passed", "passed")) == (c.AGREE_PASS, "", False)


def test_a_torch_false_alarm_never_explains_a_failure_of_ours() -> None:
    # cov's known cause is torch's float32 aweights rounding: it explains torch failing where
    # we pass, never a future failure of ours on cov (that would be a bug to look at).
    category, reason, unexplained = c.explain(_row("cov", "passed", "failed"))
    assert category == c.TORCH_FAIL and reason.startswith("torch-false-alarm:")
    assert not unexplained
    for ours, theirs in (("failed", "passed"), ("failed", "failed")):
        category, reason, unexplained = c.explain(_row("cov", ours, theirs))
        assert reason == "", (category, reason)
    assert c.explain(_row("sparse.mm", "failed", "passed"))[2]  # unexplained


def test_the_budget_counts_cpu_time_not_a_busy_machines_wall_time() -> None:
    # A wall-clock budget turned fractional_max_pool2d (3.5 CPU-s) into timeouts while other
    # processes shared the two cores.
    from gradcheck.ops.sides import BudgetExceeded, budget

    with budget(0.2) as state:
        time.sleep(0.4)  # waiting, as a check does while other processes run
    assert not state["fired"]
    with pytest.raises(BudgetExceeded), budget(0.2):
        started = time.process_time()
        while time.process_time() - started < 2.0:
            pass


def test_second_order_against_gradgradcheck_catches_what_it_misses() -> None:
    result = check_ops(database="ops_planted:SECOND_ORDER", samples=1, order=2)
    rows = {row.key: row for row in result.rows}
    assert result.settings.order == 2
    assert rows["planted.cube"].category == c.AGREE_PASS, rows["planted.cube"]
    subtle = rows["planted.cube_subtle"]
    assert subtle.category == c.OURS_FAIL and subtle.unexplained
    assert "VJP of VJP" in subtle.ours.message and 5e-7 < subtle.ours.max_rel_error < 2e-6
    assert subtle.torch_slow.status == "passed"  # gradgradcheck's rtol is 1e-3
    detached = rows["planted.cube_detached"]
    assert detached.category == c.AGREE_FAIL
    assert detached.torch_slow.status == "failed"
    # At first order all three are right.
    first = check_ops(database="ops_planted:SECOND_ORDER", samples=1)
    assert {row.category for row in first.rows} == {c.AGREE_PASS}


def test_real_ops_agree_with_gradgradcheck() -> None:
    result = check_ops(["sin", "mul", "tanh"], samples=1, order=2)
    for row in result.rows:
        assert row.category == c.AGREE_PASS, row


def test_complex_samples_agree_with_torch_and_a_missing_conj_fails_on_both_sides() -> None:
    planted = check_ops(database="ops_planted:COMPLEX", samples=1, dtype=torch.complex128)
    rows = {row.key: row for row in planted.rows}
    assert rows["planted.complex_mul"].category == c.AGREE_PASS, rows["planted.complex_mul"]
    assert rows["planted.no_conj"].category == c.AGREE_FAIL, rows["planted.no_conj"]
    assert (
        "z.imag" in rows["planted.no_conj"].ours.message
        or "imag" in rows["planted.no_conj"].ours.message
    )
    real_ops = check_ops(["sin", "mul", "fft.fft"], samples=1, dtype=torch.complex128)
    for row in real_ops.rows:
        assert row.category == c.AGREE_PASS, row
    assert real_ops.settings.dtype == "complex128"


def test_order_3_is_refused_for_ops() -> None:
    with pytest.raises(InvalidArgument, match=r"order=3.*order=1 or order=2"):
        check_ops(["sin"], order=3)


def test_the_warm_up_calls_the_op_once_and_leaves_inputs_and_errors_alone() -> None:
    from gradcheck.ops.samples import Case
    from gradcheck.ops.sides import warm_up

    calls = []
    x = torch.tensor([0.5, -1.0], dtype=torch.float64, requires_grad=True)

    def op(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.detach().clone())
        return t.sin()

    warm_up(Case(op, (x,), ((2,),), "Tensor[2]"), 5.0)
    assert len(calls) == 1 and x.grad is None and x.tolist() == [0.5, -1.0]

    def broken(t: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("the sides report this, not the warm-up")

    warm_up(Case(broken, (x,), ((2,),), "Tensor[2]"), 5.0)  # no exception escapes

    def spins(t: torch.Tensor) -> torch.Tensor:
        while True:
            t = t + 0.0

    started = time.process_time()
    warm_up(Case(spins, (x,), ((2,),), "Tensor[2]"), 0.2)  # stopped at its budget
    assert time.process_time() - started < 5.0 and torch.is_grad_enabled()
