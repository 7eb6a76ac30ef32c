"""The gradcheck pytest plugin: ``pytest --gradcheck-report PATH`` writes an HTML report and
its JSON (``PATH`` with ``.json``; a ``PATH`` ending in ``.json`` writes only the JSON).

Registered through the ``pytest11`` entry point, so it loads in every pytest run; without the
option it registers nothing beyond the option and a fixture, and imports neither torch, sympy
nor jinja2. With it, the plugin collects:

- every test's outcome, duration and failure text;
- every result the library's public checks return inside a test (``check_function``,
  ``check_values``, the semantics checks, ``run_scenario``, ``check_module``,
  ``check_device_parity``, ``check_against_reference``, ``check_compiled``), and anything a
  test hands to the ``gradcheck_report`` fixture;
- for each Hypothesis property, the calls of its body (passing, failing, invalid), counted by a
  wrapper around ``test.hypothesis.inner_test``, and the arguments of its last failing call
  (the shrunk example); never Hypothesis's statistics text;
- pytest-benchmark results when benchmarks ran; and the environment.

Under pytest-xdist each worker sends what it collected to the controller
(``workeroutput``), and the controller writes the one report. A worker that crashed sends
nothing: the report lists the tests that ran on it as having lost their recorded results.

A test that failed on a gradcheck error (``GradientMismatch``, ``InvalidArgument``, ...) keeps
the error's message first, then the test's own frames; pytest's full traceback is kept beside.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

import pytest

from gradcheck.jsonsafe import json_safe
from gradcheck.recording import listening
from gradcheck.status import ERROR, FAILURES, SKIPPED, XFAILED, XPASSED

PACKAGE = Path(__file__).resolve().parent
"""gradcheck's own source folder: frames inside it are not the test's."""

_STATE = pytest.StashKey["ReportState"]()
_WORKER_KEY = "gradcheck_report"
RECORDABLE = (
    "CheckResult",
    "SemanticsResult",
    "ScenarioResult",
    "ModuleCheckResult",
    "DeviceParityResult",
    "ReferenceCheckResult",
    "DistributedCheckResult",
)
"""The result types a report holds."""
_EXIT_MEANINGS = {2: "interrupted", 3: "internal error", 4: "usage error"}
MESSAGE_CHARS = 6000
"""Failure text kept per test (the end of pytest's long representation)."""
BENCHMARK_PLUGIN = "pytest-benchmark"
"""The name pytest-benchmark registers its ``BenchmarkSession`` under in the plugin manager."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheck", "gradcheck correctness report")
    group.addoption(
        "--gradcheck-report",
        metavar="PATH",
        default=None,
        help="write the gradcheck HTML report to PATH and its JSON beside it (PATH.json); "
        "a PATH ending in .json writes only the JSON",
    )


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("gradcheck_report")
    if path:
        _refuse_a_shared_json(config, Path(path))
        state = ReportState(config, Path(path))
        config.stash[_STATE] = state
        config.pluginmanager.register(state, "gradcheck-report-state")


def _refuse_a_shared_json(config: pytest.Config, path: Path) -> None:
    """A usage error when pytest-benchmark's ``--benchmark-json`` is the file the report's JSON
    goes to: one would overwrite the other at the end of the session. pytest-benchmark's option
    opens (and so empties) the file while pytest parses the command line, before any plugin can
    look; the message says so, and the handle is closed."""
    from gradcheck.report.files import json_path_beside

    opened = config.getoption("benchmark_json", None)  # argparse opened it: a file object
    name = getattr(opened, "name", opened)
    if not isinstance(name, str):
        return
    ours = path if path.suffix == ".json" else json_path_beside(path)
    if Path(name).resolve() == ours.resolve():
        if hasattr(opened, "close"):
            opened.close()
        raise pytest.UsageError(
            f"--benchmark-json {name} is where --gradcheck-report {path} writes its JSON. "
            f"pytest-benchmark opened {name} for writing while the command line was parsed, so "
            "it is now empty; rerun with another --benchmark-json file (for example "
            "pytest-benchmark.json) to get both"
        )


class Recorder:
    """What the ``gradcheck_report`` fixture gives a test: ``record(result)`` adds a result
    (CheckResult, ModuleCheckResult, ReferenceCheckResult, ...) to the report. Without
    ``--gradcheck-report`` it does nothing."""

    def __init__(self, state: ReportState | None, nodeid: str) -> None:
        self._state = state
        self._nodeid = nodeid

    @property
    def active(self) -> bool:
        """True when a report is being written."""
        return self._state is not None

    def record(self, result: Any) -> None:
        """Add ``result`` to the report, attributed to this test."""
        if type(result).__name__ not in RECORDABLE:
            from gradcheck.errors import InvalidArgument

            raise InvalidArgument(
                f"gradcheck_report.record() takes a gradcheck result ({', '.join(RECORDABLE)}), "
                f"got {type(result).__name__}; record what a gradcheck check returned"
            )
        if self._state is not None:
            self._state.record(self._nodeid, result)


@pytest.fixture
def gradcheck_report(request: pytest.FixtureRequest) -> Recorder:
    """Record results into the gradcheck report explicitly: ``gradcheck_report.record(r)``."""
    return Recorder(request.config.stash.get(_STATE, None), request.node.nodeid)


def _outcome(report: pytest.TestReport) -> str | None:
    """The outcome this phase report settles, in pytest-html's vocabulary (None: no news)."""
    wasxfail = hasattr(report, "wasxfail")
    if report.when == "call":
        if wasxfail:
            return XFAILED if report.skipped else XPASSED
        return report.outcome
    if report.failed:
        return ERROR
    if report.skipped:
        return XFAILED if wasxfail else SKIPPED
    return None


class ReportState:
    """Everything collected for one report; kept in ``config.stash`` and registered as a plugin
    so its hooks run only when the report was asked for."""

    def __init__(self, config: pytest.Config, path: Path) -> None:
        self.config = config
        self.path = path
        self.started = time.perf_counter()
        self.is_worker = hasattr(config, "workerinput")
        self.tests: dict[str, dict[str, Any]] = {}
        self.per_test: dict[str, dict[str, Any]] = {}
        self.scenarios: list[dict[str, Any]] = []
        self.models: list[dict[str, Any]] = []
        self.parity: list[dict[str, Any]] = []
        self.references: list[dict[str, Any]] = []
        self.tallies: dict[str, Any] = {}
        self.worker_hypothesis: dict[str, Any] = {}
        self._recorded: dict[str, list[Any]] = {}  # this test's results, to record each once
        self.ran_on: dict[str, list[str]] = {}  # xdist worker id -> the tests it reported
        self.lost_workers: list[dict[str, Any]] = []

    # -- collecting, on whichever process runs the test -------------------------------------
    def record(self, nodeid: str, result: Any) -> None:
        """File one published result under the test ``nodeid``; a result already filed there
        (published by the check, then handed to ``gradcheck_report.record``) counts once."""
        seen = self._recorded.setdefault(nodeid, [])
        if any(result is earlier for earlier in seen):
            return
        seen.append(result)
        sections = {
            "ScenarioResult": self.scenarios,
            "ModuleCheckResult": self.models,
            "DeviceParityResult": self.parity,
            "ReferenceCheckResult": self.references,
            "DistributedCheckResult": self.references,
        }
        section = sections.get(type(result).__name__)
        if section is not None:
            section.append({**result.to_dict(), "origin": nodeid})
            return
        from gradcheck.report.document import CheckTally

        self.tallies.setdefault(nodeid, CheckTally()).add(result)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: object) -> Any:
        with listening(lambda result: self.record(item.nodeid, result)):
            yield
        self._recorded.pop(item.nodeid, None)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Any:
        from gradcheck.property_calls import NOT_COUNTED, counting_calls

        fixtures = getattr(item, "funcargs", {})
        ends_the_test = (*NOT_COUNTED, pytest.skip.Exception)
        with counting_calls(getattr(item, "obj", None), fixtures, ends_the_test) as calls:
            yield
        if calls is not None:
            extra = self.per_test.setdefault(item.nodeid, {})
            extra["hypothesis"] = calls.to_dict()
            if calls.last_failing_call:
                extra["falsifying_example"] = calls.last_failing_call

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        yield
        if call.when == "call" and call.excinfo is not None:
            opening = gradcheck_error_text(call.excinfo, item.path)
            if opening:
                self.per_test.setdefault(item.nodeid, {})["gradcheck_error"] = opening

    # -- outcomes, on the controller ----------------------------------------------------------
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        worker = _worker_id(getattr(report, "node", None))
        if worker is not None:
            ran = self.ran_on.setdefault(worker, [])
            if report.nodeid not in ran:
                ran.append(report.nodeid)
        entry = self.tests.setdefault(
            report.nodeid,
            {  # until a call (or skip) report says otherwise: a test that never finished
                "nodeid": report.nodeid,
                "outcome": ERROR,
                "duration_s": 0.0,
                "message": "the test did not finish (the run was interrupted or crashed)",
            },
        )
        entry["duration_s"] += report.duration
        outcome = _outcome(report)
        if outcome is None:
            return
        if report.when == "call":
            entry["message"] = ""  # it finished; the placeholder goes
        earlier_failure = report.when == "teardown" and entry["outcome"] in FAILURES
        if report.failed or report.skipped:
            text = report.longreprtext
            if report.skipped and hasattr(report, "wasxfail"):
                text = f"xfail: {report.wasxfail}"
            elif report.skipped and isinstance(report.longrepr, tuple):
                text = str(report.longrepr[2])
            if earlier_failure:  # keep the call's failure and add the teardown's
                text = f"{entry['message']}\n--- and in teardown ---\n{text}"
            entry["message"] = text[-MESSAGE_CHARS:]
        if not earlier_failure:
            entry["outcome"] = outcome

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.tests[report.nodeid or "<collection>"] = {
                "nodeid": report.nodeid or "<collection>",
                "outcome": ERROR,
                "duration_s": 0.0,
                "message": report.longreprtext[-MESSAGE_CHARS:],
            }

    # -- xdist: workers send, the controller merges -------------------------------------------
    def _collected(self) -> dict[str, Any]:
        per_test = {nodeid: dict(data) for nodeid, data in self.per_test.items()}
        for nodeid, tally in self.tallies.items():
            per_test.setdefault(nodeid, {})["checks"] = tally.to_dict()
        from gradcheck.report.environment import hypothesis_facts

        return {
            "hypothesis": hypothesis_facts(self.config.getoption("hypothesis_seed", None)),
            "per_test": per_test,
            "scenarios": self.scenarios,
            "models": self.models,
            "parity": self.parity,
            "references": self.references,
        }

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        payload = getattr(node, "workeroutput", {}).get(_WORKER_KEY)
        worker = _worker_id(node) or "?"
        ran = self.ran_on.pop(worker, [])
        if not payload:  # the worker crashed (or was killed) before it could send its results
            self.lost_workers.append({"worker": worker, "error": str(error or ""), "tests": ran})
            return
        data = json.loads(payload)
        for nodeid, extra in data["per_test"].items():
            self.per_test.setdefault(nodeid, {}).update(extra)
        self.scenarios += data["scenarios"]
        self.models += data["models"]
        self.parity += data["parity"]
        self.references += data["references"]
        self.worker_hypothesis.update(data["hypothesis"])

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker:
            self.config.workeroutput[_WORKER_KEY] = json.dumps(self._collected())  # type: ignore[attr-defined]
            return
        self.write(exitstatus)

    def _lost_results(self) -> list[dict[str, Any]]:
        """An error entry per crashed xdist worker; each test that ran on it is marked as having
        lost the results it recorded (they were never sent to the controller)."""
        entries = []
        for lost in self.lost_workers:
            for nodeid in lost["tests"]:
                if nodeid in self.tests:
                    self.tests[nodeid]["results_missing"] = f"worker {lost['worker']} crashed"
            names = "\n".join(f"  {nodeid}" for nodeid in lost["tests"]) or "  (none reported)"
            entries.append(
                {
                    "nodeid": f"<xdist worker {lost['worker']}>",
                    "suite": "tests",
                    "outcome": ERROR,
                    "duration_s": 0.0,
                    "message": f"xdist worker {lost['worker']} crashed "
                    f"({lost['error'] or 'no reason given'}); it never sent what its tests "
                    "recorded, so the results of these "
                    f"{len(lost['tests'])} tests are missing from this report:\n{names}",
                    "reproduce": "pytest " + " ".join(map(shlex.quote, lost["tests"][-1:])),
                }
            )
        return entries

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.is_worker:
            terminalreporter.write_sep("-", f"gradcheck report: {self.path}")

    def write(self, exitstatus: int) -> None:
        """Assemble the run document and write the JSON (and HTML) report atomically."""
        from gradcheck.report.document import finalize, new_document
        from gradcheck.report.environment import describe_environment
        from gradcheck.report.files import json_path_beside, write_atomically

        collected = self._collected()
        command = "pytest " + " ".join(shlex.quote(a) for a in self.config.invocation_params.args)
        document = new_document("pytest", title="pytest run", command=command.strip())
        seed = self.config.getoption("hypothesis_seed", None)
        document["environment"] = describe_environment(hypothesis_seed=seed)
        document["environment"].update(self.worker_hypothesis or collected["hypothesis"])
        document["profile"] = document["environment"].get("hypothesis_profile")
        document["exit_status"] = int(exitstatus)
        for nodeid, test in self.tests.items():
            extra = dict(collected["per_test"].get(nodeid, {}))
            opening = extra.pop("gradcheck_error", None)
            test.update(extra)
            if opening and test["outcome"] in FAILURES:
                test["traceback"] = test.get("message", "")
                test["message"] = opening
            test["suite"] = _suite_of(nodeid, extra)
            test["reproduce"] = f"pytest {shlex.quote(nodeid)}"
            document["tests"].append(test)
        document["tests"] += self._lost_results()
        document["scenarios"] = collected["scenarios"]
        document["models"] = collected["models"]
        document["parity"] = collected["parity"]
        document["references"] = collected["references"]
        document["benchmarks"] = benchmark_entries(self.config)
        if exitstatus not in (0, 1, 5):  # interrupted, internal error or usage error
            document["tests"].append(
                {
                    "nodeid": "<pytest session>",
                    "suite": "tests",
                    "outcome": ERROR,
                    "duration_s": 0.0,
                    "message": f"pytest exited with status {int(exitstatus)} "
                    f"({_EXIT_MEANINGS.get(int(exitstatus), 'unknown')}); this report is partial",
                    "reproduce": command,
                }
            )
        finalize(document, time.perf_counter() - self.started)
        text = json.dumps(document, indent=1)
        if self.path.suffix == ".json":
            write_atomically(self.path, text)
            return
        from gradcheck.report.render import render_report

        write_atomically(json_path_beside(self.path), text)
        write_atomically(self.path, render_report(document))


