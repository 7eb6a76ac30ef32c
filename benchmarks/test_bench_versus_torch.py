"""check_function against ``torch.autograd.gradcheck`` slow and fast mode, sample by sample, in one
process (``versus_torch``: each side's CPU seconds on one thread, after an untimed run).

- OpInfo samples (float64, CPU, built as ``gradcheck ops`` builds them): 40 samples of distinct
  ops drawn with seed 0 in the quick run (about 20 s); ``GRADCHECK_BENCH_OPS=all`` times the first
  3 samples of every op (1,502 samples of torch 2.14: 20 minutes on a busy 2-core machine),
  ``GRADCHECK_BENCH_OPS=N`` N of them, and
  ``GRADCHECK_BENCH_OPS_SEED`` draws another subset. Needs expecttest (torch's OpInfo database).
- Small hand-written functions: elementwise, reductions, a 4x5 @ 5x3 matmul and a custom
  ``autograd.Function``.

``extra_info`` holds :func:`gradcheck.report.speed.ratio_summary` of the rows: the median and
quartiles of our time over each mode's, every sample more than 3x slower than the slow mode (name,
sizes, times and how often each side called the function), the samples left without a ratio and
why; the hand-written benchmark also keeps every row (``rows``). pytest-benchmark's own time is the
whole pass (one round). The ratios are printed at the end and shown in the HTML report.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
import torch
from versus_torch import (
    BUDGET_S,
    SAMPLES_PER_OP,
    draw_opinfo,
    hand_written_cases,
    opinfo_request,
    time_case,
)

from gradcheck.report.speed import ratio_summary


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The checks on one CPU thread, as gradcheck ops's workers run them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.mark.skipif(
    importlib.util.find_spec("expecttest") is None,
    reason="torch's OpInfo database needs expecttest: pip install 'gradcheck[ops]'",
)
@pytest.mark.usefixtures("one_thread")
def test_check_function_vs_torch_on_opinfo_samples(benchmark) -> None:  # type: ignore[no-untyped-def]
    import warnings

    count, seed = opinfo_request()
    benchmark.group = "check_function vs torch.autograd.gradcheck, per sample"

    def time_all() -> list[dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ops' deprecation notes
            return [
                time_case(f"{d.key}#{d.index}", d.case, d.nondet_tol, op=d.key, sample=d.index)
                for d in draw_opinfo(count, seed)
            ]

    rows = benchmark.pedantic(time_all, rounds=1, iterations=1)
    which = "every sample" if count is None else f"{len(rows)} samples of distinct ops"
    benchmark.extra_info.update(
        ratio_summary(rows),
        versus_torch="OpInfo samples",
        selection=(
            f"{which} of torch {torch.__version__}'s op_db (float64, CPU; each among its op's "
            f"first {SAMPLES_PER_OP}), seed {seed}; each check budgeted {BUDGET_S:g} CPU-s"
        ),
        seed=seed,
        selected=[row["name"] for row in rows],
        threads=torch.get_num_threads(),
    )
    assert rows, "no OpInfo sample was drawn"
    assert count is None or len(rows) == count


@pytest.mark.usefixtures("one_thread")
def test_check_function_vs_torch_on_hand_written_functions(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark.group = "check_function vs torch.autograd.gradcheck, per sample"
    cases = hand_written_cases()

    def time_all() -> list[dict]:
        return [time_case(name, case) for name, case in cases]

    rows = benchmark.pedantic(time_all, rounds=1, iterations=1)
    benchmark.extra_info.update(
        ratio_summary(rows),
        versus_torch="hand-written functions",
        rows=rows,
        threads=torch.get_num_threads(),
    )
    for row in rows:  # a correct gradient: every side passes it
        assert (row["ours_status"], row["slow_status"]) == ("passed", "passed"), row


@pytest.mark.usefixtures("one_thread")
def test_second_order_vs_gradgradcheck_on_hand_written_functions(benchmark) -> None:  # type: ignore[no-untyped-def]
    """check_function(order=2) (first and second order) against gradgradcheck (second only)."""
    benchmark.group = "check_function(order=2) vs torch.autograd.gradgradcheck, per sample"
    cases = hand_written_cases()

    def time_all() -> list[dict]:
        return [time_case(name, case, order=2) for name, case in cases]

    rows = benchmark.pedantic(time_all, rounds=1, iterations=1)
    benchmark.extra_info.update(
        ratio_summary(rows),
        versus_torch="hand-written functions, second order (gradgradcheck)",
        rows=rows,
        threads=torch.get_num_threads(),
    )
    for row in rows:  # a correct second derivative: both pass it
        assert (row["ours_status"], row["slow_status"]) == ("passed", "passed"), row
