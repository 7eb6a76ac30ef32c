"""The benchmark workloads time what the scenarios prove: every notebook scenario that calls
backward has one, each names a real scenario, and one timed step leaves the notebook's gradient
(or the notebook's update) in place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gradcheck import check_function
from gradcheck.scenarios import CATALOG

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from workloads import WORKLOADS

NO_BACKWARD_TO_TIME = ("tracking/", "errors/", "resnet18/")  # no graph, a raise, the model bench


def test_every_notebook_scenario_with_a_backward_has_a_workload() -> None:
    notebook = {
        scenario_id
        for scenario_id, scenario in CATALOG.items()
        if "notebook" in scenario.tags and not scenario_id.startswith(NO_BACKWARD_TO_TIME)
    }
    ids = [workload.scenario_id for workload in WORKLOADS]
    assert len(ids) == len(set(ids))
    assert set(ids) <= set(CATALOG)
    # the three left out, and why, are named in benchmarks/workloads.py's docstring
    assert notebook - set(ids) == {
        "neuron/zero_grad",
        "linear/manual_update_pitfall",
        "accumulation/ddp_no_sync",
    }


@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.scenario_id)
def test_one_step_gives_the_checked_gradient(workload) -> None:  # type: ignore[no-untyped-def]
    leaves = workload.leaves(torch.float64)
    before = [leaf.detach().clone() for leaf in leaves]
    output = workload.function(*leaves)
    expected = torch.autograd.grad(output, leaves, workload.cotangent_for(output))
    assert check_function(
        workload.function, workload.inputs(), cotangents=workload.cotangent_for(output)
    ).passed
    arrived: dict[int, torch.Tensor] = {}
    for index, leaf in enumerate(leaves):
        leaf.register_hook(lambda grad, index=index: arrived.setdefault(index, grad.clone()))
    forward, finish = workload.step(leaves)
    forward()()  # the forward, then its backward
    assert sorted(arrived) == list(range(len(leaves))), "the backward missed a leaf"
    for index, want in enumerate(expected):
        torch.testing.assert_close(arrived[index], want)
    finish()
    if workload.after == "accumulate":
        for leaf, grad in zip(leaves, expected):
            torch.testing.assert_close(leaf.grad, grad)
    elif workload.after in ("sgd", "no_grad_update"):
        for leaf, start, grad in zip(leaves, before, expected):
            torch.testing.assert_close(leaf.detach(), start - workload.lr * grad)
            assert leaf.grad is None or not leaf.grad.any()
    else:
        assert workload.after == "zero_grad"
        assert all(leaf.grad is None for leaf in leaves)
