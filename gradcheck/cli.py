"""The ``gradcheck`` command.

``gradcheck run`` proves every scenario in the catalog, prints one table row per claim, writes
all results as JSON (atomically) and exits non-zero when any claim does not hold: a correct
gradient that fails, a notebook value that does not reproduce, or a planted bug that goes
undetected. ``gradcheck list`` prints the catalog. ``gradcheck model NAME`` checks every
parameter tensor of a torchvision model with :func:`gradcheck.check_module`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gradcheck.results import Claim

DEFAULT_JSON = Path("reports") / "gradcheck-results.json"
BAR_WIDTH = 30
STATUSES = ("passed", "failed", "skipped")


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _select(keyword: str | None) -> list:
    from gradcheck.scenarios import CATALOG

    return [s for s in CATALOG.values() if keyword is None or keyword in s.id]


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


def run(keyword: str | None, json_path: Path, seed: int) -> int:
    """Run the catalog (scenario ids containing ``keyword``), print the table, save JSON."""
    import torch

    from gradcheck.scenarios import run_scenario

    chosen = _select(keyword)
    if not chosen:
        print(f"gradcheck run: no scenario id contains {keyword!r}", file=sys.stderr)
        return 2
    print(f"gradcheck run: {len(chosen)} scenarios, torch {torch.__version__}, seed {seed}")
    header = f"{'scenario':<32} {'claim':<62} {'judges':<24} {'verdict':<7} {'max rel err':>11}"
    print(header)
    print("-" * len(header))
    results, started = [], time.perf_counter()
    for scenario in chosen:
        result = run_scenario(scenario, seed=seed)
        results.append(result)
        if not result.claims:
            print(f"{scenario.id:<32} {result.status.upper()}: {result.reason}")
        for row, claim in enumerate(result.claims):
            shown = _clip(scenario.id, 32) if row == 0 else ""
            print(
                f"{shown:<32} {_clip(claim.statement, 62):<62} {_clip(_judges(claim), 24):<24} "
                f"{'ok' if claim.passed else 'FAILED':<7} {_max_rel_error(claim):>11}"
            )
            if not claim.passed:
                print("    " + claim.detail.replace("\n", "\n    "))
        if result.claims and result.reason:
            print(f"    {result.reason}")
    elapsed = time.perf_counter() - started
    payload = {
        "torch": torch.__version__,
        "seed": seed,
        "scenarios": [result.to_dict() for result in results],
    }
    _write_atomically(json_path, json.dumps(payload, indent=2))
    counts = {status: sum(r.status == status for r in results) for status in STATUSES}
    claims = sum(len(r.claims) for r in results)
    print("-" * len(header))
    print(
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped "
        f"of {len(results)} scenarios ({claims} claims) in {elapsed:.1f}s; results: {json_path}"
    )
    for result in results:
        if result.status == "skipped":
            print(f"  skipped {result.id}: {result.reason}")
    return 1 if counts["failed"] else 0


def list_catalog(keyword: str | None) -> int:
    """Print the catalog: id, oracles, source topic and tags of every scenario."""
    chosen = _select(keyword)
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


def check_model(arguments: argparse.Namespace) -> int:
    """``gradcheck model``: build, check with a progress bar, print the per-layer table.

    Exit status 0 when every row passes, 1 when a row fails, 2 when none fails but some row is
    kink-affected or inconclusive.
    """
    import torch

    from gradcheck.errors import InvalidArgument
    from gradcheck.model import check_module
    from gradcheck.zoo import build_model

    dtype = getattr(torch, arguments.dtype)
    try:
        model, images = build_model(
            arguments.name,
            batch=arguments.batch,
            size=arguments.size,
            seed=arguments.seed,
            weights=arguments.weights,
        )
        started = time.perf_counter()
        result = check_module(
            model,
            images,
            dtype=dtype,
            device=arguments.device,
            parameters=arguments.parameters,
            mode=arguments.mode,
            directions=arguments.directions,
            seed=arguments.seed,
            progress=_progress_bar(started),
        )
    except InvalidArgument as exc:
        print(f"gradcheck model: {exc}", file=sys.stderr)
        return 2
    print(result.table())
    print(result.message)
    path = arguments.json or Path("reports") / f"model-{arguments.name}-{result.mode}.json"
    _write_atomically(path, result.to_json(indent=1))
    print(f"{result.evaluations} evaluations in {result.duration_s:.1f} s; results: {path}")
    return {"passed": 0, "failed": 1}.get(result.status, 2)


def _progress_bar(started: float):  # type: ignore[no-untyped-def]
    def show(row, done: int, total: int) -> None:  # type: ignore[no-untyped-def]
        filled = BAR_WIDTH * done // total
        mark = "" if row.passed else f"  {row.status.upper()}"
        line = (
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{total} "
            f"{time.perf_counter() - started:5.1f}s {row.name[:40]:<40}{mark}"
        )
        print(line, end="\n" if done == total or mark else "", file=sys.stderr, flush=True)

    return show


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` command."""
    parser = argparse.ArgumentParser(prog="gradcheck", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="check every scenario and print a table")
    run_parser.add_argument("-k", dest="keyword", help="only scenarios whose id contains this")
    run_parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    run_parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    list_parser = commands.add_parser("list", help="list the scenario catalog")
    list_parser.add_argument("-k", dest="keyword", help="only scenarios whose id contains this")
    model_parser = commands.add_parser(
        "model", help="check every parameter tensor of a torchvision model (check_module)"
    )
    model_parser.add_argument("name", help="torchvision model name, for example resnet18")
    model_parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    model_parser.add_argument("--mode", choices=("eval", "train"), default="eval")
    model_parser.add_argument("--batch", type=int, default=2, help="images per batch (2)")
    model_parser.add_argument("--size", type=int, default=64, help="image height and width (64)")
    model_parser.add_argument(
        "--dtype", choices=("float64", "float32"), default="float64", help="autograd dtype"
    )
    model_parser.add_argument("--directions", type=int, default=2, help="per tensor (2)")
    model_parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    model_parser.add_argument("--weights", type=Path, help="a local state_dict file to load")
    model_parser.add_argument(
        "--parameters", nargs="+", metavar="PATTERN", help="only these names or glob patterns"
    )
    model_parser.add_argument(
        "--json", type=Path, help="results file (default reports/model-NAME-MODE.json)"
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "model":
        return check_model(arguments)
    if arguments.command == "list":
        return list_catalog(arguments.keyword)
    if arguments.seed < 0:
        parser.error(f"--seed must be >= 0, got {arguments.seed}")
    return run(arguments.keyword, arguments.json, arguments.seed)


if __name__ == "__main__":
    sys.exit(main())
