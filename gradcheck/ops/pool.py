"""Where the checks run: in worker processes (the default) or in this process.

Worker processes run whole ops and send every event back over a pipe. They are forked from
``multiprocessing``'s fork server, which imports torch and op_db once (the first run of a
process pays that, about 15 s; a worker killed or crashed is replaced in well under a second);
where there is no fork server (Windows) they are spawned and each imports op_db itself. Two
limits bound a run:

- the *budget* (``timeout_s``), enforced inside the worker by :func:`gradcheck.ops.sides.budget`
  for each of the three checks of a sample: a check over it is recorded as ``timeout`` and the
  worker goes on;
- the *hard limit*, enforced here: a phase (generating an op's samples, or one check) that has
  not reported ``timeout_s`` + :func:`grace` seconds after it started (a C call that never
  returns to Python) gets its worker killed; that check is recorded as ``timeout``, the sample's
  remaining checks as not run, and the op continues from its next sample in a fresh worker. A
  worker that dies (a segfault) is handled the same way, with the exit code as an ``error``.

In this process (``isolate=False``) only the budget applies, a crash ends the run, and importing
op_db has torch's test-suite side effects on this process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import wait
from typing import Any

from gradcheck.errors import GradcheckError, InvalidArgument
from gradcheck.ops.collect import Collector
from gradcheck.ops.worker import SAMPLES_PHASE, Settings, announcement, op_events, worker_main

STARTUP_S = 600.0
"""How long a worker may take to import torch and op_db and select."""


PRELOAD = ["torch", "torch.testing._internal.common_methods_invocations"]
"""What the fork server imports before forking workers (an ImportError there is ignored: a
worker then reports it)."""


def grace(timeout_s: float) -> float:
    """Wall-clock seconds past the budget before a silent worker is killed: three times the
    budget, at least 3 s. The budget counts CPU time, so on a busy machine a check that computes
    all along takes several times its budget in wall time before its alarm stops it."""
    return max(3.0, 3.0 * timeout_s)


def worker_context() -> Any:
    """The fork server context with :data:`PRELOAD`, or spawn where there is none."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


def run_inline(settings: Settings, collector: Collector, database: Sequence[Any] | None) -> None:
    """Every selected op in this process (``database``: OpInfo records instead of those of
    ``settings``)."""
    import torch

    from gradcheck.ops.database import select
    from gradcheck.ops.worker import selection

    if database is None:
        chosen = selection(settings)
    else:
        device_type = torch.device(settings.device).type
        chosen = select(
            database,
            settings.patterns,
            device_type,
            getattr(torch, settings.dtype),
            settings.order,
        )
    by_key = {s.key: s for s in chosen}
    for key in collector.announce(announcement(chosen)):
        for event in op_events(by_key[key], settings):
            collector.handle(event)


class _Worker:
    """One worker process, its pipe, what it is doing and until when it may take."""

    def __init__(self, context: Any, settings: Settings) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=worker_main, args=(child, settings), daemon=True)
        self.process.start()
        child.close()
        self.key: str | None = None
        self.index: int | None = None
        self.phase = "startup"
        self.dead = False
        self.since = time.monotonic()
        self.deadline = self.since + STARTUP_S
        self.limit = settings.timeout_s + grace(settings.timeout_s)

    def assign(self, key: str, start: int) -> None:
        """Send the task ``(key, start)``: the op from sample ``start`` on."""
        self.key, self.index, self.phase = key, None, SAMPLES_PHASE
        self.since = time.monotonic()
        self.deadline = self.since + self.limit
        self.connection.send((key, start))

    def started(self, index: int | None, phase: str) -> None:
        """The worker began ``phase`` of sample ``index``: its hard limit starts again."""
        self.index, self.phase = index, phase
        self.since = time.monotonic()
        self.deadline = self.since + self.limit

    def stop(self, kill: bool) -> None:
        """End the process: killed, or asked to return (and killed after 30 s)."""
        if kill:
            self.process.kill()
        else:
            with contextlib.suppress(OSError):
                self.connection.send(None)
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.connection.close()


