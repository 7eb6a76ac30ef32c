"""One op's samples through the three checks, as a stream of events; and the worker process
that runs ops for :mod:`gradcheck.ops.pool` and sends the events back over a pipe.

Events are plain tuples (they cross a process boundary):

- ``("ready", [(key, name, variant, skip, expected_failure), ...])``: the worker loaded
  op_db and selected;
- ``("fatal", message)``: it could not (expecttest missing, no OpInfo in this torch);
- ``("phase", key, index, phase)``: about to run ``phase`` (``samples``, or one of
  :data:`~gradcheck.ops.sides.SIDES`) on sample ``index`` (None while generating samples);
- ``("sample", key, index, {"shapes": ..., "description": ...})``;
- ``("side", key, index, side, outcome)``; ``("op_error", key, message)``;
- ``("op_end", key, samples)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

SAMPLES_PHASE = "samples"


@dataclass(frozen=True)
class Settings:
    """What a run checks and how: every field is plain data, so it crosses to a worker."""

    patterns: tuple[str, ...]
    samples: int
    dtype: str
    device: str
    seed: int
    timeout_s: float
    database: str = ""
    """``"module:attribute"``: a list of OpInfo records to check instead of torch's op_db."""
    order: int = 1
    """1: gradients against torch.autograd.gradcheck; 2: second derivatives against
    torch.autograd.gradgradcheck."""


def op_events(selected: Any, settings: Settings, start: int = 0) -> Iterator[tuple]:
    """The events of one selected op (a :class:`~gradcheck.ops.database.Selected`), from
    sample ``start`` on; every check runs with the caller's random state left alone."""
    import torch

    from gradcheck.ops.samples import case_of, first_samples, preserved_rng
    from gradcheck.ops.sides import SIDES, first_lines, run_side, warm_up

    key, op = selected.key, selected.op
    yield ("phase", key, None, SAMPLES_PHASE)
    try:
        samples = first_samples(
            op, settings.device, getattr(torch, settings.dtype), settings.samples
        )
    except Exception as error:
        yield (
            "op_error",
            key,
            f"sample_inputs raised {type(error).__name__}: {first_lines(str(error), 1)}",
        )
        yield ("op_end", key, 0)
        return
    nondet_tol = float(getattr(op, "gradcheck_nondet_tol", 0.0) or 0.0)
    for index in range(start, len(samples)):
        try:
            case = case_of(op, samples[index])
        except Exception as error:
            yield ("op_error", key, f"sample {index}: {type(error).__name__}: {error}")
            continue
        yield ("sample", key, index, {"shapes": case.shapes, "description": case.description})
        for side in SIDES:
            yield ("phase", key, index, side)
            if side == SIDES[0]:  # within the first side's hard limit: an op that hangs hangs there
                with preserved_rng():
                    warm_up(case, settings.timeout_s)
            with preserved_rng():
                outcome = run_side(
                    side, case, settings.seed, nondet_tol, settings.timeout_s, settings.order
                )
            yield ("side", key, index, side, outcome)
    yield ("op_end", key, len(samples))


def selection(settings: Settings) -> list[Any]:
    """The selected ops of torch's op_db for ``settings`` (may raise InvalidArgument)."""
    import torch

    from gradcheck.ops.database import op_database, records_at, select

    records = records_at(settings.database) if settings.database else op_database()
    device_type = torch.device(settings.device).type
    return select(
        records, settings.patterns, device_type, getattr(torch, settings.dtype), settings.order
    )


def announcement(chosen: list[Any]) -> list[tuple[str, str, str, str, bool]]:
    """The ``ready`` event's list: ``(key, name, variant, skip, expected_failure)`` each."""
    return [(s.key, s.name, s.variant, s.skip, s.expected_failure) for s in chosen]


def worker_main(connection: Any, settings: Settings) -> None:
    """A worker process: select, announce, then run each ``(key, start)`` task it receives
    until it receives None. One CPU thread: OpInfo samples are small, and timings then do not
    depend on how many workers share the machine. Warnings are not shown."""
    import warnings

    import torch

    from gradcheck.errors import InvalidArgument

    warnings.simplefilter("ignore")  # ops' deprecation notes; results say what matters
    torch.set_num_threads(1)
    try:
        chosen = {s.key: s for s in selection(settings)}
    except InvalidArgument as error:
        connection.send(("fatal", str(error)))
        return
    connection.send(("ready", announcement(list(chosen.values()))))
    while True:
        task = connection.recv()
        if task is None:
            return
        key, start = task
        for event in op_events(chosen[key], settings, start):
            connection.send(event)
