"""The ``gradcheck`` command.

``gradcheck run`` runs the whole verification suite (scenarios, property tests, model checks,
device parity, and benchmarks with ``--bench``), shows progress, prints a summary table, writes
the HTML report and its JSON atomically, and exits non-zero when anything failed.
``gradcheck report merge`` turns several runs' JSON into one matrix. ``gradcheck list`` prints
the catalog; ``gradcheck model NAME`` checks every parameter tensor of a torchvision model
(:mod:`gradcheck.cli_model`); ``gradcheck ops`` compares check_function with
torch.autograd.gradcheck over torch's OpInfo database (:mod:`gradcheck.ops`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradcheck.status import CLAIM_MARKS, FAILED, PASSED, SKIPPED

if TYPE_CHECKING:
    from gradcheck.results import Claim
    from gradcheck.runner import RunOptions

DESCRIPTION = (
    "gradcheck: check autograd's gradients against independent oracles (run, list, report "
    "merge, model, ops)"
)
DEFAULT_REPORT = Path("reports") / "gradcheck-report.html"
BAR_WIDTH = 30
EXIT_STATUS = {PASSED: 0, FAILED: 1}
"""The exit status of a verdict; any other verdict (incomplete, empty) exits with 2."""


_SHORT_NAMES = {"finite_difference": "fd", "forward": "fwd"}


def _max_rel_error(claim: Claim) -> str:
    """The largest relative error against an oracle (printed numbers are excluded: their
    rounding is not an error)."""
    errors = [
        c.max_rel_error
        for c in claim.checks
        if c.oracle != "stated" and c.max_rel_error == c.max_rel_error
    ]
    return f"{max(errors):.2e}" if errors else "-"


def _judges(claim: Claim) -> str:
    names = dict.fromkeys(_SHORT_NAMES.get(c.oracle, c.oracle) for c in claim.checks)
    return ", ".join(names) or "observed"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "~"


def _print_claims(document: dict) -> None:
    """The per-claim table of ``gradcheck run --verbose``."""
    from gradcheck.results import ScenarioResult

    header = f"{'scenario':<32} {'claim':<62} {'judges':<24} {'verdict':<7} {'max rel err':>11}"
    print(header)
    print("-" * len(header))
    for entry in document["scenarios"]:
        result = ScenarioResult.from_dict(entry)
        if not result.claims:
            print(f"{result.id:<32} {result.status.upper()}: {result.reason}")
        for row, claim in enumerate(result.claims):
            shown = _clip(result.id, 32) if row == 0 else ""
            print(
                f"{shown:<32} {_clip(claim.statement, 62):<62} {_clip(_judges(claim), 24):<24} "
                f"{CLAIM_MARKS[claim.status]:<7} {_max_rel_error(claim):>11}"
            )
    print("-" * len(header))


def _progress_line(started: float):  # type: ignore[no-untyped-def]
    """A one-line progress display on stderr: section, bar, count, elapsed, current item."""
    interactive = sys.stderr.isatty()

    def show(section: str, done: int, total: int, label: str, ok: bool) -> None:
        filled = BAR_WIDTH * done // max(total, 1)
        mark = "" if ok else "  FAILED"
        line = (
            f"{section:<13} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} "
            f"{time.perf_counter() - started:6.1f}s {label[:60]:<60}{mark}"
        )
        last = done == total or not ok
        quarter = 4 * done // max(total, 1) != 4 * (done - 1) // max(total, 1)
        if interactive:
            print("\r" + line, end="\n" if last else "", file=sys.stderr, flush=True)
        elif last or quarter:  # a log file gets a line per quarter, not a carriage return
            print(line, file=sys.stderr, flush=True)

    return show


def _summary_rows(document: dict) -> list[tuple[str, str, str]]:
    """(section, verdict counts, details) for the summary table."""
    summary = document["summary"]

    def counts(mapping: dict) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(mapping.items())) or "not run"

    def outcomes(suite: str) -> dict:
        return Counter(t["outcome"] for t in document["tests"] if t.get("suite") == suite)

    from gradcheck.report.document import examples_summary

    examples = examples_summary([t for t in document["tests"] if t.get("suite") == "properties"])
    rows = [
        ("scenarios", counts(summary["scenarios"]), f"claims: {counts(summary['claims'])}"),
        ("properties", counts(outcomes("properties")), examples),
        ("models", counts(summary["models"]), f"tensors: {counts(summary['model_rows'])}"),
        ("device parity", counts(summary["parity"]), ""),
        ("benchmarks", counts(outcomes("benchmarks")), f"{summary['benchmarks']} timed"),
    ]
    return rows + [(s["section"], SKIPPED, s["reason"]) for s in document["skipped"]]


def _run_sections(arguments: argparse.Namespace) -> tuple[str, ...]:
    """The sections ``gradcheck run`` was asked for: ``--only``'s, else all but benchmarks;
    with ``--bench``, benchmarks too."""
    from gradcheck.runner import SECTIONS

    sections = tuple(arguments.only or [s for s in SECTIONS if s != "benchmarks"])
    if arguments.bench and "benchmarks" not in sections:
        sections += ("benchmarks",)
    return sections


def _refusal(arguments: argparse.Namespace, sections: tuple[str, ...]) -> str | None:
    """Why ``gradcheck run`` cannot do what it was asked before anything runs (``--device cuda``
    without CUDA, a ``-k`` that selects nothing in the chosen sections), or None."""
    from gradcheck.runner import scenarios_matching

    if arguments.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            return (
                "gradcheck run: --device cuda, but CUDA is not available here "
                "(torch.cuda.is_available() is False); use --device cpu, or --device all to "
                "run the CPU checks and report the CUDA ones as skipped"
            )
    if arguments.keyword is None:
        return None
    if sections == ("scenarios",) and not scenarios_matching(arguments.keyword):
        return f"gradcheck run: no scenario id contains {arguments.keyword!r}"
    from gradcheck.runner import selects_anything

    if not selects_anything(arguments.keyword, sections, arguments.device, arguments.profile):
        return (
            f"gradcheck run: -k {arguments.keyword!r} selects nothing in "
            f"{', '.join(sections)} (no scenario, model or parity id contains it, and pytest "
            "-k collects no test); `gradcheck list` shows the scenario ids"
        )
    return None


def _run_options(arguments: argparse.Namespace, sections: tuple[str, ...]) -> RunOptions:
    """The :class:`~gradcheck.runner.RunOptions` of the parsed arguments, announced on stdout."""
    from gradcheck.runner import RUN_PROFILES, RunOptions, benchmark_json_beside

    options = RunOptions(
        profile=arguments.profile,
        device=arguments.device,
        keyword=arguments.keyword,
        seed=arguments.seed,
        sections=sections,
        benchmark_json=benchmark_json_beside(arguments.report),
    )
    print(
        f"gradcheck run: profile {options.profile} "
        f"({RUN_PROFILES[options.profile].description}), "
        f"device {options.device}, seed {options.seed}, sections {', '.join(sections)}",
        flush=True,
    )
    return options


def write_report(document: dict, report: Path) -> Path:
    """The HTML report at ``report`` and its JSON beside it, atomically; returns the JSON's
    path."""
    from gradcheck.report.files import json_path_beside, write_atomically
    from gradcheck.report.render import render_report

    json_path = json_path_beside(report)
    write_atomically(json_path, json.dumps(document, indent=1))
    write_atomically(report, render_report(document))
    return json_path


def _print_summary(document: dict, report: Path, json_path: Path) -> None:
    """The summary table, every failure with its reproduce command, and the verdict line."""
    from gradcheck.report.document import failures

    print()
    print(f"{'section':<14} {'verdicts':<40} details")
    print("-" * 100)
    for section, counts, extra in _summary_rows(document):
        print(f"{section:<14} {counts:<40} {extra}")
    print("-" * 100)
    for failure in failures(document):
        print(f"{failure['status'].upper()} {failure['section']}: {failure['title']}")
        if failure["detail"]:
            print("    " + _clip(failure["detail"], 2000).replace("\n", "\n    "))
        if failure["reproduce"]:
            print(f"    reproduce: {failure['reproduce']}")
    print(
        f"verdict: {document['verdict'].upper()} in {document['duration_s']:.1f} s; "
        f"report: {report} (data: {json_path})"
    )


def run(arguments: argparse.Namespace, command: str) -> int:
    """``gradcheck run``: the whole suite, a summary table, the HTML report and its JSON.

    Exit status 0 when everything passed, 1 when anything failed, 2 when nothing failed but
    something was undecided, or when the arguments select nothing.
    """
    from gradcheck.runner import run_suite

    sections = _run_sections(arguments)
    refusal = _refusal(arguments, sections)
    if refusal is not None:
        print(refusal, file=sys.stderr)
        return 2
    options = _run_options(arguments, sections)
    document = run_suite(options, _progress_line(time.perf_counter()), command)
    from gradcheck.report.document import ran_anything

    if not ran_anything(document) and not document["skipped"]:
        selection = f"-k {arguments.keyword!r} with " if arguments.keyword else ""
        print(
            f"gradcheck run: {selection}--only {' '.join(sections)} selected nothing",
            file=sys.stderr,
        )
        return 2
    if arguments.verbose:
        _print_claims(document)
    json_path = write_report(document, arguments.report)
    _print_summary(document, arguments.report, json_path)
    return EXIT_STATUS.get(document["verdict"], 2)


def list_catalog(keyword: str | None) -> int:
    """Print the catalog: id, oracles, source topic and tags of every scenario."""
    from gradcheck.runner import scenarios_matching

    chosen = scenarios_matching(keyword)
    if not chosen:
        print(f"gradcheck list: no scenario id contains {keyword!r}", file=sys.stderr)
        return 2
    header = f"{'id':<40} {'oracles':<38} {'topic (source)'}"
    print(header)
    print("-" * 120)
    for scenario in chosen:
        tags = f" [{', '.join(scenario.tags)}]" if scenario.tags else ""
        print(
            f"{scenario.id:<40} {', '.join(scenario.oracles):<38} "
            f"{scenario.topic} ({scenario.source}){tags}"
        )
    print(f"{len(chosen)} scenarios")
    return 0


def _add_run_parser(commands: Any) -> None:
    """``gradcheck run``'s options: device, profile, report, selection, seed, verbosity."""
    from gradcheck.runner import DEVICES, RUN_PROFILES, SECTIONS, default_profile

    run_parser = commands.add_parser(
        "run", help="run the whole verification suite and write the HTML report"
    )
    run_parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="cpu (default); cuda: model checks on the GPU and CPU-vs-CUDA parity; all: both",
    )
    run_parser.add_argument(
        "--profile",
        choices=tuple(RUN_PROFILES),
        default=default_profile(),
        help="how much to run: "
        + "; ".join(f"{name}: {p.description}" for name, p in RUN_PROFILES.items())
        + " (default dev, ci under CI=true)",
    )
    run_parser.add_argument(
        "--report",
        type=Path,
        default=DEFAULT_REPORT,
        metavar="PATH.html",
        help=f"HTML report (default {DEFAULT_REPORT}); the JSON goes beside it",
    )
    run_parser.add_argument(
        "-k",
        dest="keyword",
        metavar="TEXT",
        help="only ids containing TEXT (pytest -k TEXT for tests)",
    )
    run_parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"only these sections ({', '.join(SECTIONS)}; default: all but benchmarks)",
    )
    run_parser.add_argument("--bench", action="store_true", help="also run the benchmarks")
    run_parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    run_parser.add_argument(
        "-v", "--verbose", action="store_true", help="also print every notebook claim"
    )


