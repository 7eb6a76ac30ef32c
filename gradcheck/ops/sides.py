"""The three checks of one sample, each inside its own time budget: gradcheck's
``check_function``, and ``torch.autograd.gradcheck`` in its slow (every Jacobian entry) and
fast (random projections) modes.

Before the sides, :func:`warm_up` calls the op once, untimed, so its first-call costs in the
process land on neither side. Every exception either side raises is its outcome (``error``
with the exception type and the message's first line), never the run's. The budget is a
``signal.setitimer`` alarm on the process's CPU time in the main thread that raises
:class:`BudgetExceeded` at the next Python bytecode once the budget is spent: each check
evaluates the op hundreds of times from Python, so a slow check stops within one evaluation. A
single C call that never returns is not stopped here; the parent process of
:mod:`gradcheck.ops.pool` kills the worker for that.
torch's check runs with the OpInfo's ``gradcheck_nondet_tol`` and on gradient values only (no
batched-grad, undefined-grad or dtype checks), so both sides answer the same question.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch

from gradcheck.ops.samples import Case, restored

PASSED, FAILED, ERROR, TIMEOUT = "passed", "failed", "error", "timeout"
MESSAGE_LINES = 3
"""Lines of a message kept in a row."""


class BudgetExceeded(BaseException):
    """Raised by the alarm: a BaseException, so no ``except Exception`` inside a check can
    swallow it."""


def first_lines(text: str, lines: int = MESSAGE_LINES, width: int = 300) -> str:
    """The first ``lines`` non-empty lines of ``text``, each cut to ``width`` characters."""
    kept = [line.rstrip()[:width] for line in str(text).strip().splitlines() if line.strip()]
    return "\n".join(kept[:lines])


def _describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_lines(str(error), 1)}"


@contextlib.contextmanager
def budget(seconds: float) -> Iterator[dict[str, bool]]:
    """Raise :class:`BudgetExceeded` once the process has used ``seconds`` of CPU time (main
    thread on Unix only; elsewhere the budget is not enforced here). CPU time, not wall time: a
    busy machine must not turn a check into a timeout (a check that blocks without computing is
    stopped by the pool's wall-clock hard limit). Yields a dict whose ``fired`` says whether the
    alarm went off, for an exception a C++ layer re-raised as another type."""
    state = {"fired": False}
    armed = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not armed or seconds <= 0:
        yield state
        return

    def alarm(signum: int, frame: Any) -> None:
        """The SIGALRM handler: note it, then stop the check."""
        state["fired"] = True
        raise BudgetExceeded(f"over the {seconds:g} CPU-s budget")

    previous = signal.signal(signal.SIGPROF, alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield state
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def timed(call: Callable[[], dict[str, Any]], seconds: float) -> dict[str, Any]:
    """``call()``'s outcome dict with ``time_s`` added; an exception becomes ``error``, the
    budget running out ``timeout``."""
    started, grad_mode = time.perf_counter(), torch.is_grad_enabled()
    try:
        with budget(seconds) as state:
            try:
                outcome = call()
            except BudgetExceeded:
                raise
            except Exception as error:
                if state["fired"]:
                    raise BudgetExceeded(str(error)) from None
                outcome = {"status": ERROR, "message": _describe_error(error)}
    except BudgetExceeded:
        torch.set_grad_enabled(grad_mode)  # an interrupted no_grad block may not have exited
        outcome = {"status": TIMEOUT, "message": f"stopped after the {seconds:g} CPU-s budget"}
    outcome["time_s"] = time.perf_counter() - started
    return outcome


def ours(case: Case, seed: int, nondet_tol: float, order: int = 1) -> dict[str, Any]:
    """gradcheck's ``check_function`` on the case: status, worst relative error, the message's
    first lines, how many elements were inconclusive or on a kink. At ``order`` 2 the verdict
    is that of the second derivative (the ``VJP of VJP`` part: what gradgradcheck judges),
    the time that of the whole check (both orders)."""
    from gradcheck.check import check_function

    with restored(case) as inputs:
        result = check_function(case.fn, inputs, seed=seed, nondet_tol=nondet_tol, order=order)
    if result.parts:
        result = result.parts[-1]
    return {
        "status": result.status,
        "message": first_lines(result.message),
        "max_rel_error": result.max_rel_error,
        "checked": result.checked,
        "inconclusive": len(result.inconclusive),
        "kinks": len(result.kinks),
    }


def torch_check(
    case: Case, *, fast: bool, seed: int, nondet_tol: float, order: int = 1
) -> dict[str, Any]:
    """``torch.autograd.gradcheck`` (``gradgradcheck`` at ``order`` 2) on the case: passed, or
    failed with its message's first line (its GradcheckError); any other exception is an error
    (see :func:`timed`)."""
    from torch.autograd.gradcheck import GradcheckError

    torch.manual_seed(seed)  # fast mode's random vectors; the caller forks the RNG
    try:
        with restored(case) as inputs:
            checker = torch.autograd.gradgradcheck if order == 2 else torch.autograd.gradcheck
            checker(
                case.fn,
                inputs,
                nondet_tol=nondet_tol,
                fast_mode=fast,
                check_undefined_grad=False,
                check_batched_grad=False,
            )
    except GradcheckError as error:
        return {"status": FAILED, "message": first_lines(str(error), 1)}
    return {"status": PASSED, "message": ""}


SIDES = ("ours", "torch_slow", "torch_fast")


def warm_up(case: Case, seconds: float) -> None:
    """Call the op once on the sample, forward and backward, untimed and without a verdict
    (within ``seconds`` of CPU time): the op's first-call costs in this process (kernel
    selection, lazy initialisation) would otherwise land on whichever side is timed first,
    which is always gradcheck's."""
    grad_mode = torch.is_grad_enabled()
    try:
        with budget(seconds), restored(case) as inputs, torch.enable_grad():
            outputs = case.fn(*inputs)
            flat = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
            tracked = [
                out
                for out in flat
                if isinstance(out, torch.Tensor) and out.requires_grad and out.numel() > 0
            ]
            if tracked:
                torch.autograd.grad(
                    [out.real.sum() if out.is_complex() else out.sum() for out in tracked],
                    [t for t in inputs if t.requires_grad],
                    allow_unused=True,
                )
    except BaseException as error:  # the sides report what the op does; this only warms
        torch.set_grad_enabled(grad_mode)
        if not isinstance(error, (Exception, BudgetExceeded)):
            raise


def run_side(
    side: str, case: Case, seed: int, nondet_tol: float, seconds: float, order: int = 1
) -> dict:
    """One of :data:`SIDES` on ``case`` within ``seconds``, its outcome dict."""
    if side == "ours":
        return timed(lambda: ours(case, seed, nondet_tol, order), seconds)
    fast = side == "torch_fast"
    return timed(
        lambda: torch_check(case, fast=fast, seed=seed, nondet_tol=nondet_tol, order=order),
        seconds,
    )
