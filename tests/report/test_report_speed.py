"""The speed summary a benchmark records (median and quartiles of check_function's time over
torch's, every sample over 3x slower, the samples left out and why) and how the report and the
benchmarks' terminal summary show it, with the memory and whole-model ratios."""

from __future__ import annotations

import pytest
from html_parsing import Page
from report_documents import HOSTILE, bench_entry

from gradcheck.report.benchmarks import benchmark_groups
from gradcheck.report.document import finalize, new_document
from gradcheck.report.render import render_report
from gradcheck.report.speed import (
    quartiles,
    ratio_summary,
    slow_reason,
    speed_findings,
    speed_lines,
    times,
)


def _row(name: str, ours: float, slow: float, fast: float, **more: object) -> dict:
    return {
        "name": name,
        "ours_s": ours,
        "slow_s": slow,
        "fast_s": fast,
        "ours_status": "passed",
        "slow_status": "passed",
        "fast_status": "passed",
        **more,
    }


ROWS = [
    _row("sin#0", 2.0, 1.0, 0.5, sizes="(20,)", ours_calls=40, slow_calls=10, fast_calls=3),
    _row("exp#1", 8.0, 1.0, 1.0, sizes="(5, 5)", ours_calls=100, slow_calls=50, fast_calls=3),
    _row("mul#0", 1.0, 2.0, 0.25),
    _row("add#2", 5.0, 1.0, 2.0),
    _row("slow_op#0", 20.0, 2.0, 1.0, ours_status="timeout", ours_message="over the budget"),
    _row("broken#0", 0.1, 1.0, 1.0, ours_status="error", ours_message="RuntimeError: no"),
    _row("torch_err#0", 1.0, 0.0, 0.5, slow_status="error"),
]


def test_the_summary_has_the_median_and_quartiles_over_the_samples_both_finished() -> None:
    summary = ratio_summary(ROWS)
    # ours / slow over the four samples where both finished: 2, 8, 0.5, 5
    assert summary["samples"] == 7 and summary["timed_slow"] == 4
    assert summary["ours_over_slow_median"] == pytest.approx(3.5)
    assert summary["ours_over_slow_q1"] == pytest.approx(1.625)  # inclusive quartiles
    assert summary["ours_over_slow_q3"] == pytest.approx(5.75)
    assert (summary["ours_over_slow_min"], summary["ours_over_slow_max"]) == (0.5, 8.0)
    # ours / fast: 4, 8, 4, 2.5, and torch_err#0's 2 (its fast mode finished)
    assert summary["timed_fast"] == 5
    assert summary["ours_over_fast_median"] == pytest.approx(4.0)
    assert summary["ours_s_total"] == pytest.approx(16.0)  # the four with all three timed
    assert summary["slow_s_total"] == pytest.approx(5.0)


def test_every_sample_over_3x_slower_is_listed_worst_first_with_its_facts() -> None:
    listed = ratio_summary(ROWS)["over_3x_slow"]
    assert [e["name"] for e in listed] == ["slow_op#0", "exp#1", "add#2"]
    timeout, exp, add = listed
    assert timeout["lower_bound"] and timeout["ratio_slow"] == pytest.approx(10.0)
    assert not exp["lower_bound"] and exp["ratio_slow"] == pytest.approx(8.0)
    assert exp["ratio_fast"] == pytest.approx(8.0) and exp["sizes"] == "(5, 5)"
    # 8x slower: twice slow mode's calls, and 4x its time per call
    assert exp["calls_over_slow"] == pytest.approx(2.0)
    assert exp["per_call_over_slow"] == pytest.approx(4.0)
    assert "calls_over_slow" not in add  # no counts, no split
    assert ratio_summary(ROWS, over=10.0)["over_3x_slow"] == []  # 10x is not over 10x


