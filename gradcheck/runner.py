"""``gradcheck run``: the whole verification suite in one run document.

The sections, in order, each filtered by ``-k`` (a substring of the id; for property tests and
benchmarks, pytest's ``-k`` expression):

- ``scenarios``: every catalog scenario (notebook claims, known derivatives, planted bugs);
- ``properties``: the Hypothesis property tests in ``properties/``, run by pytest in a child
  process with the profile's Hypothesis profile (statistics come back through the plugin),
  alongside the scenarios and the models (its output is printed after theirs; the child is
  stopped if the run is);
- ``models``: :func:`gradcheck.check_module` on the profile's torchvision models, on each
  requested device (ids ``model/resnet18/eval/cpu``);
- ``parity``: :func:`gradcheck.check_device_parity` CPU vs CUDA, when CUDA is requested;
- ``benchmarks``: ``pytest benchmarks --benchmark-only``, only when asked for.

A section that cannot run here (no CUDA, torchvision or Hypothesis missing, no ``properties/``
folder next to the package) is listed under ``skipped`` with the reason and the fix; it never
counts as passed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck.environment_flags import running_in_ci
from gradcheck.report.document import RUN_ORIGIN, finalize, new_document
from gradcheck.report.environment import describe_environment
from gradcheck.report.files import json_path_beside
from gradcheck.status import FAILED, PASSED

SECTIONS = ("scenarios", "properties", "models", "parity", "benchmarks")
DEVICES = ("cpu", "cuda", "all")
INSTALL = "pip install -e '.[suite]' -c constraints/ci.txt"


@dataclass(frozen=True)
class Profile:
    """How much a run does: the Hypothesis profile, the models checked (name, mode) and the
    directions per tensor."""

    hypothesis: str
    models: tuple[tuple[str, str], ...]
    directions: int
    description: str


RUN_PROFILES = {
    "dev": Profile(
        "dev",
        (("resnet18", "eval"), ("resnet18", "train")),
        2,
        "15 examples per property, ResNet18 eval and train",
    ),
    "ci": Profile(
        "ci",
        (("resnet18", "eval"), ("resnet18", "train")),
        2,
        "40 examples per property (derandomized), ResNet18 eval and train",
    ),
    "thorough": Profile(
        "thorough",
        (("resnet18", "eval"), ("resnet18", "train"), ("mobilenet_v3_small", "train")),
        3,
        "400 examples per property, 3 directions per tensor, ResNet18 and MobileNetV3",
    ),
}
"""The ``--profile`` choices."""

Progress = Callable[[str, int, int, str, bool], None]
"""``progress(section, done, total, label, ok)``, called after each item."""


@dataclass(frozen=True)
class RunOptions:
    """What ``gradcheck run`` was asked for."""

    profile: str = "dev"
    device: str = "cpu"
    keyword: str | None = None
    seed: int = 0
    sections: tuple[str, ...] = SECTIONS[:4]
    benchmark_json: Path = Path("reports") / "benchmarks.json"
    """Where pytest-benchmark's own JSON goes (see :func:`benchmark_json_beside`)."""


def benchmark_json_beside(report: Path) -> Path:
    """Where ``gradcheck run --bench`` writing ``report`` puts pytest-benchmark's JSON:
    ``benchmarks.json`` beside it, or ``pytest-benchmark.json`` when the report's own JSON is
    ``benchmarks.json`` (``--report reports/benchmarks.html``), so neither overwrites the other."""
    beside = report.parent / "benchmarks.json"
    if beside.resolve() == json_path_beside(report).resolve():
        return report.parent / "pytest-benchmark.json"
    return beside


def default_profile() -> str:
    """``ci`` under ``CI=true``, else ``dev`` (:func:`~gradcheck.environment_flags.running_in_ci`,
    the rule :func:`gradcheck.strategies.register_profiles` uses for the Hypothesis profile)."""
    return "ci" if running_in_ci() else "dev"


def _selected(item_id: str, keyword: str | None) -> bool:
    return keyword is None or keyword in item_id


def _skip(document: dict[str, Any], section: str, reason: str) -> None:
    document["skipped"].append({"section": section, "reason": reason})


