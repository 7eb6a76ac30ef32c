"""Run documents built from real recorded results, for the report, merge and browser tests.

Nothing here is hand-written HTML: the scenarios really ran, the model check really caught a
planted wrong backward, and the failing scenario and hostile names go through the same path a
real run takes.
"""

from __future__ import annotations

import copy

import torch

from gradcheck.model import check_module
from gradcheck.report.document import RUN_ORIGIN, finalize, new_document
from gradcheck.results import Claim, ScenarioResult
from gradcheck.scenarios import CATALOG, run_scenario
from gradcheck.scenarios.base import reproduce_line

HOSTILE = "<script>alert(1)</script>"
"""A name that must show as text wherever it lands."""

REAL_SCENARIOS = ("neuron/relu_backward", "polynomial/cubic_minus_square", "calculus/sin")


class _WrongLinearGrad(torch.autograd.Function):
    """``x @ w.T + b`` whose weight gradient is 1.001 times too large."""

    @staticmethod
    def forward(ctx, x, weight, bias):  # type: ignore[no-untyped-def]
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        x, weight = ctx.saved_tensors
        return grad @ weight, 1.001 * grad.T @ x, grad.sum(0)


class PlantedMLP(torch.nn.Module):
    """A two-layer MLP whose second layer has the planted wrong backward."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(4, 6)
        self.out = torch.nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.hidden(x))
        return _WrongLinearGrad.apply(h, self.out.weight, self.out.bias)


def planted_model_result():  # type: ignore[no-untyped-def]
    """check_module on :class:`PlantedMLP`: ``out.weight`` fails, the rest pass."""
    inputs = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    return check_module(PlantedMLP(), inputs, seed=0)


def failing_scenario() -> ScenarioResult:
    """A scenario whose claim does not hold, with a hostile statement."""
    claim = Claim(f"w.grad == 3 {HOSTILE}", False, f"measured 4 {HOSTILE}")
    return ScenarioResult(
        "planted/broken_" + HOSTILE, "a broken scenario", "failed", (claim,), 0, 0.1
    )


def property_counts(passing: int, failing: int) -> dict:
    """A property test's ``hypothesis`` entry as the plugin keeps it (one invalid call)."""
    return {
        "examples": passing + failing + 1,
        "passing": passing,
        "failing": failing,
        "invalid": 1,
        "counted": "calls of the test body, every phase",
    }


