"""Run as ``python memory_child.py ELEMENTS THREADS JUDGE``: JUDGE (``check_function``,
``gradcheck_fast`` for ``torch.autograd.gradcheck(fast_mode=True)``, or ``autograd_once``: one
forward and one backward of the function with a cotangent of ones, the least any gradient check
that runs autograd's backward holds at once) on ``torch.sin(x) * x`` at one float64 input of
ELEMENTS elements, in this fresh process (each judge in its own, so neither
reuses memory the other's allocator kept); prints one JSON object with its wall and CPU seconds
and peak memory increase.

The peak is the resident set's high-water mark: the kernel's ``VmHWM`` (what
``getrusage(RUSAGE_SELF).ru_maxrss`` reports), reset just before each check by writing 5 to
``/proc/self/clear_refs`` and measured against the resident set at that moment, after a warm-up
check on 10 elements ran and the input was made (torch's allocations are invisible to
tracemalloc). Where the reset is refused (not Linux) the increase is measured over the high-water
mark before the check, which hides any earlier, higher peak: ``method`` says which.
"""

from __future__ import annotations

import gc
import json
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FUNCTION = "torch.sin(x) * x, float64"
_STATUS = Path("/proc/self/status")


def _status_bytes(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (``VmRSS``, ``VmHWM``) in bytes; None without it."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _max_rss() -> int:
    """``ru_maxrss`` in bytes (kilobytes on Linux, bytes on macOS)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value if sys.platform == "darwin" else value * 1024


def _reset_peak() -> tuple[int, str]:
    """Reset the high-water mark where the kernel allows; (the baseline, the method's name)."""
    gc.collect()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return _max_rss(), "ru_maxrss over the previous high-water mark"
    current = _status_bytes("VmRSS")
    if current is None:
        return _max_rss(), "ru_maxrss over the previous high-water mark"
    return current, "VmHWM reset before the check, over the resident set then"


def _measure(check: Callable[[], Any]) -> dict[str, Any]:
    baseline, method = _reset_peak()
    wall, cpu = time.perf_counter(), time.process_time()
    outcome = check()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = _status_bytes("VmHWM") or _max_rss()
    return {
        "outcome": outcome,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_increase_bytes": max(0, peak - baseline),
        "method": method,
    }


JUDGES = ("check_function", "gradcheck_fast", "autograd_once")


def main(elements: int, threads: int, judge: str) -> dict[str, Any]:
    """``judge`` (one of :data:`JUDGES`) at ``elements`` elements on ``threads`` threads; the
    facts to print: ``status`` (check_function's; ``passed``/``failed`` for torch's, and for
    ``autograd_once`` whether its gradient is finite),
    ``calls`` of the function, wall and CPU seconds, the peak increase and its ratio to the
    input's bytes."""
    import torch

    from gradcheck import check_function

    torch.set_num_threads(threads)
    calls = [0]

    def f(x: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return torch.sin(x) * x

    def check(x: torch.Tensor) -> str:
        if judge == "check_function":
            return check_function(f, x).status
        leaf = x.detach().clone().requires_grad_()
        if judge == "autograd_once":
            out = f(leaf)
            (grad,) = torch.autograd.grad(out, leaf, torch.ones_like(out))
            return "passed" if bool(torch.isfinite(grad).all()) else "failed"
        passed = torch.autograd.gradcheck(f, (leaf,), fast_mode=True, raise_exception=False)
        return "passed" if passed else "failed"

    check(torch.rand(10, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    x = torch.rand(elements, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    calls[0] = 0
    facts = _measure(lambda: check(x))
    input_bytes = x.numel() * x.element_size()
    return {
        "memory_of": FUNCTION,
        "checked_by": judge,
        "elements": elements,
        "input_bytes": input_bytes,
        "status": facts.pop("outcome"),
        "calls": calls[0],
        **facts,
        "peak_over_input": facts["peak_increase_bytes"] / input_bytes,
        "threads": threads,
    }


if __name__ == "__main__":
    print(json.dumps(main(int(float(sys.argv[1])), int(sys.argv[2]), sys.argv[3])))
