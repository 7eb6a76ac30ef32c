"""Start ``world_size`` ranks, watch them, and stop them: the parent's side of a distributed
check.

The parent hosts the rendezvous (a TCPStore on 127.0.0.1 bound to a free port, so no two
checks race for a port) and spawns one process per rank (``spawn``: a clean interpreter,
safe with threads and CUDA). It then waits until every rank has exited, with two limits: when
a rank fails (an exception, or a process that dies without saying why, as a signal kills it),
the others get :data:`GRACE_S` seconds to finish before they are stopped (they are usually
blocked in a collective the failed rank never joins); when ``timeout_s`` passes, every rank
still running is stopped. A stopped rank gets SIGTERM, then SIGKILL. No process outlives the
call, and the store (the port) is released when it returns.
"""

from __future__ import annotations

import datetime
import math
import multiprocessing
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gradcheck.distributed import rank as rank_process
from gradcheck.distributed.job import Job

GRACE_S = 5.0
"""How long the other ranks may run on after one failed (they usually wait on it)."""

POLL_S = 0.05
SETTLE_S = 1.0
"""A rank that died by a signal without a word, noticed within this long after the first
failure, is taken for that failure's cause: its peers' connection errors can reach the parent
before the dead process is reaped."""
STOP_WAIT_S = 3.0
LOG_TAIL_LINES = 12
ERROR_CHARACTERS = 300


@dataclass(frozen=True)
class RankOutcome:
    """How one rank ended: its gradients (name -> tensor or None) when it finished, else
    ``failure``: what went wrong and what the rank was doing. ``ready_s`` is when it had
    joined the process group (seconds after the launch; NaN if it never did); ``stopped``
    whether the parent stopped it (a timeout, or another rank's failure)."""

    rank: int
    gradients: dict[str, torch.Tensor | None] | None
    failure: str
    exitcode: int | None
    ready_s: float
    stopped: bool = False


@dataclass(frozen=True)
class Launch:
    """Every rank's outcome, the ranks that failed in the order it was noticed, the time the
    launch took and the rendezvous port it used (released when the launch returned)."""

    outcomes: tuple[RankOutcome, ...]
    failure_order: tuple[int, ...]
    duration_s: float
    port: int

    @property
    def startup_s(self) -> float:
        """Seconds from the launch until the last rank had joined the process group."""
        return max(outcome.ready_s for outcome in self.outcomes)

    @property
    def failures(self) -> tuple[RankOutcome, ...]:
        """The ranks that did not finish: those that failed, in the order their failure was
        noticed (the first is usually the cause), then those that were stopped."""
        failed = [o for o in self.outcomes if o.gradients is None]
        return tuple(sorted(failed, key=lambda o: _position(self.failure_order, o.rank)))


def launch(job: Job) -> Launch:
    """Run ``job`` on ``job.world_size`` spawned ranks and collect how each ended."""
    import torch.distributed as dist

    context = multiprocessing.get_context("spawn")
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="gradcheck-ddp-") as name:
        folder = Path(name)
        rank_process.save_atomically(job, folder / rank_process.JOB_FILE)
        store = dist.TCPStore(
            "127.0.0.1",
            0,
            job.world_size + 1,
            is_master=True,
            timeout=datetime.timedelta(seconds=job.timeout_s),
            wait_for_workers=False,
        )
        processes = [
            context.Process(
                target=rank_process.main,
                args=(str(folder), rank, store.port),
                name=f"gradcheck-rank{rank}",
                daemon=True,
            )
            for rank in range(job.world_size)
        ]
        port = store.port
        try:
            for process in processes:
                process.start()
            stopped, noticed = _wait(processes, folder, started, job.timeout_s)
        finally:
            for process in processes:
                _stop(process)
            del store
        outcomes = tuple(
            _outcome(rank, process, folder, started, stopped.get(rank, ""))
            for rank, process in enumerate(processes)
        )
    return Launch(outcomes, tuple(noticed), time.time() - started, port)