def _add_list_parser(commands: Any) -> None:
    """``gradcheck list [-k TEXT]``."""
    list_parser = commands.add_parser("list", help="list the scenario catalog")
    list_parser.add_argument("-k", dest="keyword", help="only scenarios whose id contains this")


def _add_report_parser(commands: Any) -> None:
    """``gradcheck report merge FILES -o OUTPUT``."""
    report_parser = commands.add_parser("report", help="work with saved reports")
    report_commands = report_parser.add_subparsers(dest="report_command", required=True)
    merge_parser = report_commands.add_parser(
        "merge", help="merge runs' JSON into one HTML matrix (rows: checks, columns: runs)"
    )
    merge_parser.add_argument(
        "files",
        nargs="+",
        type=Path,
        help="run documents (.json), or folders whose *.json are merged",
    )
    merge_parser.add_argument(
        "-o", "--output", type=Path, required=True, help="matrix HTML (its JSON goes beside it)"
    )


def _add_ops_parser(commands: Any) -> None:
    """``gradcheck ops``'s options (:func:`gradcheck.ops.command.add_arguments`)."""
    from gradcheck.ops.command import add_arguments

    add_arguments(
        commands.add_parser(
            "ops",
            help="check_function and torch.autograd.gradcheck over torch's OpInfo database",
        )
    )


