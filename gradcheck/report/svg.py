"""Inline SVG charts for the HTML report, written directly (no plotting library, no script).

Every text that reaches a chart (layer and benchmark names) is escaped here; the renderer
inserts the returned markup as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from gradcheck.report.document import as_float
from gradcheck.status import FAILED, INCONCLUSIVE, KINK_AFFECTED, PASSED

STATUS_COLOURS = {
    PASSED: "#1a7f37",
    FAILED: "#cf222e",
    KINK_AFFECTED: "#bc4c00",
    INCONCLUSIVE: "#8250df",
}
FLOOR = 1e-17
"""Where an exact zero is drawn on a log axis."""
FLAG_CHAR_PX = 6.0
"""Width of one character of a failed row's 10px name on a chart, with a little margin."""


def _decades(values: Sequence[float]) -> tuple[int, int]:
    finite = [v for v in values if math.isfinite(v) and v > 0]
    if not finite:
        return -16, 0
    low = math.floor(math.log10(min(finite)))
    high = math.ceil(math.log10(max(finite)))
    return low, max(high, low + 1)


def _shown(value: float) -> str:
    return "undecided" if value != value else ("0" if value == 0 else f"{value:.2e}")


def relative_tolerance(row: dict[str, Any]) -> float:
    """The tolerance of a model row as a relative error: ``allowed / |oracle|``."""
    oracle, allowed = as_float(row.get("oracle")), as_float(row.get("allowed"))
    if not math.isfinite(oracle) or oracle == 0 or not math.isfinite(allowed):
        return math.nan
    return allowed / abs(oracle)