def test_each_sample_over_3x_has_the_reason_its_row_measured() -> None:
    refused = _row(
        "rrelu#0",
        12.0,
        1.0,
        0.5,
        numel=400,
        ours_calls=1180,
        slow_calls=100,
        ours_vmap_refused="RuntimeError under vmap",
    )
    small = _row("atan2#0", 4.0, 1.0, 0.5, numel=6, ours_calls=30, slow_calls=12)
    unknown = _row("big#0", 5.0, 1.0, 0.5, numel=400, ours_calls=20, slow_calls=100)
    view = _row(
        "ravel#2", 6.0, 1.0, 0.5, numel=125, ours_calls=2809, slow_calls=251, ours_views=True
    )
    looped = _row(
        "dist#1",
        8.0,
        1.0,
        0.5,
        numel=250,
        ours_calls=17,
        slow_calls=501,
        ours_vmap_loops="aten::_cdist_forward",
    )
    summary = ratio_summary(
        [refused, small, unknown, view, looped, _row("fine#0", 1.0, 1.0, 1.0, numel=1)]
    )
    reasons = {e["name"]: e["reason"] for e in summary["over_3x_slow"]}
    assert reasons == {
        "rrelu#0": "point by point: vmap refused fn (RuntimeError under vmap), so every point "
        "is a call of its own (11.8x slow mode's calls)",
        "atan2#0": "a small input (6 elements): slow mode's 12 calls cost less than "
        "check_function's fixed part (two backward passes, the purity check, the noise "
        "measurement)",
        "big#0": "no reason found (0.2x the calls, 25x the time per call)",
        "ravel#2": "point by point: an input is a view into a larger storage, whose layout fn "
        "may read, so its points are never batched (11.2x slow mode's calls)",
        "dist#1": "vmap has no batching rule for aten::_cdist_forward, so each batch runs it "
        "slice by slice (236x slow mode's time per call)",
    }
    assert summary["over_3x_without_reason"] == 1
    assert slow_reason(unknown) == reasons["big#0"]  # from the row alone, as the report does
    uncounted = _row("add#2", 5.0, 1.0, 2.0)
    assert slow_reason(uncounted) == "no reason found (no call counts recorded)"
    twice = {**unknown, "other_ratio_slow": 31.0}
    assert slow_reason(twice) == (
        "no reason found (0.2x the calls, 25x the time per call; timed twice, the other timing 31x)"
    )
    lines = speed_lines([bench_entry("o", "g", 1.0, versus_torch="OpInfo samples", **summary)])
    assert any(line.endswith("; " + reasons["rrelu#0"]) for line in lines)
    assert any(
        "5 of 6 OpInfo samples more than 3x slower than torch slow mode, 1 of them "
        "without a reason found" in line
        for line in lines
    )


def test_samples_without_a_ratio_are_named_with_the_reason() -> None:
    left_out = ratio_summary(ROWS)["left_out"]
    assert left_out == [
        {"name": "broken#0", "why": "check_function: error (RuntimeError: no)"},
        {"name": "torch_err#0", "why": "torch slow mode: error"},
    ]


def test_quartiles_of_one_value_and_of_none() -> None:
    assert quartiles([2.0]) == {"median": 2.0, "q1": 2.0, "q3": 2.0, "min": 2.0, "max": 2.0}
    assert set(quartiles([]).values()) == {None}
    empty = ratio_summary([])
    assert empty["timed_slow"] == 0 and empty["ours_over_slow_median"] is None
    assert times(None) == "-" and times(7.94) == "7.94x" and times(13.24) == "13.2x"


def _memory(elements: int, **facts: object) -> dict:
    """A memory benchmark of ``torch.sin(x) * x`` at ``elements`` float64 elements, passed."""
    return bench_entry(
        f"test_memory[{elements:.0e}]".replace("+0", ""),
        "memory",
        5.0,
        memory_of="torch.sin(x) * x, float64",
        elements=elements,
        input_bytes=8 * elements,
        status="passed",
        **facts,
    )


MODEL = "verify ResNet18"


def speed_document() -> dict:
    """A run with the OpInfo and hand-written speed benchmarks (a hostile sample name), two
    memory benchmarks and the whole-model pair."""
    hostile = [*ROWS, _row(HOSTILE, 40.0, 1.0, 1.0, sizes=HOSTILE, ours_calls=9, slow_calls=3)]
    opinfo = ratio_summary(hostile)
    hand = ratio_summary(ROWS[:3])
    document = new_document("pytest", title="pytest run", command="pytest benchmarks")
    document["benchmarks"] += [
        bench_entry(
            "test_opinfo",
            "versus",
            30.0,
            **opinfo,
            versus_torch="OpInfo samples",
            selection="8 samples, seed 0",
            selected=[r["name"] for r in hostile],
        ),
        bench_entry(
            "test_hand", "versus", 1.0, **hand, versus_torch="hand-written functions", rows=ROWS[:3]
        ),
        _memory(
            1_000_000,
            wall_s=2.6,
            cpu_s=2.5,
            peak_increase_bytes=360_000_000,
            peak_over_input=45.0,
            torch_fast_cpu_s=0.05,
            torch_fast_peak_increase_bytes=16_000_000,
            torch_fast_peak_over_input=2.0,
            cpu_over_torch_fast=50.0,
            autograd_once_peak_over_input=7.0,
        ),
        _memory(10_000, cpu_s=0.03, peak_increase_bytes=3_600_000, peak_over_input=45.0),
        bench_entry("test_check_module", MODEL, 20.0, judge="check_module"),
        bench_entry(
            "test_peer", MODEL, 400.0, judge="gradcheck_fast", full_run_s=1900.0, tensors=62
        ),
    ]
    return finalize(document, 60.0)