def _command_line(argv: Sequence[str] | None) -> str:
    """The command as typed, for the report's reproduce line."""
    return "gradcheck " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``gradcheck`` argument parser, one subcommand each: run, list, report, model, ops."""
    from gradcheck import __version__

    parser = argparse.ArgumentParser(prog="gradcheck", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"gradcheck {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run_parser(commands)
    _add_list_parser(commands)
    _add_report_parser(commands)
    from gradcheck.cli_model import add_model_parser

    add_model_parser(commands)
    _add_ops_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` command."""
    parser = build_parser()
    arguments = parser.parse_args(argv)
    if arguments.command == "model":
        from gradcheck.cli_model import check_model

        return check_model(arguments)
    if arguments.command == "list":
        return list_catalog(arguments.keyword)
    if arguments.command == "report":
        from gradcheck.cli_merge import merge_reports

        return merge_reports(arguments)
    if arguments.command == "ops":
        from gradcheck.ops.command import run_ops

        return run_ops(arguments, _command_line(argv), _progress_line(time.perf_counter()))
    if arguments.seed < 0:
        parser.error(f"--seed must be >= 0, got {arguments.seed}")
    from gradcheck.cli_merge import unusable_outputs

    unusable = unusable_outputs(arguments.report, "--report")
    if unusable is not None:
        print(f"gradcheck run: {unusable}", file=sys.stderr)
        return 2
    if arguments.report.suffix.lower() not in (".html", ".htm"):
        parser.error(f"--report must name an .html file, got {arguments.report}")
    return run(arguments, _command_line(argv))


if __name__ == "__main__":
    sys.exit(main())