def run_suite(options: RunOptions, progress: Progress, command: str) -> dict[str, Any]:
    """Run the requested sections and return the finalized run document."""
    started = time.perf_counter()
    document = new_document(
        "run", title=f"gradcheck run, profile {options.profile}", command=command
    )
    document["profile"] = options.profile
    document["seed"] = options.seed
    document["sections"] = list(options.sections)  # what the report says of an empty section
    document["device"] = options.device
    # The property tests run in a child process alongside the scenarios and the models (one
    # Python thread each, on a machine of several cores); their output follows the models'.
    properties = None
    if "properties" in options.sections:
        properties = start_pytest_section(document, options, "properties", capture=True)
    try:
        if "scenarios" in options.sections:
            run_scenarios(document, options, progress)
        devices = _devices(document, options)
        if "models" in options.sections:
            run_models(document, options, devices, progress)
    except BaseException:
        if properties is not None:
            properties.stop()
        raise
    hypothesis_profile = {} if properties is None else properties.finish(document)
    if "parity" in options.sections and options.device != "cpu":
        run_parity(document, options, devices, progress)
    if "benchmarks" in options.sections:
        run_pytest_section(document, options, "benchmarks")
    document["environment"] = {**describe_environment(), **hypothesis_profile}
    return finalize(document, time.perf_counter() - started)


def _devices(document: dict[str, Any], options: RunOptions) -> list[str]:
    import torch

    wanted = ["cpu", "cuda"] if options.device == "all" else [options.device]
    if "cuda" in wanted and not torch.cuda.is_available():
        wanted.remove("cuda")
        _skip(
            document,
            "CUDA model checks and device parity",
            "CUDA is not available (torch.cuda.is_available() is False); run on a machine "
            "with an NVIDIA GPU and a CUDA build of torch",
        )
    return wanted


def scenarios_matching(keyword: str | None) -> list[Any]:
    """The catalog scenarios whose id contains ``keyword`` (all when None)."""
    from gradcheck.scenarios import CATALOG

    return [s for s in CATALOG.values() if _selected(s.id, keyword)]


def run_scenarios(document: dict[str, Any], options: RunOptions, progress: Progress) -> None:
    """Prove every selected catalog scenario."""
    from gradcheck.scenarios import run_scenario
    from gradcheck.scenarios.base import reproduce_line

    chosen = scenarios_matching(options.keyword)
    for done, scenario in enumerate(chosen, 1):
        result = run_scenario(scenario, seed=options.seed)
        entry = {
            **result.to_dict(),
            "origin": RUN_ORIGIN,
            "reproduce": reproduce_line(scenario.id, options.seed),
        }
        document["scenarios"].append(entry)
        progress("scenarios", done, len(chosen), scenario.id, result.status != FAILED)


def _model_id(name: str, mode: str, device: str) -> str:
    return f"model/{name}/{mode}/{device}"


def run_models(
    document: dict[str, Any], options: RunOptions, devices: Sequence[str], progress: Progress
) -> None:
    """check_module on each of the profile's models, on each device."""
    profile = RUN_PROFILES[options.profile]
    chosen = [
        (name, mode, device)
        for name, mode in profile.models
        for device in devices
        if _selected(_model_id(name, mode, device), options.keyword)
    ]
    if not chosen:
        return
    if importlib.util.find_spec("torchvision") is None:
        _skip(document, "models", f"torchvision is not installed: {INSTALL}")
        return
    from gradcheck.model import check_module
    from gradcheck.zoo import build_model

    for done, (name, mode, device) in enumerate(chosen, 1):
        model, images = build_model(name, seed=options.seed)
        label = _model_id(name, mode, device)

        def row_done(row: Any, finished: int, total: int, label: str = label) -> None:
            progress("models", finished, total, f"{label} {row.name}", row.passed)

        result = check_module(
            model,
            images,
            device=device,
            mode=mode,
            directions=profile.directions,
            seed=options.seed,
            progress=row_done,
        )
        document["models"].append(
            {
                **result.to_dict(),
                "origin": RUN_ORIGIN,
                "label": label,
                "command": f"gradcheck model {name} --mode {mode} --device {device} "
                f"--directions {profile.directions} --seed {options.seed}",
            }
        )
        progress("model checks", done, len(chosen), label, result.status == PASSED)