def test_the_report_says_the_median_ratios_over_the_samples() -> None:
    page = Page(render_report(speed_document()))
    text = page.text
    assert "check_function's speed and memory against torch.autograd.gradcheck" in text
    assert (
        "check_function / torch slow: median 5x (quartiles 2x to 8x, range 0.5x to 40x) over 5 "
        "OpInfo samples; check_function / torch fast: median 4x" in text
    )
    assert "Samples: 8 samples, seed 0." in text
    assert "Without a ratio to torch slow mode (2): broken#0: check_function: error" in text
    assert "over 3 hand-written functions" in text


def test_the_report_lists_each_sample_over_3x_with_sizes_calls_and_the_split() -> None:
    page = Page(render_report(speed_document()))
    rows = [text for _, text in page.rows_after("speed", before="tests")]
    headers = [i for i, text in enumerate(rows) if text.startswith("sample sizes")]
    hand, listed = rows[headers[0] + 1 : headers[1]], rows[headers[1] + 1 : headers[1] + 5]
    assert [r.split(" ")[0] for r in listed] == [HOSTILE, "slow_op#0", "exp#1", "add#2"]
    assert [r.split(" ")[0] for r in hand] == ["sin#0", "exp#1", "mul#0"]  # every function
    exp = next(r for r in listed if r.startswith("exp#1"))
    assert "(5, 5) 8 s 1 s 1 s 8x 8x 100 / 50 / 3 2x 4x passed / passed / passed" in exp
    assert exp.endswith("no reason found (2x the calls, 4x the time per call)")  # why over 3x
    assert "≥ 10x" in next(r for r in listed if r.startswith("slow_op#0"))  # a lower bound
    assert "4 of 8 OpInfo samples more than 3x slower than torch slow mode" in page.text


def test_the_report_shows_memory_by_size_and_the_whole_model_ratio() -> None:
    page = Page(render_report(speed_document()))
    text = page.text
    first, second = text.index("1e4 elements: check_function"), text.index("1e6 elements:")
    assert first < second  # by size, whatever order they ran in
    assert (
        "1e6 elements: check_function 2.5 s of CPU, peak memory up 360 MB: 45x the input's "
        "8 MB (torch fast mode: 0.05 s, 2x; one forward and backward of the function alone: "
        "7x)." in text
    )
    assert "45x the input's 80 kB (torch fast mode: -, -)." in text  # no floor measured: no clause
    memory = next(t for _, t in page.rows_after("speed", before="tests") if "test_memory[1e6]" in t)
    assert "1e6 8 MB passed 2.6 s 2.5 s 360 MB 45x 50 ms 16 MB (2x) 50x 7x" in memory
    assert (
        "torch.autograd.gradcheck(fast_mode=True) per tensor / check_module: 95x (the peer's "
        "estimated total 1,900 s over check_module's 20 s; 62 tensors" in text
    )


def test_speed_text_is_escaped_and_the_lists_stay_out_of_the_extra_column() -> None:
    html = render_report(speed_document())
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    groups = benchmark_groups(speed_document()["benchmarks"])
    opinfo = next(r for g in groups for r in g["rows"] if r["name"] == "test_opinfo")
    keys = [key for key, _ in opinfo["extra"]]
    assert "ours_over_slow_median" in keys
    assert not {"over_3x_slow", "left_out", "selected", "rows"} & set(keys)


def test_the_terminal_summary_prints_the_same_findings() -> None:
    entries = speed_document()["benchmarks"]
    lines = speed_lines(entries)
    assert any("median 5x (quartiles 2x to 8x" in line for line in lines)
    assert any(
        line.strip().startswith(
            "exp#1 (5, 5): ours 8 s, slow 1 s, fast 1 s, 8x slow (2x the "
            "calls, 4x the time per call), 8x fast; calls 100 / 50 / 3"
        )
        for line in lines
    )
    kinds = [finding["kind"] for finding in speed_findings(entries)]
    assert kinds == ["versus", "versus", "memory", "model"]
    assert speed_findings([]) == [] and speed_lines([]) == []


def test_the_whole_model_ratio_recorded_by_the_benchmarks_is_preferred() -> None:
    judge = bench_entry("a", MODEL, 20.0, judge="check_module")
    peer = bench_entry("b", MODEL, 400.0, judge="gradcheck_fast", full_run_s=1900.0)
    peer["extra_info"]["full_run_over_check_module"] = 90.0  # check_module's own first round
    (finding,) = speed_findings([judge, peer])
    assert finding["sentences"][0].startswith(
        "torch.autograd.gradcheck(fast_mode=True) per tensor / check_module: 90x"
    )
    assert speed_findings([peer]) == []  # without check_module there is no ratio
