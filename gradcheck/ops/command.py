"""The body of ``gradcheck ops``: run :func:`~gradcheck.ops.check_ops`, print the summary
table and every disagreement, write the JSON and the HTML report, and choose the exit status
(0: nothing unexplained; 1: an unexplained disagreement or exception from check_function;
2: bad arguments or nothing selected)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gradcheck.ops.collect import Progress

WIDTH = 100


def _first_line(text: str) -> str:
    line = (str(text).strip().splitlines() or [""])[0]
    return line if len(line) <= WIDTH else line[: WIDTH - 1] + "~"


def _first_lines(text: str) -> str:
    """The first two lines of a message on one line."""
    return " | ".join(_first_line(line) for line in str(text).strip().splitlines()[:2])


def _row_line(row: Mapping[str, Any]) -> str:
    mark = "UNEXPLAINED " if row["unexplained"] else ("explained " if row["reason"] else "")
    ours, slow, fast = row["ours"], row["torch_slow"], row["torch_fast"]
    lines = [
        f"  {mark}{row['category']}: {row['key']} sample {row['sample']} {row['shapes']}",
        f"      ours: {ours['status']}: {_first_lines(ours['message'])}",
        f"      torch slow: {slow['status']} {_first_line(slow['message'])}".rstrip()
        + f"; fast: {fast['status']}",
    ]
    if row["reason"]:
        lines.append(f"      reason: {_first_line(row['reason'])}")
    return "\n".join(lines)


def _wrapped(items: list[str], indent: str = "      ") -> str:
    return textwrap.fill(" ".join(items), WIDTH, initial_indent=indent, subsequent_indent=indent)


def _print_others(rows: list[Mapping[str, Any]]) -> None:
    """Samples that are neither agreeing passes nor disagreements, one paragraph per class."""
    from gradcheck.ops.classify import AGREE_PASS, CLASSES, DISAGREEMENTS

    for name in CLASSES:
        chosen = [
            f"{r['key']}#{r['sample']}"
            for r in rows
            if r["category"] == name
            and name != AGREE_PASS
            and name not in DISAGREEMENTS
            and not r["reason"]
        ]
        if chosen:
            print(f"  {name} ({len(chosen)}):")
            print(_wrapped(chosen))


def print_summary(data: dict[str, Any]) -> None:
    """Counts per class and the median time ratio; the unexplained rows grouped by cause;
    every disagreement (unexplained first, then those with a known reason) in full; the other
    samples that are not agreeing passes by class. ``data`` is a result's ``to_dict()``."""
    from gradcheck.ops.classify import display_order

    summary = data["summary"]
    print()
    print(f"{'class':<32} {'samples':>8}")
    print("-" * 41)
    for name, count in summary["counts"].items():
        print(f"{name:<32} {count:>8}")
    print("-" * 41)
    print(
        f"{summary['samples']} samples of {summary['ops']} ops; {summary['skipped_ops']} ops "
        f"skipped; {summary['unexplained']} unexplained, {summary['explained']} explained"
    )
    ratio = summary["median_time_ratio"]
    peer = "gradgradcheck" if data["settings"].get("order", 1) == 2 else "gradcheck"
    if ratio is not None and ratio == ratio:
        print(
            f"median time, check_function / torch {peer} (slow): {float(ratio):.2f}x over "
            f"{summary['timed_samples']} samples"
        )
    if summary["causes"]:
        print("\nUnexplained, by cause:")
        for group in summary["causes"]:
            print(f"  {group['count']} {group['category']}: {group['cause']}")
            print(_wrapped(group["samples"]))
    by_place = {(r["key"], r["sample"]): r for r in data["rows"]}
    listed = [by_place[(d["key"], d["sample"])] for d in summary["disagreements"]]
    if listed:
        print("\nDisagreements, unexplained first:")
        for row in listed:
            print(_row_line(row))
    rest = [r for r in display_order(data["rows"]) if r not in listed]
    if any(r["category"] != "agree-pass" for r in rest):
        print("\nOther samples that are not agreeing passes:")
        _print_others(rest)


def write_outputs(document: dict[str, Any], arguments: argparse.Namespace) -> None:
    """The run document as JSON (``--json``) and the HTML report with the same document
    beside it (``--report``), each written atomically."""
    from gradcheck.report.files import json_path_beside, write_atomically
    from gradcheck.report.render import render_report

    text = json.dumps(document, indent=1)
    if arguments.json is not None:
        write_atomically(arguments.json, text)
    if arguments.report is not None:
        write_atomically(json_path_beside(arguments.report), text)
        write_atomically(arguments.report, render_report(document))


def run_ops(arguments: argparse.Namespace, command: str, progress: Progress) -> int:
    """``gradcheck ops``: check, print, write; the exit status."""
    from gradcheck.errors import InvalidArgument
    from gradcheck.ops.check import check_ops

    if arguments.report is not None and arguments.report.suffix.lower() not in (".html", ".htm"):
        print(
            f"gradcheck ops: --report must name an .html file, got {arguments.report}",
            file=sys.stderr,
        )
        return 2
    try:
        result = check_ops(
            arguments.op,
            samples=arguments.samples,
            dtype=arguments.dtype,
            device=arguments.device,
            seed=arguments.seed,
            timeout_s=arguments.timeout_s,
            jobs=arguments.jobs,
            isolate=not arguments.in_process,
            database=arguments.database,
            progress=progress,
            order=arguments.order,
        )
    except InvalidArgument as error:
        print(f"gradcheck ops: {error}", file=sys.stderr)
        return 2
    from gradcheck.report.environment import describe_environment
    from gradcheck.report.ops import ops_document

    data = result.to_dict()
    print_summary(data)
    write_outputs(
        ops_document(data, command=command, environment=describe_environment()), arguments
    )
    outputs = [str(p) for p in (arguments.json, arguments.report) if p is not None]
    verdict = "PASSED" if result.passed else "FAILED"
    print(
        f"verdict: {verdict} ({data['summary']['unexplained']} unexplained) in "
        f"{result.duration_s:.1f} s" + (f"; written: {', '.join(outputs)}" if outputs else "")
    )
    return 0 if result.passed else 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``gradcheck ops``'s options."""
    parser.add_argument(
        "--op",
        nargs="+",
        metavar="GLOB",
        help="only OpInfo entries whose name or name.variant matches a glob (default: all)",
    )
    parser.add_argument("--samples", type=int, default=3, help="samples per op (3)")
    parser.add_argument(
        "--dtype", choices=("float64", "float32", "complex128", "complex64"), default="float64"
    )
    parser.add_argument(
        "--order",
        type=int,
        choices=(1, 2),
        default=1,
        help="1: gradients vs torch.autograd.gradcheck (default); 2: second derivatives vs "
        "gradgradcheck",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument(
        "--timeout-s",
        type=float,
        default=20.0,
        metavar="S",
        help="budget of each check of a sample, in CPU seconds (20)",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="worker processes (1; each uses one CPU thread)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="run in this process (no worker: a hung C call cannot be stopped, a crash ends "
        "the run)",
    )
    parser.add_argument(
        "--database",
        metavar="MODULE:NAME",
        help="an importable list of OpInfo records to check instead of torch's op_db",
    )
    parser.add_argument("--report", type=Path, metavar="PATH.html", help="HTML report")
    parser.add_argument(
        "--json",
        type=Path,
        metavar="PATH",
        help="the run document as JSON (the result under 'ops'; --report writes it beside too)",
    )