def run_parity(
    document: dict[str, Any], options: RunOptions, devices: Sequence[str], progress: Progress
) -> None:
    """CPU against CUDA gradients of ResNet18, float64 and float32 (TF32 off)."""
    if "cuda" not in devices or importlib.util.find_spec("torchvision") is None:
        return
    import torch

    from gradcheck.model import check_device_parity
    from gradcheck.zoo import build_model

    for dtype in (torch.float64, torch.float32):
        label = f"parity/resnet18/{str(dtype).removeprefix('torch.')}"
        if not _selected(label, options.keyword):
            continue
        model, images = build_model("resnet18", seed=options.seed)
        result = check_device_parity(model, images, ("cpu", "cuda"), dtype=dtype, seed=options.seed)
        document["parity"].append(
            {
                **result.to_dict(),
                "origin": RUN_ORIGIN,
                "label": label,
                "command": f"gradcheck run --device cuda -k {label} --only parity",
            }
        )
        progress("device parity", 1, 1, label, result.status != FAILED)


def selects_anything(keyword: str, sections: Sequence[str], device: str, profile: str) -> bool:
    """Whether ``-k keyword`` selects anything in ``sections`` before the run starts: a
    scenario, model or parity id that contains it, or a test that ``pytest --collect-only -k``
    collects in properties/ or benchmarks/ (asked only when nothing else matched; a section
    that cannot run here counts as selected, so the run reports why it was skipped)."""
    devices = ["cpu", "cuda"] if device == "all" else [device]
    if "scenarios" in sections and scenarios_matching(keyword):
        return True
    if "models" in sections and any(
        _selected(_model_id(name, mode, d), keyword)
        for name, mode in RUN_PROFILES[profile].models
        for d in devices
    ):
        return True
    if "parity" in sections and "cuda" in devices:
        labels = ("parity/resnet18/float64", "parity/resnet18/float32")
        if any(_selected(label, keyword) for label in labels):
            return True
    for section in ("properties", "benchmarks"):
        if section in sections and _collects(section, keyword):
            return True
    return False


def _collects(section: str, keyword: str) -> bool:
    """Whether ``pytest --collect-only -k keyword section`` finds a test (True when pytest or
    the section's folder is missing: the run says why it skips)."""
    root = source_root(section)
    if root is None or importlib.util.find_spec("pytest") is None:
        return True
    arguments = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    arguments += [*plugin_arguments(), section, "-k", keyword]
    environment = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    completed = subprocess.run(
        arguments, cwd=root, check=False, env=environment, capture_output=True, text=True
    )
    return completed.returncode != 5  # 5: no test collected


def source_root(section: str = "properties") -> Path | None:
    """The checkout holding ``section/`` (``properties`` or ``benchmarks``): the folder above
    this package when it is a checkout (an editable install), else the working folder."""
    for folder in (Path(__file__).resolve().parent.parent, Path.cwd()):
        if (folder / section).is_dir() and (folder / "pyproject.toml").is_file():
            return folder
    return None


def plugin_arguments() -> list[str]:
    """``["-p", "gradcheck.pytest_plugin"]`` for a child pytest where the package is importable
    but not installed (no ``pytest11`` entry point registers the plugin), else nothing."""
    registered = any(
        entry.value == "gradcheck.pytest_plugin"
        for entry in importlib.metadata.entry_points(group="pytest11")
    )
    return [] if registered else ["-p", "gradcheck.pytest_plugin"]


def run_pytest_section(
    document: dict[str, Any], options: RunOptions, section: str
) -> dict[str, Any]:
    """Run ``pytest <section>`` in a child process with the gradcheck plugin and fold its
    tests (and benchmarks) into ``document``. Returns the child's Hypothesis facts."""
    child = start_pytest_section(document, options, section, capture=False)
    return {} if child is None else child.finish(document)