def run_document(*, torch_version: str = "2.14.1", flip: bool = False) -> dict:
    """A ``gradcheck run`` document: three real scenarios, one failing scenario, a planted model
    bug, a parity result, tests (one property test failed with a shrunk example, one test with
    a hostile name) and two benchmarks. ``flip`` makes ``calculus/sin`` fail (for the matrix)."""
    document = new_document("run", title="recorded run", command="gradcheck run")
    document["environment"] = {
        "python": "CPython 3.11.7",
        "torch": torch_version,
        "devices": ["cpu"],
        "hypothesis_profile": "dev",
    }
    document["profile"], document["seed"] = "dev", 0
    for scenario_id in REAL_SCENARIOS:
        result = run_scenario(CATALOG[scenario_id], seed=0)
        entry = {**result.to_dict(), "origin": RUN_ORIGIN}
        entry["reproduce"] = reproduce_line(scenario_id, 0)
        if flip and scenario_id == "calculus/sin":
            entry["status"] = "failed"
            entry["claims"][0]["passed"] = False
        document["scenarios"].append(entry)
    document["scenarios"].append(
        {**failing_scenario().to_dict(), "origin": RUN_ORIGIN, "reproduce": "gradcheck run -k x"}
    )
    model = planted_model_result()
    document["models"].append(
        {**model.to_dict(), "origin": RUN_ORIGIN, "label": "model/planted_mlp/eval/cpu"}
    )
    document["parity"].append(
        {
            "passed": True,
            "status": "passed",
            "module": "PlantedMLP",
            "dtype": "float32",
            "mode": "eval",
            "reference": "cpu float64",
            "devices": ["cpu"],
            "rows": [
                {
                    "name": "out.weight",
                    "device": "cpu",
                    "shape": [3, 6],
                    "max_abs_error": 1e-7,
                    "relative_error": 2e-7,
                    "allowed": 1e-4,
                    "passed": True,
                }
            ],
            "skipped": [["cuda", "CUDA is not available"]],
            "message": "parity holds on cpu; cuda skipped",
            "seed": 0,
            "duration_s": 0.5,
            "origin": RUN_ORIGIN,
            "label": "parity/planted_mlp/float32",
        }
    )
    document["tests"] += [
        {
            "nodeid": "properties/test_prop_kinks.py::test_relu_subgradient",
            "suite": "properties",
            "outcome": "failed",
            "duration_s": 1.5,
            "message": "AssertionError: subgradient outside [0, 1]",
            "reproduce": "pytest properties/test_prop_kinks.py::test_relu_subgradient",
            "falsifying_example": "test_relu_subgradient(\n    x=0.0,\n)",
            "hypothesis": property_counts(7, 1),
        },
        {
            "nodeid": "properties/test_prop_expressions.py::test_polynomials",
            "suite": "properties",
            "outcome": "passed",
            "duration_s": 2.0,
            "message": "",
            "reproduce": "pytest properties/test_prop_expressions.py::test_polynomials",
            "hypothesis": property_counts(15, 0),
        },
        {
            "nodeid": f"tests/test_names.py::test_{HOSTILE}",
            "suite": "tests",
            "outcome": "passed",
            "duration_s": 0.01,
            "message": "",
            "reproduce": "pytest tests/test_names.py",
        },
    ]
    document["benchmarks"] += [
        {
            "name": f"test_backward[{HOSTILE}]",
            "fullname": "benchmarks/test_b.py::test_backward",
            "group": "backward",
            "params": None,
            "extra_info": {"threads": 2},
            "stats": {
                "min": 1e-3,
                "max": 3e-3,
                "mean": 2e-3 if not flip else 5e-3,
                "stddev": 1e-4,
                "median": 2e-3,
                "rounds": 50,
                "iterations": 1,
                "ops": 500.0,
            },
        },
        {
            "name": "test_forward",
            "fullname": "benchmarks/test_b.py::test_forward",
            "group": "backward",
            "params": None,
            "extra_info": {},
            "stats": {
                "min": 1e-4,
                "max": 2e-4,
                "mean": 1.5e-4,
                "stddev": 1e-5,
                "median": 1.5e-4,
                "rounds": 100,
                "iterations": 1,
                "ops": 6666.0,
            },
        },
    ]
    return finalize(copy.deepcopy(document), 12.5)


def passing_run_document() -> dict:
    """A passing ``gradcheck run`` document the size of the default run: 59 scenarios (copies
    of real ones; one claim with 62 judges and a 20-number vector, as the optimizer claims
    have), 14 property tests and two model checks of 63 tensors each."""
    document = new_document("run", title="default run", command="gradcheck run")
    document["environment"] = {
        "python": "CPython 3.11.7",
        "torch": "2.14.1",
        "devices": ["cpu"],
        "hypothesis_profile": "dev",
        "hypothesis_seed": "--hypothesis-seed=0",
    }
    document.update(profile="dev", seed=0, device="cpu")
    document["sections"] = ["scenarios", "properties", "models", "parity"]
    real = [run_scenario(CATALOG[s], seed=0).to_dict() for s in REAL_SCENARIOS]
    for index in range(59):
        entry = copy.deepcopy(real[index % len(real)])
        entry.update(id=f"{entry['id']}_{index}", origin=RUN_ORIGIN)
        document["scenarios"].append(entry)
    long_claim = copy.deepcopy(real[1]["claims"][0])
    long_claim["checks"] = [copy.deepcopy(long_claim["checks"][0]) for _ in range(62)]
    long_claim["measured"] = [0.125 * i for i in range(20)]
    long_claim["stated"] = [str(0.125 * i) for i in range(20)]
    long_claim["statement"] = "optimizer step matches the notebook's 20 numbers"
    document["scenarios"][0]["claims"].append(long_claim)
    for index in range(14):
        document["tests"].append(
            {
                "nodeid": f"properties/test_prop_{index}.py::test_property_{index}",
                "suite": "properties",
                "outcome": "passed",
                "duration_s": 1.0,
                "message": "",
                "reproduce": f"pytest properties/test_prop_{index}.py",
                "hypothesis": property_counts(15, 0),
            }
        )
    model = planted_model_result().to_dict()
    rows = [{**row, "status": "passed"} for row in model["rows"]]
    for mode in ("eval", "train"):
        document["models"].append(
            {
                **model,
                "status": "passed",
                "passed": True,
                "rows": [copy.deepcopy(rows[i % len(rows)]) for i in range(63)],
                "origin": RUN_ORIGIN,
                "label": f"model/resnet18/{mode}/cpu",
            }
        )
    return finalize(document, 300.0)


