"""check_function's time against ``torch.autograd.gradcheck``'s, summarised: the summary a speed
benchmark records in its ``extra_info`` (:func:`ratio_summary`), and what the HTML report and the
benchmarks' terminal summary say about speed and memory (:func:`speed_findings`). No torch, no
jinja2.

A speed benchmark times check_function ("ours"), torch's slow mode and torch's fast mode on each
of its samples in one process, and records ``extra_info["versus_torch"]`` (what the samples are:
``"OpInfo samples"``) with :func:`ratio_summary` of its rows. A memory benchmark records
``extra_info["memory_of"]`` (the function and dtype) with its elements, the input's bytes and the
peak memory increase of the check. The whole-model benchmarks (``check_module`` against
``gradcheck(fast_mode=True)`` per tensor) are found by their ``judge``.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

from gradcheck.report.document import as_float

OVER = 3.0
"""The bound of the speed issue: a sample more than this many times slower than torch's slow mode
is listed by name, with its sizes and evaluation counts, so that a reason can be written."""
TIMEOUT = "timeout"
NOT_TIMED = ("error", TIMEOUT, "not run")
"""Side statuses without a time to compare (a timeout's time is a lower bound)."""
PEERS = ("slow", "fast")
"""torch's two modes, as the ``{peer}_s`` and ``{peer}_status`` keys of a row name them."""
STATS = ("median", "q1", "q3", "min", "max")
LISTS = ("over_3x_slow", "left_out", "rows", "selected")
"""``extra_info`` keys holding lists that the report shows in tables of their own (or not at
all, ``selected``: the samples by name), never in a benchmark row's ``extra`` column."""
MODEL_PEER, MODEL_JUDGE = "gradcheck_fast", "check_module"
MODEL_RATIO = "full_run_over_check_module"
"""The whole-model benchmarks' ``extra_info`` key of the peer's estimated total over
check_module's time (the report computes the same from the group where it is absent)."""


def times(value: Any) -> str:
    """A ratio with 3 significant digits: ``7.9x``, ``13.2x``, ``0.52x``; ``-`` when absent."""
    number = as_float(value)
    return "-" if value is None or not math.isfinite(number) else f"{number:.3g}x"


def quartiles(values: Sequence[float]) -> dict[str, float | None]:
    """Median, first and third quartile (inclusive method), min and max; None for no value."""
    if not values:
        return dict.fromkeys(STATS)
    ordered = sorted(values)
    if len(ordered) == 1:
        q1 = q3 = ordered[0]
    else:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return {
        "median": statistics.median(ordered),
        "q1": q1,
        "q3": q3,
        "min": ordered[0],
        "max": ordered[-1],
    }


def _timed(row: dict[str, Any], side: str) -> bool:
    """Whether ``side`` (``ours`` or a peer) finished on ``row`` with a positive time."""
    seconds = as_float(row.get(f"{side}_s"))
    return row.get(f"{side}_status") not in NOT_TIMED and math.isfinite(seconds) and seconds > 0


def row_ratio(row: dict[str, Any], peer: str) -> float | None:
    """Our time over ``peer``'s on ``row`` when both finished; None otherwise."""
    if not (_timed(row, "ours") and _timed(row, peer)):
        return None
    return as_float(row["ours_s"]) / as_float(row[f"{peer}_s"])


def _lower_bound(row: dict[str, Any]) -> float | None:
    """Where ours ran out of its budget and torch's slow mode finished: the ratio it had
    reached (a lower bound of the real one)."""
    seconds = as_float(row.get("ours_s"))
    if row.get("ours_status") != TIMEOUT or not _timed(row, "slow") or not seconds > 0:
        return None
    return seconds / as_float(row["slow_s"])


def _breakdown(row: dict[str, Any], ratio: Any) -> dict[str, float]:
    """``ratio`` (ours over slow mode's time) as the product of ``calls_over_slow``, how many
    times as often check_function called the function, and ``per_call_over_slow``, its time
    per call over slow mode's; empty without both counts."""
    ours, slow = as_float(row.get("ours_calls")), as_float(row.get("slow_calls"))
    if not (ours > 0 and slow > 0):
        return {}
    return {"calls_over_slow": ours / slow, "per_call_over_slow": as_float(ratio) * slow / ours}


SMALL_INPUT = 49
"""Inputs of at most this many elements: torch's slow mode needs two calls per element, so
check_function's fixed part (two backward passes, the purity check, the noise measurement, the
float64 problem) outweighs them."""
NO_REASON = "no reason found"
"""How :func:`slow_reason` begins when none of its explanations applies."""


def slow_reason(entry: dict[str, Any]) -> str:
    """Why a sample is more than :data:`OVER` times slower than torch's slow mode, from what its
    row measured: vmap refused fn (``ours_vmap_refused``: every point a call of its own), an
    input is a view into a larger storage (``ours_views``: never batched), vmap loops over an op
    without a batching rule (``ours_vmap_loops``), or the input is small (:data:`SMALL_INPUT`);
    else :data:`NO_REASON` with the calls' ratio and the time per call's (and the other
    timing's ratio where the benchmark timed the sample twice: ``other_ratio_slow``)."""
    split = _breakdown(entry, entry.get("ratio_slow", row_ratio(entry, "slow")))
    calls, per_call = split.get("calls_over_slow"), split.get("per_call_over_slow")
    refused = str(entry.get("ours_vmap_refused") or "")
    if refused:
        return (
            f"point by point: vmap refused fn ({refused}), so every point is a call of its own "
            f"({times(calls)} slow mode's calls)"
        )
    if entry.get("ours_views"):
        return (
            "point by point: an input is a view into a larger storage, whose layout fn may read, "
            f"so its points are never batched ({times(calls)} slow mode's calls)"
        )
    loops = str(entry.get("ours_vmap_loops") or "")
    if loops:
        return (
            f"vmap has no batching rule for {loops}, so each batch runs it slice by slice "
            f"({times(per_call)} slow mode's time per call)"
        )
    numel = as_float(entry.get("numel"))
    if math.isfinite(numel) and numel <= SMALL_INPUT:
        return (
            f"a small input ({numel:.0f} elements): slow mode's {entry.get('slow_calls', '?')} "
            "calls cost less than check_function's fixed part (two backward passes, the purity "
            "check, the noise measurement)"
        )
    if not split:
        return f"{NO_REASON} (no call counts recorded)"
    again = entry.get("other_ratio_slow")
    twice = f"; timed twice, the other timing {times(again)}" if again is not None else ""
    return f"{NO_REASON} ({times(calls)} the calls, {times(per_call)} the time per call{twice})"


def _why_left_out(row: dict[str, Any]) -> str:
    for side, label in (("ours", "check_function"), ("slow", "torch slow mode")):
        status = row.get(f"{side}_status")
        if status in NOT_TIMED:
            message = str(row.get(f"{side}_message") or "").strip()
            return f"{label}: {status}" + (f" ({message})" if message else "")
    return "no positive time on one side"


def ratio_summary(rows: Iterable[dict[str, Any]], *, over: float = OVER) -> dict[str, Any]:
    """The ``extra_info`` of a speed benchmark from its rows, one per sample, each with ``name``,
    ``ours_s``, ``slow_s``, ``fast_s`` (CPU seconds) and ``ours_status``, ``slow_status``,
    ``fast_status`` (any other key, such as the sizes or the calls of the function, is kept in
    the rows listed).

    ``ours_over_{slow,fast}_{median,q1,q3,min,max}`` summarise our time over each mode's on the
    samples where both finished (``timed_{slow,fast}`` of them). ``over_3x_slow`` lists, worst
    first, every sample more than ``over`` times slower than the slow mode, with ``ratio_slow``
    and ``ratio_fast``, and each sample where check_function ran out of its budget while the slow
    mode finished (``lower_bound``: the ratio it had reached); where the rows count calls, the
    slow ratio is split into ``calls_over_slow`` and ``per_call_over_slow``, and each has its
    ``reason`` (:func:`slow_reason`; ``over_3x_without_reason`` counts those it found none
    for). ``left_out`` names
    the other samples without a ratio to the slow mode and why; ``{ours,slow,fast}_s_total`` add
    up the samples where all three finished."""
    rows = list(rows)
    summary: dict[str, Any] = {"samples": len(rows), "over": over}
    for peer in PEERS:
        ratios = [r for r in (row_ratio(row, peer) for row in rows) if r is not None]
        summary[f"timed_{peer}"] = len(ratios)
        for stat, value in quartiles(ratios).items():
            summary[f"ours_over_{peer}_{stat}"] = value
    listed, left_out = [], []
    for row in rows:
        ratio, bound = row_ratio(row, "slow"), _lower_bound(row)
        if ratio is None and bound is None:
            left_out.append({"name": row.get("name", ""), "why": _why_left_out(row)})
        elif (ratio if ratio is not None else bound) > over:  # type: ignore[operator]
            listed.append(
                {
                    **row,
                    "ratio_slow": ratio if ratio is not None else bound,
                    "ratio_fast": row_ratio(row, "fast"),
                    "lower_bound": ratio is None,
                    **_breakdown(row, ratio if ratio is not None else bound),
                }
            )
            listed[-1]["reason"] = slow_reason(listed[-1])
    listed.sort(key=lambda entry: -entry["ratio_slow"])
    summary["over_3x_slow"] = listed
    summary["over_3x_without_reason"] = sum(e["reason"].startswith(NO_REASON) for e in listed)
    summary["left_out"] = left_out
    complete = [r for r in rows if all(_timed(r, side) for side in ("ours", *PEERS))]
    for side in ("ours", *PEERS):
        summary[f"{side}_s_total"] = sum(as_float(r[f"{side}_s"]) for r in complete)
    return summary


def _versus_sentence(work: str, info: dict[str, Any]) -> str:
    """``check_function / torch slow: median 7.9x (quartiles 4.1x to 13.2x, range ...) over 40
    OpInfo samples; / torch fast: ...``."""
    parts = []
    for peer in PEERS:
        count = info.get(f"timed_{peer}") or 0
        if not count:
            parts.append(f"torch {peer}: no sample timed")
            continue
        stat = {s: times(info.get(f"ours_over_{peer}_{s}")) for s in STATS}
        parts.append(
            f"torch {peer}: median {stat['median']} (quartiles {stat['q1']} to {stat['q3']}, "
            f"range {stat['min']} to {stat['max']}) over {count} {work}"
        )
    return "check_function / " + "; check_function / ".join(parts) + "."


def _listed_row(entry: dict[str, Any]) -> dict[str, Any]:
    """A row of a speed table: the sample, sizes, the three times, the ratios, how often each
    side called the function, and the slow-mode ratio split into calls and time per call."""
    ratio = entry.get("ratio_slow", row_ratio(entry, "slow"))
    split = _breakdown(entry, ratio)
    sides = ("ours", *PEERS)
    return {
        "name": str(entry.get("name", "")),
        "sizes": str(entry.get("sizes", "")),
        "numel": entry.get("numel"),
        "ours_s": entry.get("ours_s"),
        "slow_s": entry.get("slow_s"),
        "fast_s": entry.get("fast_s"),
        "ratio_slow": ("≥ " if entry.get("lower_bound") else "") + times(ratio),
        "ratio_fast": times(entry.get("ratio_fast", row_ratio(entry, "fast"))),
        "calls": " / ".join(str(entry.get(f"{side}_calls", "-")) for side in sides),
        "calls_over_slow": times(split.get("calls_over_slow")),
        "per_call_over_slow": times(split.get("per_call_over_slow")),
        "status": " / ".join(str(entry.get(f"{side}_status", "-")) for side in sides),
        "reason": str(
            entry.get("reason") or (slow_reason(entry) if as_float(ratio) > OVER else "")
        ),
    }


def _versus(bench: dict[str, Any]) -> dict[str, Any]:
    """A speed benchmark's finding: its sentences and the rows it lists (every row it kept, or
    the samples over 3x slower than slow mode)."""
    info = bench.get("extra_info") or {}
    work = str(info["versus_torch"])
    listed = info.get("rows") or info.get("over_3x_slow") or []
    over = as_float(info.get("over", OVER))
    if info.get("rows"):
        caption = f"every one of the {len(listed)} {work}"
    else:
        caption = f"{len(listed)} of {info.get('samples', 0)} {work} more than {over:g}x slower "
        caption += "than torch slow mode"
        unexplained = info.get("over_3x_without_reason")
        if unexplained is not None:
            caption += f", {unexplained} of them without a reason found"
    sentences = [_versus_sentence(work, info)]
    if info.get("selection"):
        sentences.append(f"Samples: {info['selection']}.")
    left_out = info.get("left_out") or []
    if left_out:
        named = "; ".join(f"{e.get('name', '')}: {e.get('why', '')}" for e in left_out[:10])
        more = f"; and {len(left_out) - 10} more" if len(left_out) > 10 else ""
        sentences.append(f"Without a ratio to torch slow mode ({len(left_out)}): {named}{more}.")
    return {
        "kind": "versus",
        "title": f"check_function against torch.autograd.gradcheck on {work}",
        "benchmark": str(bench.get("name", "")),
        "sentences": sentences,
        "caption": caption,
        "rows": [_listed_row(entry) for entry in listed],
    }


def _memory(benches: list[dict[str, Any]]) -> dict[str, Any]:
    """The memory benchmarks of one function, by size: their rows and one sentence each."""
    rows = []
    for bench in sorted(
        benches, key=lambda b: as_float((b.get("extra_info") or {}).get("elements"))
    ):
        info = bench.get("extra_info") or {}
        rows.append(
            {
                "name": str(bench.get("name", "")),
                "elements": _count(info.get("elements")),
                "input": _bytes(info.get("input_bytes")),
                "status": str(info.get("status", "")),
                "wall_s": info.get("wall_s"),
                "cpu_s": info.get("cpu_s"),
                "peak": _bytes(info.get("peak_increase_bytes")),
                "peak_over_input": times(info.get("peak_over_input")),
                "fast_cpu_s": info.get("torch_fast_cpu_s"),
                "fast_peak": _bytes(info.get("torch_fast_peak_increase_bytes")),
                "fast_peak_over_input": times(info.get("torch_fast_peak_over_input")),
                "cpu_over_fast": times(info.get("cpu_over_torch_fast")),
                "floor_peak_over_input": times(info.get("autograd_once_peak_over_input")),
            }
        )
    what = str((benches[0].get("extra_info") or {}).get("memory_of", ""))
    sentences = [
        f"{row['elements']} elements: check_function {_seconds(row['cpu_s'])} of CPU, peak "
        f"memory up {row['peak']}: {row['peak_over_input']} the input's {row['input']} "
        f"(torch fast mode: {_seconds(row['fast_cpu_s'])}, {row['fast_peak_over_input']}"
        + (
            f"; one forward and backward of the function alone: {row['floor_peak_over_input']}"
            if row["floor_peak_over_input"] != times(None)
            else ""
        )
        + ")."
        for row in rows
    ]
    return {
        "kind": "memory",
        "title": f"Time and peak memory of check_function on {what}",
        "sentences": sentences,
        "rows": rows,
    }


def _model(benches: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A group's check_module against its per-tensor fast-mode peer, or None without both."""
    by_judge = {(b.get("extra_info") or {}).get("judge"): b for b in benches}
    peer, judge = by_judge.get(MODEL_PEER), by_judge.get(MODEL_JUDGE)
    if peer is None or judge is None:
        return None
    info = peer.get("extra_info") or {}
    ours = as_float((judge.get("stats") or {}).get("mean"))
    total = as_float(info.get("full_run_s", (peer.get("stats") or {}).get("mean")))
    ratio = info.get(MODEL_RATIO, total / ours if ours > 0 else math.nan)
    return {
        "kind": "model",
        "title": str(peer.get("group") or "whole model"),
        "sentences": [
            f"torch.autograd.gradcheck(fast_mode=True) per tensor / check_module: {times(ratio)} "
            f"(the peer's estimated total {_seconds(total)} over check_module's "
            f"{_seconds(ours)}; {info.get('tensors', '?')} tensors, capped tensors extrapolated)."
        ],
        "rows": [],
    }


def speed_findings(benchmarks: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the report says about speed and memory, one finding per speed benchmark (its
    sentences, and the rows of its table: every sample listed), one for the memory benchmarks
    of each function, and one per whole-model group holding check_module and its peer."""
    benchmarks = list(benchmarks)
    findings = [_versus(b) for b in benchmarks if (b.get("extra_info") or {}).get("versus_torch")]
    memory: dict[str, list[dict[str, Any]]] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    for bench in benchmarks:
        info = bench.get("extra_info") or {}
        if info.get("memory_of"):
            memory.setdefault(str(info["memory_of"]), []).append(bench)
        groups.setdefault(str(bench.get("group") or ""), []).append(bench)
    findings += [_memory(benches) for benches in memory.values()]
    models = (_model(benches) for benches in groups.values())
    return findings + [finding for finding in models if finding is not None]


def _count(value: Any) -> str:
    number = as_float(value)
    if not math.isfinite(number):
        return "?"
    exponent = round(math.log10(number)) if number > 0 else 0
    return f"1e{exponent}" if number == 10**exponent and exponent >= 3 else f"{number:,.0f}"


def _seconds(value: Any) -> str:
    """``0.0181 s``, ``13.8 s``, ``1,900 s``; ``-`` when absent."""
    number = as_float(value)
    if not math.isfinite(number):
        return "-"
    return f"{number:,.0f} s" if number >= 1000 else f"{number:.3g} s"


def _bytes(value: Any) -> str:
    number = as_float(value)
    if not math.isfinite(number):
        return "-"
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(number) >= size:
            return f"{number / size:.3g} {unit}"
    return f"{number:.0f} B"


def speed_lines(benchmarks: Iterable[dict[str, Any]]) -> list[str]:
    """:func:`speed_findings` as plain text lines, for the benchmarks' terminal summary."""
    lines: list[str] = []
    for finding in speed_findings(benchmarks):
        lines.append(f"{finding['title']}:")
        lines += [f"  {sentence}" for sentence in finding["sentences"]]
        if finding["kind"] == "versus" and finding["rows"]:
            lines.append(f"  {finding['caption']}:")
            lines += [
                f"    {row['name']} {row['sizes']}: ours {_seconds(row['ours_s'])}, slow "
                f"{_seconds(row['slow_s'])}, fast {_seconds(row['fast_s'])}, "
                f"{row['ratio_slow']} slow ({row['calls_over_slow']} the calls, "
                f"{row['per_call_over_slow']} the time per call), {row['ratio_fast']} fast; "
                f"calls {row['calls']}" + (f"; {row['reason']}" if row["reason"] else "")
                for row in finding["rows"]
            ]
    return lines
