"""Backward throughput of each notebook scenario: backward calls per second of the notebook's
own step (``workloads.WORKLOADS``), in float32 (the notebooks' dtype) and float64, on CPU and on
CUDA where present. These graphs are a handful of scalar operations, so the numbers measure
autograd's per-call overhead (graph building, the engine, accumulating ``.grad``), not arithmetic.
"""

from __future__ import annotations

import pytest
import torch
from timing import DEVICES, DTYPES, StepTimer, dtype_name, require
from workloads import WORKLOADS

ROUNDS, ITERATIONS, WARMUP_ROUNDS = 100, 20, 10


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("workload", WORKLOADS, ids=lambda w: w.scenario_id)
def test_notebook_step_throughput(benchmark, workload, dtype, device):  # type: ignore[no-untyped-def]
    require(device)
    benchmark.group = f"notebook step, {dtype_name(dtype)}, {device}"
    leaves = workload.leaves(dtype, device)
    timer = StepTimer(workload.step(leaves), device)
    benchmark.pedantic(
        timer.step, rounds=ROUNDS, iterations=ITERATIONS, warmup_rounds=WARMUP_ROUNDS
    )
    timer.record(
        benchmark,
        samples=1,
        warmup=WARMUP_ROUNDS * ITERATIONS,
        rate="backward_calls_per_s",
        scenario=workload.scenario_id,
        dtype=dtype_name(dtype),
        after=workload.after,
    )
    if workload.after == "accumulate":  # every step's gradient landed in .grad, none was lost
        steps = len(timer.backward_s)
        fresh = workload.leaves(torch.float64)
        single = torch.autograd.grad(workload.function(*fresh), fresh)
        for leaf, grad in zip(leaves, single):
            torch.testing.assert_close(leaf.grad.double().cpu(), steps * grad, rtol=1e-4, atol=0)
