"""``gradcheck model NAME``: a torchvision model from :mod:`gradcheck.zoo`, checked in float64 by
:func:`gradcheck.check_module` (a progress bar over the tensors, the per-layer table), or in a
lower dtype (``--dtype``) or compiled (``--compile [BACKEND]``) against its own float64 self by
:func:`gradcheck.check_against_reference` and :func:`gradcheck.check_compiled`, or its training
step on ``--ddp RANKS`` processes by :func:`gradcheck.check_distributed`; the results' JSON, a
``reproduce:`` command line, and the exit status of the verdict.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from gradcheck.cli import BAR_WIDTH, EXIT_STATUS

MODEL_DTYPES = ("float64", "float32", "float16", "bfloat16")
"""``gradcheck model --dtype``: float64 runs check_module, the others check_against_reference."""


def check_model(arguments: argparse.Namespace) -> int:
    """``gradcheck model``: build, check with a progress bar, print the per-layer table and the
    command that reproduces the check.

    In float64 (the default) every tensor is checked by :func:`gradcheck.check_module`; with
    ``--dtype`` float32, float16 or bfloat16 the model in that dtype is checked against its own
    float64 self by :func:`gradcheck.check_against_reference`, and with ``--compile [BACKEND]``
    the compiled model against its eager self by :func:`gradcheck.check_compiled`.

    Exit status 0 when every row passes, 1 when a row fails, 2 when none fails but some row is
    kink-affected or inconclusive, or when the arguments cannot work (an unwritable --json).
    ``--parameters`` picks tensors by name or glob; the model's input gets a row only when
    ``input`` is one of them (or without ``--parameters``).
    """
    from gradcheck import zoo
    from gradcheck.cli_merge import unusable_outputs
    from gradcheck.errors import InvalidArgument

    path = arguments.json or default_model_json(arguments)
    unusable = unusable_outputs(path, "--json")
    if unusable is None and arguments.report is not None:
        unusable = unusable_outputs(arguments.report, "--report")
    if unusable is None and arguments.ddp is not None:
        unusable = _unusable_with_ddp(arguments)
    if unusable is None and against_reference(arguments) and arguments.parameters:
        unusable = (
            "--parameters picks the tensors check_module checks in float64; a --dtype "
            f"{arguments.dtype} or --compile check compares every tensor (leave --parameters out)"
        )
    if unusable is not None:
        print(f"gradcheck model: {unusable}", file=sys.stderr)
        return 2
    try:
        model, images = zoo.build_model(
            arguments.name,
            batch=arguments.batch,
            size=arguments.size,
            seed=arguments.seed,
            weights=arguments.weights,
        )
        if arguments.ddp is not None:
            return _check_model_distributed(arguments, images, path)
        if against_reference(arguments):
            return _check_model_against_reference(arguments, model, images, path)
        return _check_model_module(arguments, model, images, path)
    except InvalidArgument as exc:
        print(f"gradcheck model: {exc}", file=sys.stderr)
        return 2


def _unusable_with_ddp(arguments: argparse.Namespace) -> str | None:
    """Why ``--ddp`` cannot go with the other options given (None when it can)."""
    if arguments.ddp < 1 or arguments.accumulation_steps < 1:
        return "--ddp and --accumulation-steps must be at least 1"
    if arguments.compile is not None or arguments.parameters:
        return (
            "--ddp checks every parameter of the eager model on the ranks; leave --compile and "
            "--parameters out"
        )
    if arguments.dtype in ("float16", "bfloat16"):
        return (
            f"--ddp runs the training step in float64 or float32, not {arguments.dtype}; for "
            "low-precision gradients on the wire pass --comm-hook fp16 or bf16"
        )
    return None


def against_reference(arguments: argparse.Namespace) -> bool:
    """True when ``gradcheck model`` checks the model against its float64 (or eager) self:
    a ``--dtype`` below float64, or ``--compile``."""
    return arguments.dtype != "float64" or arguments.compile is not None


def default_model_json(arguments: argparse.Namespace) -> Path:
    """``reports/model-NAME-MODE.json`` for check_module; a reference check adds its dtype and,
    compiled, its backend: ``model-NAME-MODE-bfloat16.json``,
    ``model-NAME-MODE-float64-compiled-inductor.json``."""
    stem = f"model-{arguments.name}-{arguments.mode}"
    if arguments.ddp is not None:
        hook = f"-{arguments.comm_hook}" if arguments.comm_hook != "none" else ""
        steps = arguments.accumulation_steps
        return Path("reports") / f"{stem}-{arguments.dtype}-ddp{arguments.ddp}x{steps}{hook}.json"
    if against_reference(arguments):
        stem += f"-{arguments.dtype}"
        if arguments.compile is not None:
            stem += f"-compiled-{arguments.compile}"
    return Path("reports") / f"{stem}.json"


def _check_model_module(arguments: argparse.Namespace, model: Any, images: Any, path: Path) -> int:
    """check_module on every chosen tensor in float64, with the progress bar."""
    from gradcheck.model import check_module
    from gradcheck.report.files import write_atomically

    patterns = arguments.parameters
    include_inputs = patterns is None or "input" in patterns
    chosen = None if patterns is None else [p for p in patterns if p != "input"]
    started = time.perf_counter()
    result = check_module(
        model,
        images,
        device=arguments.device,
        parameters=chosen,
        include_inputs=include_inputs,
        mode=arguments.mode,
        directions=arguments.directions,
        seed=arguments.seed,
        progress=_progress_bar(started),
    )
    print(result.table())
    print(result.message)
    print(f"reproduce: {model_command(arguments)}")
    write_atomically(path, result.to_json(indent=1))
    print(f"{result.evaluations} evaluations in {result.duration_s:.1f} s; results: {path}")
    _write_model_report(arguments, "models", result)
    return EXIT_STATUS.get(result.status, 2)


def _check_model_against_reference(
    arguments: argparse.Namespace, model: Any, images: Any, path: Path
) -> int:
    """check_against_reference (``--dtype``) or check_compiled (``--compile``): the model in
    the dtype (or compiled) against its float64 self, every tensor a row."""
    import torch
    from torch._dynamo.exc import TorchDynamoException

    from gradcheck.reference import check_against_reference, check_compiled
    from gradcheck.report.files import write_atomically

    dtype = getattr(torch, arguments.dtype)
    what = f"compiled with {arguments.compile}" if arguments.compile is not None else "eager"
    print(
        f"gradcheck model: {arguments.name} in {arguments.dtype}, {what}, against its float64 "
        "self (the float64 gradient is checked first)",
        file=sys.stderr,
        flush=True,
    )
    common = {
        "dtype": dtype,
        "device": arguments.device,
        "module_mode": arguments.mode,
        "seed": arguments.seed,
    }
    if arguments.compile is None:
        result = check_against_reference(model, model, images, **common)
    else:
        try:
            result = check_compiled(model, images, backend=arguments.compile, **common)
        except TorchDynamoException as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            print(
                f"gradcheck model: --compile {arguments.compile} failed to compile "
                f"{arguments.name} ({type(exc).__name__}: {first[:300]}); try --compile "
                "aot_eager, which needs no C++ compiler",
                file=sys.stderr,
            )
            return 2
    print(result.table())
    print(result.message)
    print(f"reproduce: {model_command(arguments)}")
    write_atomically(path, result.to_json(indent=1))
    first = "compilation included" if arguments.compile is not None else "eager"
    print(
        f"{len(result.rows)} tensors in {result.duration_s:.1f} s (first call, {first}: "
        f"{result.first_call_s:.1f} s); results: {path}"
    )
    _write_model_report(arguments, "references", result)
    return EXIT_STATUS.get(result.status, 2)


def _check_model_distributed(arguments: argparse.Namespace, images: Any, path: Path) -> int:
    """check_distributed: the model's training step on ``--ddp`` ranks (gloo on the CPU, nccl
    with ``--device cuda``) against its whole-batch gradient in one process in float64."""
    import functools

    import torch
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from gradcheck import zoo
    from gradcheck.distributed.check import check_distributed
    from gradcheck.report.files import write_atomically

    hooks = {
        "none": None,
        "fp16": default_hooks.fp16_compress_hook,
        "bf16": default_hooks.bf16_compress_hook,
    }
    make_model = functools.partial(
        zoo.built_model,
        arguments.name,
        size=arguments.size,
        seed=arguments.seed,
        weights=arguments.weights,
        dtype=getattr(torch, arguments.dtype),
    )
    print(
        f"gradcheck model: {arguments.name} in {arguments.dtype}, one training step on "
        f"{arguments.ddp} DDP ranks ({arguments.accumulation_steps} micro-batch(es) each), "
        "against the whole batch in one process in float64",
        file=sys.stderr,
        flush=True,
    )
    result = check_distributed(
        make_model,
        images.to(getattr(torch, arguments.dtype)),
        world_size=arguments.ddp,
        backend="nccl" if arguments.device.startswith("cuda") else "gloo",
        accumulation_steps=arguments.accumulation_steps,
        comm_hook=hooks[arguments.comm_hook],
        mode=arguments.mode,
        seed=arguments.seed,
    )
    print(result.table())
    print(result.message)
    print(f"reproduce: {model_command(arguments)}")
    write_atomically(path, result.to_json(indent=1))
    print(
        f"{len(result.rows)} tensors in {result.duration_s:.1f} s (ranks started in "
        f"{result.startup_s:.1f} s); results: {path}"
    )
    _write_model_report(arguments, "references", result)
    return EXIT_STATUS.get(result.status, 2)


def _write_model_report(arguments: argparse.Namespace, section: str, result: Any) -> None:
    """With ``--report PATH.html``: the check as a run document (the report's per-layer table
    and chart), the HTML at PATH and its JSON beside it, both written atomically."""
    if arguments.report is None:
        return
    from gradcheck.cli import write_report
    from gradcheck.report.document import RUN_ORIGIN, finalize, new_document
    from gradcheck.report.environment import describe_environment

    command = model_command(arguments)
    document = new_document("run", title=f"gradcheck model {arguments.name}", command=command)
    document["seed"] = arguments.seed
    document["environment"] = describe_environment()
    document[section].append({**result.to_dict(), "origin": RUN_ORIGIN, "command": command})
    finalize(document, result.duration_s)
    json_path = write_report(document, arguments.report)
    print(f"report: {arguments.report} (data: {json_path})")


def model_command(arguments: argparse.Namespace) -> str:
    """The ``gradcheck model`` command line that repeats this check, every setting spelled."""
    words = ["gradcheck", "model", arguments.name, "--device", arguments.device]
    words += ["--mode", arguments.mode, "--batch", str(arguments.batch)]
    words += ["--size", str(arguments.size), "--dtype", arguments.dtype]
    if arguments.compile is not None:
        words += ["--compile", arguments.compile]
    if arguments.ddp is not None:
        words += ["--ddp", str(arguments.ddp)]
        words += ["--accumulation-steps", str(arguments.accumulation_steps)]
        words += ["--comm-hook", arguments.comm_hook]
    elif not against_reference(arguments):
        words += ["--directions", str(arguments.directions)]
    words += ["--seed", str(arguments.seed)]
    if arguments.weights is not None:
        words += ["--weights", str(arguments.weights)]
    if arguments.parameters:
        words += ["--parameters", *arguments.parameters]
    return " ".join(shlex.quote(word) for word in words)


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


def add_model_parser(commands: Any) -> None:
    """``gradcheck model NAME``'s options: what to build, how to check it, where results go."""
    model_parser = commands.add_parser(
        "model",
        help="check every parameter tensor of a torchvision model (check_module; with --dtype "
        "below float64 or --compile: against its own float64 self)",
    )
    model_parser.add_argument("name", help="torchvision model name, for example resnet18")
    model_parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    model_parser.add_argument("--mode", choices=("eval", "train"), default="eval")
    model_parser.add_argument("--batch", type=int, default=2, help="images per batch (2)")
    model_parser.add_argument("--size", type=int, default=64, help="image height and width (64)")
    model_parser.add_argument(
        "--dtype",
        choices=MODEL_DTYPES,
        default="float64",
        help="float64 (default): check_module against finite differences; float32, float16, "
        "bfloat16: the model in that dtype against its own float64 self "
        "(check_against_reference), tensor by tensor",
    )
    model_parser.add_argument(
        "--compile",
        nargs="?",
        const="inductor",
        default=None,
        metavar="BACKEND",
        help="check torch.compile(model, backend=BACKEND) in --dtype against the eager model "
        "(check_compiled); BACKEND defaults to inductor, aot_eager needs no C++ compiler",
    )
    model_parser.add_argument(
        "--ddp",
        type=int,
        metavar="RANKS",
        help="run one training step on RANKS DistributedDataParallel ranks (gloo; nccl with "
        "--device cuda) and check every rank's gradients against the whole batch in one process "
        "in float64 (check_distributed); --batch must divide into RANKS x --accumulation-steps",
    )
    model_parser.add_argument(
        "--accumulation-steps",
        type=int,
        default=1,
        metavar="K",
        help="with --ddp: micro-batches per rank, all but the last under no_sync() (1)",
    )
    model_parser.add_argument(
        "--comm-hook",
        choices=("none", "fp16", "bf16"),
        default="none",
        help="with --ddp: torch's fp16/bf16 gradient compression hook, judged by the "
        "low-precision gate (none)",
    )
    model_parser.add_argument("--directions", type=int, default=2, help="per tensor (2)")
    model_parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    model_parser.add_argument("--weights", type=Path, help="a local state_dict file to load")
    model_parser.add_argument(
        "--parameters",
        nargs="+",
        metavar="PATTERN",
        help="only these parameter names or glob patterns; add 'input' for the input's row",
    )
    model_parser.add_argument(
        "--json",
        type=Path,
        help="results file (default reports/model-NAME-MODE.json; with --dtype or --compile "
        "model-NAME-MODE-DTYPE[-compiled-BACKEND].json)",
    )
    model_parser.add_argument(
        "--report",
        type=Path,
        help="also write an HTML report with the per-layer table and chart (its JSON beside it)",
    )