class _LogPlot:
    """The frame both per-tensor charts share: one column per row, a log-scale y axis with a
    line and a label per decade, the row index under every twelfth column, axis titles, and
    the <svg> around it all (text escaped by the callers)."""

    HEIGHT, LEFT, RIGHT, TOP, BOTTOM = 310, 64, 16, 34, 44

    def __init__(self, count: int, values: Sequence[float], width: int, lowest: int) -> None:
        low, high = _decades(values)
        self.low, self.high = min(low, lowest), high
        self.width = width
        self.plot_w = width - self.LEFT - self.RIGHT
        self.plot_h = self.HEIGHT - self.TOP - self.BOTTOM
        self.step = self.plot_w / max(count, 1)
        self.count = count
        self._flags: list[tuple[float, float, float]] = []  # placed names: x from, x to, y

    def x(self, index: int) -> float:
        """The centre of row ``index``'s column."""
        return self.LEFT + self.step * (index + 0.5)

    def y(self, value: float) -> float:
        """Where ``value`` sits on the log axis (clamped to the axis' decades)."""
        value = min(max(value, 10.0**self.low), 10.0**self.high)
        return self.TOP + self.plot_h * (self.high - math.log10(value)) / (self.high - self.low)

    def bar(self, index: int, value: float) -> str:
        """A limit (a tolerance, an allowed error) as a grey bar across row ``index``."""
        half = max(self.step * 0.4, 1)
        cx, cy = self.x(index), self.y(value)
        return (
            f'<line x1="{cx - half:.1f}" x2="{cx + half:.1f}" y1="{cy:.1f}" y2="{cy:.1f}" '
            'stroke="#57606a" stroke-width="2"/>'
        )

    def opening(self, label: str) -> list[str]:
        """The <svg> tag, the plot's background and the decades."""
        top, left = self.TOP, self.LEFT
        parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" '
            f'height="{self.HEIGHT}" viewBox="0 0 {self.width} {self.HEIGHT}" role="img" '
            f'class="chart" aria-label="{escape(label)}">',
            f'<rect x="{left}" y="{top}" width="{self.plot_w}" height="{self.plot_h}" '
            'fill="#fafafa" stroke="#d0d7de"/>',
        ]
        for decade in range(self.low, self.high + 1):
            ty = self.y(10.0**decade)
            parts.append(
                f'<line x1="{left}" x2="{left + self.plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" '
                'stroke="#eaeef2"/>'
                f'<text x="{left - 6}" y="{ty + 4:.1f}" text-anchor="end" class="tick">'
                f"1e{decade}</text>"
            )
        return parts

    def flag(self, cx: float, cy: float, name: str) -> str:
        """A failed row's (escaped) name by its marker: to the left in the plot's right part,
        so it stays inside the chart, and lifted a line at a time until it clears the names
        already placed, so neighbouring failures do not print over each other."""
        right = cx > self.LEFT + 0.6 * self.plot_w
        x = cx - 5 if right else cx + 5
        span = len(name) * FLAG_CHAR_PX
        x0, x1 = (x - span, x) if right else (x, x + span)
        y = cy - 5
        while any(a < x1 and x0 < b and abs(y - other) < 11 for a, b, other in self._flags):
            y -= 12
        self._flags.append((x0, x1, y))
        anchor = ' text-anchor="end"' if right else ""
        return f'<text x="{x:.1f}" y="{y:.1f}"{anchor} class="flag">{name}</text>'

    def index_label(self, index: int) -> str:
        """Row ``index`` under its column, for every twelfth row; else ``""``."""
        if index % max(1, self.count // 12):
            return ""
        return (
            f'<text x="{self.x(index):.1f}" y="{self.TOP + self.plot_h + 14}" '
            f'text-anchor="middle" class="tick">{index}</text>'
        )

    def titles(self, x_title: str, y_title: str) -> str:
        """The two axis titles."""
        middle = self.TOP + self.plot_h / 2
        return (
            f'<text x="{self.LEFT + self.plot_w / 2:.0f}" y="{self.HEIGHT - 8}" '
            f'text-anchor="middle" class="axis">{escape(x_title)}</text>'
            f'<text x="14" y="{middle:.0f}" text-anchor="middle" class="axis" '
            f'transform="rotate(-90 14 {middle:.0f})">{escape(y_title)}</text>'
        )

    def legend(self, items: Sequence[tuple[str, str]]) -> str:
        """``(marker markup at x=0, text)`` pairs in a row above the plot."""
        parts, x = [], 0.0
        for marker, text in items:
            parts.append(f'<g transform="translate({x:.0f},0)">{marker}')
            parts.append(f'<text x="8" y="0">{escape(text)}</text></g>')
            x += 22 + len(text) * LABEL_CHAR_PX
        return (
            f'<g class="legend" transform="translate({self.LEFT + 8},{self.TOP - 12})">'
            + "".join(parts)
            + "</g>"
        )


def _dot(colour: str, filled: bool = True) -> str:
    fill = colour if filled else "none"
    return f'<circle cx="0" cy="-4" r="3.5" fill="{fill}" stroke="{colour}"/>'


_TOLERANCE_MARK = '<line x1="-4" x2="4" y1="-4" y2="-4" stroke="#57606a" stroke-width="2"/>'


def layer_error_chart(rows: Sequence[dict[str, Any]], *, width: int = 960) -> str:
    """Relative error of each row (dots, coloured by status) against its tolerance (grey
    bars), on a log scale, in forward order; failed rows are labelled by name, and every dot
    names its tensor in its ``<title>``. The legend sits above the plot, never on the data."""
    measured = [as_float(r.get("relative_error")) for r in rows]
    errors = [e if e > FLOOR else FLOOR for e in measured]  # 0 and NaN (undecided): the floor
    tolerances = [relative_tolerance(r) for r in rows]
    plot = _LogPlot(len(rows), [e for e in errors if e > FLOOR] + tolerances, width, -12)
    parts = plot.opening("relative error per tensor against its tolerance, log scale")
    for index, (row, error, tolerance) in enumerate(zip(rows, errors, tolerances)):
        cx, cy = plot.x(index), plot.y(error)
        name = escape(str(row.get("name", "")))
        status = str(row.get("status", ""))
        if math.isfinite(tolerance):
            parts.append(plot.bar(index, tolerance))
        colour = STATUS_COLOURS.get(status, "#57606a")
        fill = colour if error > FLOOR else "none"
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{fill}" '
            f'stroke="{colour}"><title>{name}: relative error {_shown(measured[index])}, '
            f"tolerance {_shown(tolerance)}, {escape(status)}</title></circle>"
        )
        if status == FAILED:
            parts.append(plot.flag(cx, cy, name))
        parts.append(plot.index_label(index))
    parts.append(plot.titles("row (forward order: input first, output last)", "relative error"))
    parts.append(
        plot.legend(
            [
                (_dot(STATUS_COLOURS[PASSED]), PASSED),
                (_dot(STATUS_COLOURS[FAILED]), FAILED),
                (_TOLERANCE_MARK, "tolerance"),
                (_dot(STATUS_COLOURS[PASSED], filled=False), "exactly 0"),
            ]
        )
        + "</svg>"
    )
    return "".join(parts)


