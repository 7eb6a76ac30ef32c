"""The ``gradcheck`` command: ``run`` (table, JSON results, exit codes) and ``list``."""

from __future__ import annotations

import json
import subprocess
import sys

from gradcheck.cli import main
from gradcheck.results import Claim, ScenarioResult


def test_run_prints_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "results.json"
    assert main(["run", "-k", "calculus/sin", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calculus/sin " in printed and "calculus/sin_large_argument" in printed
    assert "2 passed, 0 failed, 0 skipped of 2 scenarios (6 claims)" in printed
    data = json.loads(out.read_text())
    results = [ScenarioResult.from_dict(s) for s in data["scenarios"]]
    oracles = {c.oracle for r in results for claim in r.claims for c in claim.checks}
    assert oracles == {"finite_difference", "sympy", "forward"}
    assert all(r.passed for r in results)


def test_planted_bugs_show_as_caught(tmp_path, capsys) -> None:
    assert main(["run", "-k", "planted/relu", "--json", str(tmp_path / "r.json")]) == 0
    assert "the planted bug is caught by sympy" in capsys.readouterr().out


def test_a_claim_that_does_not_hold_exits_non_zero(tmp_path, monkeypatch, capsys) -> None:
    import gradcheck.scenarios.base as base

    def broken(scenario, *, seed=0):
        claim = Claim("w.grad == 3", False, "measured 4")
        return ScenarioResult(scenario.id, scenario.topic, "failed", (claim,), seed, 0.0)

    monkeypatch.setattr(base, "run_scenario", broken)
    monkeypatch.setattr("gradcheck.scenarios.run_scenario", broken)
    assert main(["run", "-k", "calculus/sin", "--json", str(tmp_path / "r.json")]) == 1
    printed = capsys.readouterr().out
    assert "FAILED" in printed and "measured 4" in printed and "2 failed" in printed


def test_unknown_keyword_is_an_error(tmp_path, capsys) -> None:
    assert main(["run", "-k", "no-such-scenario", "--json", str(tmp_path / "r.json")]) == 2
    assert "no scenario id contains" in capsys.readouterr().err
    assert main(["list", "-k", "no-such-scenario"]) == 2


def test_list_shows_id_oracles_topic_and_tags(capsys) -> None:
    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    assert "planted/relu_backward_2_at_kink" in printed
    line = next(x for x in printed.splitlines() if x.startswith("planted/relu_backward_2"))
    assert "finite_difference, sympy" in line and "planted-bug" in line
    assert "(gradcheck's own tables)" in line
    neuron = next(x for x in printed.splitlines() if x.startswith("neuron/relu_backward"))
    assert "sympy" in neuron and "seeds/000" in neuron and "notebook" in neuron


def test_module_entry_point_runs(tmp_path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcheck",
            "run",
            "-k",
            "calculus/exp",
            "--json",
            str(tmp_path / "r.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert "1 passed, 0 failed, 0 skipped of 1 scenarios (3 claims)" in completed.stdout