def _first_selection(worker: _Worker) -> list[tuple]:
    """The ``ready`` list of a fresh worker, or the error it reported."""
    if not worker.connection.poll(STARTUP_S):
        worker.stop(kill=True)
        raise GradcheckError(f"a gradcheck ops worker did not start within {STARTUP_S:g} s")
    try:
        event = worker.connection.recv()
    except EOFError:
        worker.stop(kill=True)
        raise GradcheckError(
            f"a gradcheck ops worker exited with code {worker.process.exitcode} while importing "
            "torch's op_db; run with --in-process to see the traceback"
        ) from None
    if event[0] == "fatal":
        worker.stop(kill=False)
        raise InvalidArgument(event[1])
    return list(event[1])


def run_isolated(settings: Settings, collector: Collector, jobs: int) -> None:
    """Every selected op in ``jobs`` worker processes, with the hard limit of this module."""
    context = worker_context()
    first = _Worker(context, settings)
    queue = deque((key, 0) for key in collector.announce(_first_selection(first)))
    first.phase = "idle"
    workers = [first] + [_Worker(context, settings) for _ in range(min(jobs, len(queue)) - 1)]
    try:
        _drive(context, settings, collector, queue, workers)
    finally:
        for worker in workers:
            worker.stop(kill=worker.process.is_alive() and worker.phase != "idle")


def _drive(
    context: Any, settings: Settings, collector: Collector, queue: deque, workers: list[_Worker]
) -> None:
    """Hand out ops, relay events, enforce the hard limit, until every op is done."""
    while queue or any(w.key is not None for w in workers):
        for worker in workers:
            if worker.phase == "idle" and queue:
                worker.assign(*queue.popleft())
        busy = [w for w in workers if w.phase != "idle" or w.key is not None]
        if not busy:
            return
        timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        ready = wait([w.connection for w in busy], timeout=timeout)
        for worker in busy:
            if worker.connection in ready:
                _receive(worker, collector)
            elif time.monotonic() > worker.deadline:
                _replace(context, settings, worker, collector, queue, workers, hard=True)
        for worker in [w for w in workers if w.dead]:
            _replace(context, settings, worker, collector, queue, workers, hard=False)


def _receive(worker: _Worker, collector: Collector) -> None:
    """One event from ``worker``: track its phase, pass the event on."""
    try:
        event = worker.connection.recv()
    except (EOFError, OSError):
        worker.dead = True
        return
    if event[0] == "ready":
        worker.phase = "idle"
        return
    if event[0] == "phase":
        worker.started(event[2], event[3])
    collector.handle(event)
    if event[0] == "op_end":
        worker.key, worker.index, worker.phase = None, None, "idle"


def _replace(
    context: Any,
    settings: Settings,
    worker: _Worker,
    collector: Collector,
    queue: deque,
    workers: list[_Worker],
    *,
    hard: bool,
) -> None:
    """Kill (or bury) ``worker``, record what it was doing, requeue the rest of its op, and
    start a fresh worker in its place when work remains."""
    key, index, phase = worker.key, worker.index, worker.phase
    elapsed = time.monotonic() - worker.since
    worker.phase, worker.dead = "killed", False
    worker.stop(kill=True)
    if key is None:
        raise GradcheckError(
            f"a gradcheck ops worker failed to start (exit code {worker.process.exitcode}); "
            "run with --in-process to see the traceback"
        )
    if hard:
        why = f"no answer within the hard limit of {worker.limit:g} s; the worker was killed"
        collector.interrupt(key, index, phase, "timeout", why, elapsed)
    else:
        why = f"the worker process died (exit code {worker.process.exitcode})"
        collector.interrupt(key, index, phase, "error", why, elapsed)
    if index is not None:
        queue.appendleft((key, index + 1))
    else:
        collector.op_done(key)
    position = workers.index(worker)
    if queue:
        workers[position] = _Worker(context, settings)
    else:
        workers.pop(position)