def bench_entry(name: str, group: str | None, mean: float, **extra_info: object) -> dict:
    """A benchmark entry as the plugin's ``benchmark_entries`` writes it."""
    return {
        "name": name,
        "fullname": f"benchmarks/test_bench.py::{name}",
        "group": group,
        "params": None,
        "extra_info": extra_info,
        "stats": {
            "min": 0.8 * mean,
            "max": 1.5 * mean,
            "mean": mean,
            "stddev": 0.1 * mean,
            "median": mean,
            "rounds": 10,
            "iterations": 1,
            "ops": 1 / mean,
        },
    }


class _SoftmaxMissingTerm(torch.autograd.Function):
    """Softmax whose backward is ``y * g``: it misses the ``- y * sum(y * g)`` term."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        y = torch.softmax(x, -1)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        (y,) = ctx.saved_tensors
        return y * grad


def wrong_softmax(x: torch.Tensor) -> torch.Tensor:
    """The planted wrong softmax backward, named with :data:`HOSTILE` text."""
    return _SoftmaxMissingTerm.apply(x)


wrong_softmax.__name__ = wrong_softmax.__qualname__ = f"softmax_{HOSTILE}"


def softmax(x: torch.Tensor) -> torch.Tensor:
    """The reference: torch's softmax over the last dimension."""
    return torch.softmax(x, -1)


class HostileLinear(torch.nn.Module):
    """``tanh(x @ W)`` whose one parameter is named with :data:`HOSTILE` text."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
        self.register_parameter(f"w{HOSTILE}", torch.nn.Parameter(weight))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x @ getattr(self, f"w{HOSTILE}"))


def reference_results():  # type: ignore[no-untyped-def]
    """Three real low-precision checks: the planted wrong softmax backward in bfloat16 (its
    input's gradient fails), softmax compiled with the ``eager`` backend in bfloat16 (passes)
    and :class:`HostileLinear` in float16 against itself (passes)."""
    from gradcheck import check_against_reference, check_compiled

    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))
    wrong = check_against_reference(wrong_softmax, softmax, x, dtype=torch.bfloat16)
    compiled = check_compiled(softmax, x, dtype=torch.bfloat16, backend="eager")
    module = HostileLinear()
    hostile = check_against_reference(module, module, x, dtype=torch.float16)
    return wrong, compiled, hostile


def reference_document(kind: str = "run", origin: str = RUN_ORIGIN) -> dict:
    """A run document holding :func:`reference_results` (and one passing test)."""
    document = new_document(kind, title="reference checks", command="gradcheck run")
    document["environment"] = {"python": "CPython 3.11.7", "torch": "2.14.1", "devices": ["cpu"]}
    for result in reference_results():
        document["references"].append({**result.to_dict(), "origin": origin})
    document["tests"].append(
        {"nodeid": "tests/test_x.py::test_catches", "suite": "tests", "outcome": "passed"}
    )
    return finalize(document, 2.0)
