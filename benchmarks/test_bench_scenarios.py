"""Backward throughput of each notebook scenario: backward calls per second of the notebook's
own step (``workloads.WORKLOADS``), in float32 (the notebooks' dtype) and float64, on CPU and on
CUDA where present. These graphs are a handful of scalar operations, so the numbers measure
autograd's per-call overhead (graph building, the engine, accumulating ``.grad``), not arithmetic.
"""

from __future__ import annotations

import pytest
import torch
from timing import DEVICES, DTYPES, StepTimer, dtype_name, require
from workloads import BY_ID

ROUNDS, ITERATIONS, WARMUP_STEPS = 100, 20, 200


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("scenario_id", BY_ID)
def test_notebook_step_throughput(benchmark, scenario_id, dtype, device):  # type: ignore[no-untyped-def]
    require(device)
    workload = BY_ID[scenario_id]
    benchmark.group = f"notebook step, {dtype_name(dtype)}, {device}"
    leaves = workload.leaves(dtype, device)
    forward, finish = workload.step(leaves)
    timer = StepTimer(forward, device, finish=finish)
    timer.warm_up(WARMUP_STEPS)
    benchmark.pedantic(timer.step, rounds=ROUNDS, iterations=ITERATIONS)
    timer.record(
        benchmark,
        samples=1,
        rate_key="backward_calls_per_s",
        scenario=workload.scenario_id,
        dtype=dtype_name(dtype),
        after=workload.after,
    )
    if workload.after == "accumulate":  # every step's gradient landed in .grad, none was lost
        steps = WARMUP_STEPS + len(timer.backward_s)
        fresh = workload.leaves(torch.float64)
        single = torch.autograd.grad(workload.function(*fresh), fresh)
        for leaf, grad in zip(leaves, single):
            torch.testing.assert_close(leaf.grad.double().cpu(), steps * grad, rtol=1e-4, atol=0)
