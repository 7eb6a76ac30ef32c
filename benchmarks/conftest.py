"""Benchmarks run apart from the test suite: ``pytest benchmarks --benchmark-only``.

After pytest-benchmark's own tables this prints two summaries of what its ``extra_info`` holds:
throughput (samples or backward calls per second, forward and backward time and their ratio)
and the cost of verification (each peer's time over ``check_function``'s on the same work).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _format_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def throughput_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per benchmark that split forward from backward."""
    rows = [e for e in entries if "backward_over_forward" in (e.get("extra_info") or {})]
    if not rows:
        return []
    width = max(len(e["name"]) for e in rows)
    lines = [
        f"{'benchmark':<{width}}  {'rate':>19}  {'forward':>10}  {'backward':>10}  bwd/fwd",
    ]
    for entry in rows:
        info = entry["extra_info"]
        rate = info.get("samples_per_s", info.get("backward_calls_per_s", float("nan")))
        unit = "samples/s" if "samples_per_s" in info else "calls/s"
        lines.append(
            f"{entry['name']:<{width}}  {_format_rate(rate):>9} {unit:<9}  "
            f"{info['forward_s'] * 1e3:8.3f}ms  {info['backward_s'] * 1e3:8.3f}ms  "
            f"{info['backward_over_forward']:6.2f}x"
        )
    return lines


def verification_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per peer benchmark that knows check_function's time on the same work."""
    rows = [e for e in entries if "time_vs_check_function" in (e.get("extra_info") or {})]
    if not rows:
        return []
    width = max(len(e["group"] or "") for e in rows)
    lines = [f"{'work':<{width}}  {'peer':<16} {'peer time / check_function time':>32}"]
    for entry in sorted(rows, key=lambda e: (e["group"] or "", e["name"])):
        info = entry["extra_info"]
        lines.append(
            f"{entry['group']:<{width}}  {info.get('judge', ''):<16} "
            f"{info['time_vs_check_function']:>32.3g}"
        )
    return lines


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's own tables
def pytest_terminal_summary(terminalreporter: Any, config: Any) -> None:
    from gradcheck.pytest_plugin import benchmark_entries

    entries = benchmark_entries(config)
    for title, lines in (
        (
            "throughput (medians; bwd/fwd: a well-implemented backward costs about 2x)",
            throughput_lines(entries),
        ),
        (
            "cost of verification: torch.autograd.gradcheck against check_function",
            verification_lines(entries),
        ),
    ):
        if lines:
            terminalreporter.write_sep("-", title)
            for line in lines:
                terminalreporter.write_line(line)