def _worker_id(node: Any) -> str | None:
    """The xdist worker id (``gw0``) of a worker controller, None for no worker."""
    gateway = getattr(node, "gateway", None)
    return None if gateway is None else str(getattr(gateway, "id", "?"))


def _inside_gradcheck(path: object) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(PACKAGE)
    except (OSError, ValueError):
        return False


def gradcheck_error_text(excinfo: pytest.ExceptionInfo[BaseException], test_file: Path) -> str:
    """For a test that raised a gradcheck error: its message first, then the frames from the
    test's file on (pytest's and gradcheck's internal ones left out), newest last. ``""`` for
    any other exception."""
    from gradcheck.errors import GradcheckError

    error = excinfo.value
    if not isinstance(error, GradcheckError):
        return ""
    frames = []
    for entry in excinfo.traceback.cut(path=test_file):
        if _inside_gradcheck(entry.path):
            continue
        try:
            statement = str(entry.statement).strip()
        except Exception:  # no source to show (a frame from exec or a compiled module)
            statement = ""
        frames.append(f"  {entry.path}:{entry.lineno + 1} in {entry.name}\n    {statement}")
    where = "\n".join(frames)
    return f"{type(error).__name__}: {error}" + (f"\n\nraised in:\n{where}" if where else "")


def _suite_of(nodeid: str, extra: dict[str, Any]) -> str:
    if "hypothesis" in extra:
        return "properties"
    if nodeid.startswith("benchmarks/"):
        return "benchmarks"
    return "tests"


def benchmark_entries(config: pytest.Config) -> list[dict[str, Any]]:
    """pytest-benchmark's results of this run (empty when it did not run or is absent): its
    ``BenchmarkSession``, found in the plugin manager under :data:`BENCHMARK_PLUGIN`."""
    session = config.pluginmanager.getplugin(BENCHMARK_PLUGIN)
    entries = []
    for bench in getattr(session, "benchmarks", None) or ():
        try:
            stats = bench.as_dict(include_data=False, flat=False)
        except Exception:  # an errored benchmark has no statistics; its test reports it
            continue
        numbers = stats.get("stats", {})
        entries.append(
            {
                "name": stats.get("name", ""),
                "fullname": stats.get("fullname", ""),
                "group": stats.get("group"),
                "params": json_safe(stats.get("params")),
                "extra_info": json_safe(stats.get("extra_info") or {}),
                "stats": {
                    key: numbers.get(key)
                    for key in (
                        "min",
                        "max",
                        "mean",
                        "stddev",
                        "median",
                        "rounds",
                        "iterations",
                        "ops",
                    )
                },
            }
        )
    return entries