@dataclass
class PytestChild:
    """A ``pytest <section>`` child process under way: its command line, where it writes its
    results, and (when captured) where its output goes until :meth:`finish` prints it."""

    section: str
    arguments: list[str]
    root: Path
    scratch: Path
    process: subprocess.Popen[bytes]
    output: Path | None = None

    @property
    def command(self) -> str:
        """The command line, as a user would rerun it from ``root``."""
        return " ".join(self.arguments[1:])

    @property
    def data(self) -> Path:
        """The plugin's results file."""
        return self.scratch / f"{self.section}.json"

    def finish(self, document: dict[str, Any]) -> dict[str, Any]:
        """Wait for the child, print what it printed (when captured), fold its tests and
        benchmarks into ``document`` and return its Hypothesis facts."""
        try:
            returncode = self.process.wait()
            if self.output is not None:
                sys.stdout.write(self.output.read_text(encoding="utf-8", errors="replace"))
                sys.stdout.flush()
            if returncode == 5:
                return {}  # -k selected no test here
            if not self.data.is_file():
                _skip(
                    document,
                    self.section,
                    f"pytest exited with status {returncode} before writing results (a usage "
                    f"or collection error); rerun: cd {self.root} && {self.command}",
                )
                return {}
            child = json.loads(self.data.read_text(encoding="utf-8"))
        finally:
            self.stop()
        for test in child["tests"]:
            test["suite"] = self.section
            document["tests"].append(test)
        document["benchmarks"] += child["benchmarks"]
        return {
            key: value
            for key, value in child["environment"].items()
            if key.startswith("hypothesis_")
        }

    def stop(self) -> None:
        """End the child if it still runs and remove its scratch folder."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.scratch, ignore_errors=True)


def start_pytest_section(
    document: dict[str, Any], options: RunOptions, section: str, *, capture: bool
) -> PytestChild | None:
    """Start ``pytest <section>`` in a child process (its output kept for
    :meth:`PytestChild.finish` with ``capture``, else printed as it runs), or record why the
    section cannot run here and return None."""
    needs = {"properties": ("pytest", "hypothesis"), "benchmarks": ("pytest", "pytest_benchmark")}
    missing = [m for m in needs[section] if importlib.util.find_spec(m) is None]
    if missing:
        extra = "suite" if section == "properties" else "bench"
        _skip(
            document,
            section,
            f"{', '.join(missing)} not installed: "
            f"pip install -e '.[{extra}]' -c constraints/ci.txt",
        )
        return None
    root = source_root(section)
    if root is None:
        _skip(
            document,
            section,
            f"no {section}/ folder beside the installed package or in {Path.cwd()}; run "
            "gradcheck from a checkout of the repository (pip install -e .)",
        )
        return None
    scratch = Path(tempfile.mkdtemp(prefix="gradcheck-"))
    data = scratch / f"{section}.json"
    arguments = [sys.executable, "-m", "pytest", *plugin_arguments(), section, "-q"]
    arguments += ["-p", "no:cacheprovider", f"--gradcheck-report={data}"]
    if section == "properties":
        arguments += [
            f"--hypothesis-profile={RUN_PROFILES[options.profile].hypothesis}",
            f"--hypothesis-seed={options.seed}",
        ]
    else:
        options.benchmark_json.parent.mkdir(parents=True, exist_ok=True)
        arguments += [
            "--benchmark-only",
            f"--benchmark-json={options.benchmark_json.resolve()}",
        ]
    if options.keyword:
        arguments += ["-k", options.keyword]
    alongside = " (alongside the sections below; its output follows them)" if capture else ""
    print(f"\n{section}: {' '.join(arguments[1:])}{alongside}", flush=True)
    # pytest-benchmark disables itself in an xdist worker, which it reads from this variable:
    # a gradcheck run started inside a ``pytest -n`` worker must not hand it down.
    environment = {k: v for k, v in os.environ.items() if k != "PYTEST_XDIST_WORKER"}
    if not capture:
        process = subprocess.Popen(arguments, cwd=root, env=environment)
        return PytestChild(section, arguments, root, scratch, process)
    output = scratch / "output.txt"
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            arguments, cwd=root, env=environment, stdout=sink, stderr=subprocess.STDOUT
        )
    return PytestChild(section, arguments, root, scratch, process, output)
