"""The cost of verification itself, against ``torch.autograd.gradcheck`` on the same work.

- Each notebook workload (``workloads.WORKLOADS``) at the notebook's values in float64, judged by
  ``check_function`` (Richardson-extrapolated finite differences, the default oracle) and by
  ``torch.autograd.gradcheck`` in slow mode (the full Jacobian) and fast mode (one random
  projection). The three share a benchmark group, and the report divides each peer's mean time by
  check_function's (``gradcheck.report.benchmarks.time_vs_reference``), whatever order they ran in.
- The same judges on 30 derandomized Hypothesis-drawn expressions (seed 0), the property suite's
  main kind of work.
- The property suite as a whole (``pytest properties``, profile ``ci``): examples per second.

``check_module`` on ResNet18 against the peer is in ``test_bench_model.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workloads import BY_ID

from gradcheck import check_function
from gradcheck.runner import plugin_arguments
from gradcheck.strategies import expressions, tensors

JUDGES = ("check_function", "gradcheck_slow", "gradcheck_fast")
HYPOTHESIS_EXAMPLES = 30


def judge_once(judge: str, function: Callable[..., torch.Tensor], inputs, cotangent) -> bool:  # type: ignore[no-untyped-def]
    """One verdict on ``function`` at ``inputs`` (float64) by ``judge``: True when it passes."""
    if judge == "check_function":
        return check_function(function, inputs, cotangents=cotangent).passed
    leaves = tuple(x.detach().clone().requires_grad_(True) for x in inputs)
    return torch.autograd.gradcheck(
        function, leaves, fast_mode=judge == "gradcheck_fast", raise_exception=False
    )


@pytest.mark.parametrize("scenario_id", BY_ID)
@pytest.mark.parametrize("judge", JUDGES)
def test_verify_notebook_workload(benchmark, judge: str, scenario_id: str) -> None:  # type: ignore[no-untyped-def]
    workload = BY_ID[scenario_id]
    benchmark.group = f"verify {scenario_id}"
    inputs = workload.inputs()
    output = workload.function(*inputs)
    cotangent = workload.cotangent_for(output)
    passed = benchmark.pedantic(
        judge_once,
        args=(judge, workload.function, inputs, cotangent),
        rounds=10,
        iterations=1,
        warmup_rounds=1,
    )
    benchmark.extra_info.update(judge=judge, elements=sum(x.numel() for x in inputs))
    assert passed, f"{judge} rejected the correct gradient of {workload.scenario_id}"


def _drawn_examples() -> list[tuple[Any, list[torch.Tensor]]]:
    """The first HYPOTHESIS_EXAMPLES examples of the expression property, derandomized."""
    examples: list[tuple[Any, list[torch.Tensor]]] = []

    @settings(
        max_examples=HYPOTHESIS_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(expression=expressions(), shape=st.sampled_from([(3,), (2, 2)]), data=st.data())
    def collect(expression, shape, data) -> None:  # type: ignore[no-untyped-def]
        inputs = [data.draw(tensors(shape=shape)) for _ in expression.symbols]
        examples.append((expression, inputs))

    collect()
    return examples


@pytest.mark.parametrize("judge", JUDGES)
def test_verify_hypothesis_expressions(benchmark, judge: str) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = f"verify {HYPOTHESIS_EXAMPLES} Hypothesis expressions"
    examples = _drawn_examples()

    def judge_all() -> int:
        return sum(judge_once(judge, expression, inputs, None) for expression, inputs in examples)

    passed = benchmark.pedantic(judge_all, rounds=3, iterations=1, warmup_rounds=1)
    benchmark.extra_info.update(
        judge=judge,
        examples=len(examples),
        examples_per_s=len(examples) / benchmark.stats.stats.mean,
        passed=passed,
    )
    assert len(examples) == HYPOTHESIS_EXAMPLES
    if judge != "gradcheck_fast":  # fast mode's random projection may be unlucky; it's the peer
        assert passed >= len(examples) - 2, f"{judge} passed {passed} of {len(examples)}"


def test_property_suite_examples_per_second(benchmark) -> None:  # type: ignore[no-untyped-def]
    """``pytest properties`` (profile ci, seed 0) in a child process: the Hypothesis examples it
    ran (from the gradcheck plugin's JSON) over the time its tests took."""
    benchmark.group = "property suite (pytest properties, profile ci, seed 0)"
    root = Path(__file__).resolve().parents[1]

    def run_properties() -> dict[str, Any]:
        with tempfile.TemporaryDirectory() as scratch:
            data = Path(scratch) / "properties.json"
            command = [
                sys.executable,
                "-m",
                "pytest",
                *plugin_arguments(),
                "properties",
                "-q",
                "-p",
                "no:cacheprovider",
                "--hypothesis-profile=ci",
                "--hypothesis-seed=0",
                f"--gradcheck-report={data}",
            ]
            started = time.perf_counter()
            completed = subprocess.run(command, cwd=root, capture_output=True, text=True)
            wall = time.perf_counter() - started
            assert completed.returncode == 0, completed.stdout[-3000:]
            document = json.loads(data.read_text(encoding="utf-8"))
        document["wall_s"] = wall
        return document

    document = benchmark.pedantic(run_properties, rounds=1, iterations=1)
    examples = 0
    test_seconds = 0.0
    for test in document["tests"]:
        statistics = test.get("hypothesis") or {}
        examples += statistics.get("examples", 0)
        test_seconds += test.get("duration_s", 0.0)
    assert examples > 0, "the plugin's JSON held no Hypothesis statistics"
    benchmark.extra_info.update(
        tests=len(document["tests"]),
        examples=examples,
        examples_per_s=examples / test_seconds,
        test_seconds=test_seconds,
        wall_s=document["wall_s"],
        profile="ci",
        seed=0,
    )