REFERENCE_COLOUR = "#0969da"
"""The reference's own error in the low dtype (the yardstick) on the reference chart."""


def _square(cx: float, cy: float, colour: str, filled: bool, title: str = "") -> str:
    """A 6px square marker at ``(cx, cy)``; ``title`` (escaped already) becomes its tooltip and
    marks it as a row's reference error (``class="baseline"``)."""
    fill = colour if filled else "none"
    head = (
        f'<rect x="{cx - 3:.1f}" y="{cy - 3:.1f}" width="6" height="6" fill="{fill}" '
        f'stroke="{colour}"'
    )
    return f'{head} class="baseline"><title>{title}</title></rect>' if title else f"{head}/>"


def reference_error_chart(rows: Sequence[dict[str, Any]], *, width: int = 960) -> str:
    """A low-precision or compiled check, tensor by tensor in the rows' order: the
    implementation's normwise error against float64 (dots, coloured by status), the
    reference's own error in the same dtype (blue squares, joined to the dot by a thin line)
    and the allowed error (grey bars), on a log scale. Failed rows are labelled by name;
    every marker names its tensor in its ``<title>``; exact zeros sit hollow on the floor."""
    candidate = [as_float(r.get("candidate_error")) for r in rows]
    baseline = [as_float(r.get("baseline_error")) for r in rows]
    allowed = [as_float(r.get("allowed")) for r in rows]
    positive = [v for v in candidate + baseline + allowed if math.isfinite(v) and v > 0]
    lowest = math.floor(math.log10(min(positive))) - 1 if positive else -8
    plot = _LogPlot(len(rows), positive, width, lowest)
    parts = plot.opening(
        "normwise error per tensor against float64: the implementation's, the reference's own "
        "in the same dtype, and the allowed error; log scale"
    )
    for index, row in enumerate(rows):
        cx = plot.x(index)
        name = escape(str(row.get("name", "")))
        status = str(row.get("status", ""))
        colour = STATUS_COLOURS.get(status, "#57606a")
        ours, theirs, limit = candidate[index], baseline[index], allowed[index]
        text = (
            f"{name} ({escape(str(row.get('kind', '')))}): implementation {_shown(ours)}, "
            f"reference {_shown(theirs)}, allowed {_shown(limit)}, {escape(status)}"
        )
        if math.isfinite(limit):
            parts.append(plot.bar(index, limit))
        if not math.isnan(ours) and not math.isnan(theirs):
            parts.append(
                f'<line x1="{cx:.1f}" x2="{cx:.1f}" y1="{plot.y(theirs):.1f}" '
                f'y2="{plot.y(ours):.1f}" stroke="#8c959f" stroke-width="1"/>'
            )
        if not math.isnan(theirs):
            parts.append(_square(cx, plot.y(theirs), REFERENCE_COLOUR, theirs > 0, text))
        cy = plot.y(ours) if not math.isnan(ours) else plot.y(10.0**plot.high)
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" class="candidate" '
            f'fill="{colour if ours > 0 else "none"}" stroke="{colour}"><title>{text}'
            "</title></circle>"
        )
        if status == FAILED:
            parts.append(plot.flag(cx, cy, name))
        parts.append(plot.index_label(index))
    parts.append(plot.titles("row (inputs, parameters, outputs)", "error vs float64"))
    parts.append(
        plot.legend(
            [
                (_dot(STATUS_COLOURS[PASSED]), "implementation: passed"),
                (_dot(STATUS_COLOURS[FAILED]), FAILED),
                (_dot(STATUS_COLOURS[INCONCLUSIVE]), INCONCLUSIVE),
                (_square(0, -4, REFERENCE_COLOUR, True), "reference, same dtype"),
                (_TOLERANCE_MARK, "allowed"),
            ]
        )
        + "</svg>"
    )
    return "".join(parts)


