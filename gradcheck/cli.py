"""The ``gradcheck`` command.

``gradcheck run`` checks every scenario in the catalog against each of its oracles, prints one
table row per check, writes all results as JSON (atomically) and exits non-zero when any check
did not come out as its scenario expects: a correct gradient that fails, or a planted bug that
goes undetected.
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

DEFAULT_JSON = Path("reports") / "gradcheck-results.json"


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


def _verdict(expect: str, status: str, matches: bool) -> str:
    if expect == "fail":
        return "bug caught" if matches else "BUG MISSED"
    return "ok" if matches else status.upper()


def run(keyword: str | None, json_path: Path, seed: int) -> int:
    """Run the catalog (scenario ids containing ``keyword``), print the table, save JSON."""
    import torch

    from gradcheck.scenarios import CATALOG, outcome_matches, run_scenario

    chosen = [s for s in CATALOG.values() if keyword is None or keyword in s.id]
    if not chosen:
        print(f"gradcheck run: no scenario id contains {keyword!r}", file=sys.stderr)
        return 2
    print(f"gradcheck run: {len(chosen)} scenarios, torch {torch.__version__}, seed {seed}")
    header = f"{'scenario':<42} {'oracle':<18} {'expect':<6} {'verdict':<11} {'max rel err':>11}"
    print(header + f" {'kinks':>5} {'time':>7}")
    print("-" * (len(header) + 14))
    records, unexpected, started = [], 0, time.perf_counter()
    for scenario in chosen:
        for result in run_scenario(scenario, seed=seed):
            matches = outcome_matches(scenario, result)
            unexpected += not matches
            verdict = _verdict(scenario.expect, result.status, matches)
            print(
                f"{scenario.id:<42} {result.oracle:<18} {scenario.expect:<6} {verdict:<11} "
                f"{result.max_rel_error:>11.2e} {len(result.kinks):>5} {result.duration_s:>6.2f}s"
            )
            if not matches:
                print("    " + result.message.replace("\n", "\n    "))
            records.append(
                {"scenario": scenario.id, "expect": scenario.expect, "matches": matches}
                | {"result": result.to_dict()}
            )
    elapsed = time.perf_counter() - started
    payload = {"torch": torch.__version__, "seed": seed, "checks": records}
    _write_atomically(json_path, json.dumps(payload, indent=2))
    total = len(records)
    print("-" * (len(header) + 14))
    print(
        f"{total - unexpected} of {total} checks as expected, {unexpected} unexpected, "
        f"in {elapsed:.1f}s; results: {json_path}"
    )
    return 1 if unexpected else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gradcheck`` command."""
    parser = argparse.ArgumentParser(prog="gradcheck", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="check every scenario and print a table")
    run_parser.add_argument("-k", dest="keyword", help="only scenarios whose id contains this")
    run_parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    run_parser.add_argument("--seed", type=int, default=0, help="seed for cotangents (default 0)")
    arguments = parser.parse_args(argv)
    if arguments.seed < 0:
        parser.error(f"--seed must be >= 0, got {arguments.seed}")
    return run(arguments.keyword, arguments.json, arguments.seed)


if __name__ == "__main__":
    sys.exit(main())
