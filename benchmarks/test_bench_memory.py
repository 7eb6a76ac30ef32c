"""Time and peak memory of check_function on one elementwise input, ``torch.sin(x) * x`` in
float64, at 1e4, 1e6 and 1e7 elements, each in a fresh process (``memory_child.py``: the peak is
the resident set's high-water mark, reset before the check; torch's allocations are invisible to
tracemalloc), beside ``torch.autograd.gradcheck(fast_mode=True)`` in a fresh process of its own
(``torch_fast_*`` in ``extra_info``; ``cpu_over_torch_fast`` is our CPU time over its), and
beside the floor of any check that runs autograd's backward: one forward and one backward of the
function alone, in a third process (``autograd_once_*``; ``peak_over_autograd_once`` is our peak
over its: about 7 times the input, the leaf, the output, the saved input and ``sin(x)``, the
cotangent and the gradient). Slow mode is not run: its dense Jacobian at 1e6 elements would
take 8 TB.

1e4 and 1e6 are in the quick run (1e6: about 3.4 s of checking on one thread and 220 MB of
peak, 27 times the input); 1e7 takes about 54-59 CPU-s and 1.6 GB (20 times the input, where
the floor is 7; measured 2026-12-03 and 04), and runs only with ``GRADCHECK_BENCH_LARGE=1``.
``extra_info`` has the child's own wall and CPU seconds (pytest-benchmark's time also counts
starting Python and importing torch, twice), the peak increase in bytes and
``peak_over_input``, the peak over the input's bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gradcheck

LARGE = pytest.mark.skipif(
    os.environ.get("GRADCHECK_BENCH_LARGE") != "1",
    reason="1e7 elements take about a minute and 1.6 GB: set GRADCHECK_BENCH_LARGE=1",
)
SIZES = (10_000, 1_000_000, pytest.param(10_000_000, marks=LARGE))
CHILD = Path(__file__).with_name("memory_child.py")
PEER_FACTS = ("status", "calls", "wall_s", "cpu_s", "peak_increase_bytes", "peak_over_input")
"""What the peer's and the floor's children measured, kept as ``torch_fast_<fact>`` and
``autograd_once_<fact>``."""
THREADS = 1
"""The child's torch threads, as the other speed benchmarks use: on a shared machine two threads
can make one elementwise op 100 times slower (each parallel region waits for a descheduled
thread; measured: torch.sin on 1e4 doubles took 6 ms on two threads, 32 us on one)."""


def run_child(elements: int, threads: int, judge: str) -> dict:
    """``memory_child.py`` in a fresh interpreter that imports this gradcheck; its JSON."""
    package_root = str(Path(gradcheck.__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)
    completed = subprocess.run(
        [sys.executable, str(CHILD), str(elements), str(threads), judge],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("elements", SIZES, ids=lambda n: f"{n:.0e}".replace("+0", ""))
def test_check_function_memory_on_one_elementwise_input(benchmark, elements: int) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "check_function time and peak memory, torch.sin(x) * x, float64"
    facts = benchmark.pedantic(
        run_child, args=(elements, THREADS, "check_function"), rounds=1, iterations=1
    )
    peer = run_child(elements, THREADS, "gradcheck_fast")
    floor = run_child(elements, THREADS, "autograd_once")
    benchmark.extra_info.update(facts)
    benchmark.extra_info.update(
        {f"torch_fast_{key}": peer[key] for key in PEER_FACTS},
        cpu_over_torch_fast=facts["cpu_s"] / peer["cpu_s"],
    )
    benchmark.extra_info.update(
        {f"autograd_once_{key}": floor[key] for key in PEER_FACTS},
        peak_over_autograd_once=facts["peak_increase_bytes"] / floor["peak_increase_bytes"],
    )
    assert facts["status"] == "passed", facts
    assert peer["status"] == "passed", peer
    assert floor["status"] == "passed", floor
