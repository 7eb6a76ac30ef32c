"""``check_ops``: gradcheck's ``check_function`` and ``torch.autograd.gradcheck`` on the
samples of torch's OpInfo database, side by side."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument
from gradcheck.ops.collect import Collector, Progress
from gradcheck.ops.pool import run_inline, run_isolated
from gradcheck.ops.results import OpsResult
from gradcheck.ops.worker import Settings


def _patterns(op: str | Sequence[str] | None) -> tuple[str, ...]:
    if op is None:
        return ()
    items = (op,) if isinstance(op, str) else tuple(op)
    if not items or not all(isinstance(p, str) and p for p in items):
        raise InvalidArgument(
            f"Got op={validation.short_repr(op)}, but op must be a glob or a list of globs "
            "matched against OpInfo names, such as op='sin' or op=['nn.functional.*', 'mul']."
        )
    return items


def _dtype_name(dtype: Any) -> str:
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype, dtype)
    if isinstance(dtype, torch.dtype) and dtype.is_complex:
        return str(dtype).removeprefix("torch.")
    return str(validation.floating_dtype(dtype)).removeprefix("torch.")


def _order(order: object) -> int:
    value = validation.positive_int("order", order, "2")
    if value > 2:
        raise InvalidArgument(
            f"Got order={value}, but check_ops compares derivatives of order 1 (against "
            "torch.autograd.gradcheck) or 2 (against gradgradcheck). Pass order=1 or order=2."
        )
    return value


def _timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise InvalidArgument(
            f"Got timeout_s={validation.short_repr(value)}, but timeout_s must be a number of "
            "seconds > 0 (the budget of each check of a sample). Pass, for example, timeout_s=20."
        )
    if not math.isfinite(value):
        raise InvalidArgument("Got timeout_s=inf; pass a finite budget such as timeout_s=20.")
    return float(value)


def settings_of(
    op: str | Sequence[str] | None,
    samples: int,
    dtype: Any,
    device: str,
    seed: int,
    timeout_s: float,
    database: str = "",
    order: int = 1,
) -> Settings:
    """Validated :class:`~gradcheck.ops.worker.Settings`; each bad argument is an
    InvalidArgument naming it and the fix."""
    return Settings(
        patterns=_patterns(op),
        samples=validation.positive_int("samples", samples),
        dtype=_dtype_name(dtype),
        device=str(validation.available_device(device)),
        seed=validation.seed(seed),
        timeout_s=_timeout(timeout_s),
        database=database,
        order=_order(order),
    )


def check_ops(
    op: str | Sequence[str] | None = None,
    *,
    samples: int = 3,
    dtype: Any = torch.float64,
    device: str = "cpu",
    seed: int = 0,
    timeout_s: float = 20.0,
    jobs: int = 1,
    isolate: bool = True,
    database: str | Sequence[Any] | None = None,
    progress: Progress | None = None,
    order: int = 1,
) -> OpsResult:
    """Check the first ``samples`` samples of every differentiable OpInfo entry matching
    ``op`` (globs over the name and ``name.variant``; None: all) with
    :func:`gradcheck.check_function` and with ``torch.autograd.gradcheck`` (slow and fast mode),
    and classify each sample (agree, disagree, inconclusive, error, timeout).

    Samples are built as torch's own ``test_fn_grad`` builds them; torch's skips of that test
    are honoured and listed. Each check of a sample has ``timeout_s`` seconds; by default the
    checks run in ``jobs`` worker processes, so a hung or crashing op is recorded and the run
    goes on (``isolate=False`` runs in this process). ``database`` checks other OpInfo records
    than torch's op_db: ``"module:attribute"`` naming an importable list (in workers too), or
    the list itself (in this process only). ``progress(section, done, total, op, ok)`` is
    called after each op. ``dtype`` may be complex (complex128: the complex samples, judged in
    PyTorch's convention). ``order=2`` compares second derivatives (double backward) with
    ``torch.autograd.gradgradcheck`` and honours torch's skips of ``test_fn_gradgrad``. Needs
    ``expecttest`` (``pip install 'gradcheck[ops]'``).
    """
    started = time.perf_counter()
    location = database if isinstance(database, str) else ""
    settings = settings_of(op, samples, dtype, device, seed, timeout_s, location, order)
    jobs = validation.positive_int("jobs", jobs, "2")
    collector = Collector(progress)
    records = None if database is None or isinstance(database, str) else database
    inline = records is not None or not isolate
    if inline:
        run_inline(settings, collector, records)
    else:
        run_isolated(settings, collector, jobs)
    if not collector.order:
        which = ", ".join(settings.patterns) or "*"
        raise InvalidArgument(
            f"Got op={which!r}, which matches no differentiable OpInfo entry of torch "
            f"{torch.__version__}; pass a glob over names such as 'sin', 'nn.functional.*' or "
            "'linalg.*' (python -c 'from torch.testing._internal.common_methods_invocations "
            "import op_db; print(sorted({o.name for o in op_db}))' lists them)."
        )
    return OpsResult(
        settings=settings,
        rows=collector.sorted_rows(),
        skipped=tuple(collector.skipped),
        duration_s=time.perf_counter() - started,
        torch_version=torch.__version__,
        isolated=not inline,
    )