def _wait(
    processes: list[Any], folder: Path, started: float, timeout_s: float
) -> tuple[dict[int, str], list[int]]:
    """Wait for every rank to exit. Returns the ranks stopped early with why (rank -> reason)
    and the failed ranks in the order their failure was noticed."""
    noticed: list[int] = []
    silent_soon: list[int] = []
    first_failure = math.inf
    while True:
        now = time.time()
        failed_now = []
        for rank, process in enumerate(processes):
            error = rank_process.paths(folder, rank)["error"]
            if rank not in noticed and (process.exitcode not in (None, 0) or error.exists()):
                failed_now.append((error.stat().st_mtime if error.exists() else 0.0, rank))
                first_failure = min(first_failure, now)
                if not error.exists() and now - first_failure <= SETTLE_S:
                    silent_soon.append(rank)
        # Noticed together: a rank that died without a word (a signal) comes first, as the
        # others' errors follow from it; then by when each wrote its error.
        noticed += [rank for _, rank in sorted(failed_now)]
        running = [rank for rank, p in enumerate(processes) if p.exitcode is None]
        order = _causes_first(noticed, silent_soon)
        if not running:
            return {}, order
        if now - first_failure > GRACE_S:
            reason = (
                f"was stopped {GRACE_S:g} s after rank {order[0]} failed (still running, "
                f"most likely waiting on rank {order[0]} in a collective)"
            )
            return {rank: reason for rank in running}, order
        if now - started > timeout_s:
            reason = f"timed out: still running after timeout_s={timeout_s:g} s"
            return {rank: reason for rank in running}, order
        time.sleep(POLL_S)


def _causes_first(noticed: list[int], silent: list[int]) -> list[int]:
    """The failed ranks in the order noticed, except that the ranks that died silently soon
    after the first failure (:data:`SETTLE_S`) come first: they are its likely cause."""
    return [rank for rank in noticed if rank in silent] + [
        rank for rank in noticed if rank not in silent
    ]


def _position(order: tuple[int, ...], rank: int) -> int:
    return order.index(rank) if rank in order else len(order) + rank


def _stop(process: Any) -> None:
    """SIGTERM, then SIGKILL; then reap the process."""
    if process.exitcode is None and process.pid is not None:
        process.terminate()
        process.join(STOP_WAIT_S)
        if process.exitcode is None:
            process.kill()
    if process.pid is not None:
        process.join()


def _outcome(rank: int, process: Any, folder: Path, started: float, stopped: str) -> RankOutcome:
    files = rank_process.paths(folder, rank)
    ready = _read(files["ready"])
    ready_s = float(ready) - started if ready else float("nan")
    if not stopped and process.exitcode == 0 and files["gradients"].exists():
        gradients = torch.load(files["gradients"], weights_only=True)
        return RankOutcome(rank, gradients, "", 0, ready_s)
    phase = _read(files["phase"]) or "starting (before gradcheck's code ran: spawn's bootstrap)"
    error = _read(files["error"])
    if stopped:
        failure = f"{stopped}, while {phase}"
    elif error:
        during, _, trace = error.partition("\n")
        failure = f"raised {_raised(trace)} while {during}{_innermost_frame(trace)}"
    else:
        failure = f"{_exit(process.exitcode)} while {phase}" + _log_tail(files["log"], phase)
    return RankOutcome(rank, None, failure, process.exitcode, ready_s, bool(stopped))


def _raised(trace: str) -> str:
    """The traceback's last line (``ValueError: ...``), cut at :data:`ERROR_CHARACTERS`."""
    last = next((line for line in reversed(trace.splitlines()) if line.strip()), "")
    return last if len(last) <= ERROR_CHARACTERS else last[:ERROR_CHARACTERS] + " ..."


def _innermost_frame(trace: str) -> str:
    """Where the exception was raised: the traceback's innermost ``File ...`` line and the
    source line below it."""
    lines = trace.splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    if not frames:
        return ""
    shown = lines[frames[-1] : frames[-1] + 2]
    return "\n" + "\n".join("    | " + line.strip() for line in shown)


def _exit(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"died (killed by {name})"
    return f"exited with code {exitcode} without a result"


def _log_tail(path: Path, phase: str) -> str:
    hint = ""
    if phase.startswith("starting"):
        hint = (
            "\n    a rank that fails before gradcheck's code runs usually could not import the "
            "caller's main module: call check_distributed under `if __name__ == '__main__':` "
            "in a script"
        )
    text = _read(path)
    if not text.strip():
        return hint
    return hint + "\n" + _indented_tail(text)


def _indented_tail(text: str) -> str:
    lines = text.strip().splitlines()[-LOG_TAIL_LINES:]
    return "\n".join("    | " + line for line in lines)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""