def format_seconds(seconds: float) -> str:
    """``1.23 s``, ``45.6 ms``, ``789 µs``, ``12.0 ns``."""
    if not math.isfinite(seconds):
        return "n/a"
    if seconds == 0:
        return "0 s"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


BENCH_WIDTH, BENCH_LEFT, BENCH_ROW = 1180, 480, 22
"""Width of the benchmark charts, of their name column, and of one bar's row (px)."""
LABEL_FONT = "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace"
LABEL_CHAR_PX = 6.7
"""Width of one character of an 11px monospace label, with a little margin."""


def fit_label(text: str, chars: int) -> str:
    """``text`` cut in the middle to at most ``chars`` characters, an ellipsis marking the cut:
    the start names the test, the end (kept longer) its parameters."""
    if len(text) <= chars:
        return text
    if chars < 4:
        return text[: max(chars - 1, 0)] + "…"
    head = (chars - 1) // 3
    return text[:head] + "…" + text[len(text) - (chars - 1 - head) :]


def _name_label(x: float, y: float, name: str) -> str:
    """A bar's name, right-aligned at ``x``, fitted to the name column; the full name shows as
    the tooltip."""
    shown = fit_label(name, int((BENCH_LEFT - 16) / LABEL_CHAR_PX))
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="end" class="label" '
        f'font-family="{LABEL_FONT}">{escape(shown)}<title>{escape(name)}</title></text>'
    )


def _grouped_rows(
    benchmarks: Sequence[dict[str, Any]], top: int
) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, str]], int]:
    """The y of each benchmark's row, with a heading row before each group's first benchmark
    (benchmarks come sorted by group); and the y below the last row."""
    bars: list[tuple[int, dict[str, Any]]] = []
    headings: list[tuple[int, str]] = []
    y, previous = top, None
    for bench in benchmarks:
        group = str(bench.get("group") or "")
        if not bars or group != previous:
            headings.append((y, group or "(no group)"))
            y += BENCH_ROW
            previous = group
        bars.append((y, bench))
        y += BENCH_ROW
    return bars, headings, y


def _group_headings(headings: Sequence[tuple[int, str]], width: int) -> str:
    return "".join(
        f'<line x1="4" x2="{width - 4}" y1="{y + 2}" y2="{y + 2}" stroke="#d0d7de"/>'
        f'<text x="6" y="{y + 16}" class="group">'
        f"{escape(fit_label(group, int((width - 12) / LABEL_CHAR_PX)))}</text>"
        for y, group in headings
    )


def benchmark_chart(benchmarks: Sequence[dict[str, Any]], *, width: int = BENCH_WIDTH) -> str:
    """One horizontal bar per benchmark, under a heading per group: mean time per round (log
    scale), with min-max whiskers and the number printed at the end of the bar."""
    left, right, top = BENCH_LEFT, 90, 26
    means = [as_float((b.get("stats") or {}).get("mean")) for b in benchmarks]
    mins = [as_float((b.get("stats") or {}).get("min")) for b in benchmarks]
    maxes = [as_float((b.get("stats") or {}).get("max")) for b in benchmarks]
    low, high = _decades(means + mins + maxes)
    bars, headings, bottom = _grouped_rows(benchmarks, top)
    height = bottom + 30
    plot_w = width - left - right

    def x(value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            return float(left)
        return left + plot_w * (math.log10(value) - low) / (high - low)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="chart" '
        'aria-label="mean time per benchmark round, log scale">',
        _group_headings(headings, width),
    ]
    for decade in range(low, high + 1):
        tx = x(10.0**decade)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 6}" y2="{bottom}" '
            'stroke="#eaeef2"/>'
            f'<text x="{tx:.1f}" y="{top - 10}" text-anchor="middle" class="tick">'
            f"{escape(format_seconds(10.0**decade))}</text>"
        )
    for (y, bench), mean, low_t, high_t in zip(bars, means, mins, maxes):
        name = str(bench.get("name", ""))
        parts.append(
            _name_label(left - 8, y + 15, name)
            + f'<rect x="{left}" y="{y + 4}" width="{max(x(mean) - left, 1):.1f}" height="14" '
            f'fill="#0969da"><title>{escape(name)}: mean {escape(format_seconds(mean))}'
            "</title></rect>"
            f'<line x1="{x(low_t):.1f}" x2="{x(high_t):.1f}" y1="{y + 11}" y2="{y + 11}" '
            'stroke="#24292f"/>'
            f'<text x="{max(x(mean), x(high_t)) + 6:.1f}" y="{y + 15}" class="label">'
            f"{escape(format_seconds(mean))}</text>"
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" class="axis">'
        "mean time per round (bar), min to max (line); log scale</text></svg>"
    )
    return "".join(parts)


