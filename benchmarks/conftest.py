"""Benchmarks run apart from the test suite: ``pytest benchmarks --benchmark-only``.

After pytest-benchmark's own tables this prints three summaries of what its ``extra_info`` holds:
throughput (samples or backward calls per second, forward and backward time and their ratio),
the cost of verification (each peer's time over gradcheck's judge on the same work), and speed
and memory (:func:`gradcheck.report.speed.speed_lines`: check_function over torch's slow and fast
mode per sample, every sample over 3x slower, the peak memory at each size, ResNet18's ratio).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from gradcheck.report.benchmarks import benchmark_groups, rate, rate_of
from gradcheck.report.speed import speed_lines

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _record_threads(request: pytest.FixtureRequest) -> None:
    """Every benchmark records ``torch.get_num_threads()`` (its numbers depend on it)."""
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["threads"] = torch.get_num_threads()


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
        rate_key, unit = rate_of(info)
        lines.append(
            f"{entry['name']:<{width}}  {rate(info.get(rate_key)):>9} {unit:<16}  "
            f"{info['forward_s'] * 1e3:8.3f}ms  {info['backward_s'] * 1e3:8.3f}ms  "
            f"{info['backward_over_forward']:6.2f}x"
        )
    return lines


def verification_lines(entries: list[dict[str, Any]]) -> list[str]:
    """One line per peer judge in a group with a gradcheck judge: its time over that judge's."""
    rows = [
        (group["name"], group["reference_judge"], row)
        for group in benchmark_groups(entries)
        for row in group["rows"]
        if group["reference_judge"] and not row["reference"] and row["judge"]
    ]
    if not rows:
        return []
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'work':<{width}}  {'peer':<16} {'reference':<16} {'peer time / reference':>22}"]
    for name, reference, row in rows:
        lines.append(
            f"{name:<{width}}  {row['judge']:<16} {reference:<16} {row['time_vs_reference']:>22.3g}"
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
            "cost of verification: torch.autograd.gradcheck against gradcheck's judge",
            verification_lines(entries),
        ),
        (
            "speed and memory: check_function's CPU time over torch.autograd.gradcheck's",
            speed_lines(entries),
        ),
    ):
        if lines:
            terminalreporter.write_sep("-", title)
            for line in lines:
                terminalreporter.write_line(line)