WELL_IMPLEMENTED = 2.0
"""Backward time over forward time of a well-implemented backward: two matrix products per
layer (the input's gradient and the weight's) against the forward's one."""


def backward_over_forward(bench: dict[str, Any]) -> float:
    """The benchmark's ``extra_info["backward_over_forward"]``; NaN when absent."""
    return as_float((bench.get("extra_info") or {}).get("backward_over_forward"))


def backward_forward_chart(
    benchmarks: Sequence[dict[str, Any]], *, width: int = BENCH_WIDTH
) -> str:
    """One horizontal bar per throughput benchmark (``backward_over_forward`` in its
    ``extra_info``), under a heading per group: backward time over forward time on a linear
    scale, the value printed, and a dashed reference line at 2x, a well-implemented backward.
    Empty when no benchmark has the ratio."""
    rows = [b for b in benchmarks if math.isfinite(backward_over_forward(b))]
    if not rows:
        return ""
    left, right, top = BENCH_LEFT, 70, 34
    ratios = [max(backward_over_forward(b), 0.0) for b in rows]
    high = max(3, math.ceil(max(ratios) * 1.05))
    tick = 1 if high <= 10 else math.ceil(high / 10)
    bars, headings, bottom = _grouped_rows(rows, top)
    height = bottom + 44
    plot_w = width - left - right

    def x(value: float) -> float:
        return left + plot_w * min(value, high) / high

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" class="chart" '
        'aria-label="backward time over forward time per throughput benchmark, '
        'against 2x for a well-implemented backward">',
        _group_headings(headings, width),
    ]
    for value in range(0, high + 1, tick):
        tx = x(value)
        parts.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 4}" y2="{bottom}" '
            'stroke="#eaeef2"/>'
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle" class="tick">'
            f"{value}x</text>"
        )
    for (y, bench), ratio in zip(bars, ratios):
        name = str(bench.get("name", ""))
        info = bench.get("extra_info") or {}
        detail = (
            f"{name}: backward {format_seconds(as_float(info.get('backward_s')))} over "
            f"forward {format_seconds(as_float(info.get('forward_s')))} = {ratio:.2f}x"
        )
        parts.append(
            _name_label(left - 8, y + 15, name)
            + f'<rect x="{left}" y="{y + 4}" width="{max(x(ratio) - left, 1):.1f}" height="14" '
            f'fill="#0969da"><title>{escape(detail)}</title></rect>'
            f'<text x="{x(ratio) + 6:.1f}" y="{y + 15}" class="label">{ratio:.2f}x</text>'
        )
    reference = x(WELL_IMPLEMENTED)
    label = "2x: a well-implemented backward"
    fits_right = reference + 4 + len(label) * LABEL_CHAR_PX < width
    anchor, label_x = ("start", reference + 4) if fits_right else ("end", reference - 4)
    parts.append(
        f'<line x1="{reference:.1f}" x2="{reference:.1f}" y1="{top - 20}" y2="{bottom}" '
        'stroke="#bc4c00" stroke-width="1.5" stroke-dasharray="5 3"/>'
        f'<text x="{label_x:.1f}" y="{top - 10}" text-anchor="{anchor}" class="reference">'
        f"{escape(label)}</text>"
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle" class="axis">'
        "backward time / forward time (medians of the timed steps); linear scale</text></svg>"
    )
    return "".join(parts)
