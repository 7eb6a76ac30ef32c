"""The check that a real ``torch.optim`` optimizer follows its documented update.

:func:`check_optimizer_steps` runs a real torch optimizer on seeded random parameters and a
seeded loss for a few steps and returns one :class:`~gradcheck.results.Claim` per step;
:func:`record_steps` and :func:`judge_steps` are its two halves, for callers (a model) that bring
their own parameters and loss. Each step is judged against the float64 reference of
:mod:`gradcheck.optimizers.reference`, fed with the gradients torch saw, allowing its propagated
rounding bound.

The module constants (:data:`LOSS_SCALES`, :data:`CHUNK_ELEMENTS`, ...) are read here at call
time: patch them on this module, not on the :mod:`gradcheck.optimizers` facade.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument
from gradcheck.optimizers.reference import (
    SUPPORTED_DTYPES,
    Trajectory,
    _adam_hyper,
    _sgd_hyper,
    _short,
    adam_trajectory,
    sgd_trajectory,
)
from gradcheck.optimizers.tally import Tally, tally_chunk, where
from gradcheck.results import CheckResult, Claim
from gradcheck.status import FAILED, INCONCLUSIVE
from gradcheck.tolerances import resolve_tolerance
from gradcheck.values import check_values

Tensor = torch.Tensor

IMPLEMENTATION_KEYS = ("foreach", "fused")
"""Keyword arguments that pick torch's implementation, not the algorithm: passed to torch only."""

FULL_CHECK_MAX_ELEMENTS = 4096
"""Parameter tensors up to this size are judged element by element through
:func:`~gradcheck.values.check_values`; larger ones are compared as tensors and only their worst
element is passed on (it decides: if it is within its tolerance, every element is)."""

MEASURED_VALUES_MAX = 64
"""A claim lists the measured values only up to this many (a ResNet has 11.7 million)."""

LOSS_SCALES = (10.0, 0.1)
"""The loss scale of odd and even steps in :func:`check_optimizer_steps`: gradients shrink about
100-fold every other step, which is when AMSGrad's running maximum differs from ``v`` (it needs
``|g_t| < sqrt(1 - beta2) * |g_(t-1)|``, 0.03 for the default beta2)."""


# -- which optimiser, with which hyper-parameters ----------------------------------------------


@dataclass(frozen=True)
class _Family:
    name: str
    torch_cls: type[torch.optim.Optimizer]
    documented: tuple[str, ...]
    fixed: Mapping[str, Any]  # hyper-parameters the family pins (AdamW's decoupling)
    validate: Callable[..., dict[str, Any]]  # keyword hyper-parameters -> validated dict
    trajectory: Callable[..., Trajectory]

    def defaults(self) -> dict[str, Any]:
        """The documented defaults, read from the torch class's signature."""
        signature = inspect.signature(self.torch_cls.__init__)
        return {key: signature.parameters[key].default for key in self.documented}


_FAMILIES = (
    _Family(
        "AdamW",
        torch.optim.AdamW,
        ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize"),
        {"decoupled_weight_decay": True},
        _adam_hyper,
        adam_trajectory,
    ),
    _Family(
        "Adam",
        torch.optim.Adam,
        ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"),
        {},
        _adam_hyper,
        adam_trajectory,
    ),
    _Family(
        "SGD",
        torch.optim.SGD,
        ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"),
        {},
        _sgd_hyper,
        sgd_trajectory,
    ),
)


@dataclass(frozen=True)
class _Resolved:
    family: _Family
    reference: dict[str, Any]  # every documented hyper-parameter, validated
    torch_kwargs: dict[str, Any]  # what the caller passed, normalised, for the real optimizer
    label: str  # Adam(amsgrad=True, weight_decay=0.01)


def _resolve(optimizer_cls: object, hyper: object) -> _Resolved:
    if not isinstance(optimizer_cls, type):
        raise InvalidArgument(
            f"Got optimizer_cls={_short(optimizer_cls)}, but it must be an optimizer class (not "
            "an instance) such as torch.optim.SGD, torch.optim.Adam or torch.optim.AdamW."
        )
    family = next((f for f in _FAMILIES if issubclass(optimizer_cls, f.torch_cls)), None)
    if family is None:
        raise InvalidArgument(
            f"Got optimizer_cls={optimizer_cls.__module__}.{optimizer_cls.__qualname__}, but "
            "gradcheck has documented reference updates only for torch.optim.SGD, "
            "torch.optim.Adam and torch.optim.AdamW (and their subclasses). Pass one of those."
        )
    if hyper is None:
        hyper = {}
    if not isinstance(hyper, Mapping) or not all(isinstance(k, str) for k in hyper):
        raise InvalidArgument(
            f"Got hyper={_short(hyper)}, but hyper must be a dict of keyword arguments for "
            f"{family.name}, for example hyper={{'lr': 0.01}}."
        )
    accepted = (*family.documented, *IMPLEMENTATION_KEYS)
    for key in hyper:
        if key in accepted:
            continue
        if key in ("capturable", "differentiable"):
            raise InvalidArgument(
                f"Got hyper key {key!r}, but check_optimizer_steps runs on CPU leaf parameters, "
                f"where {key}=True is not usable; leave {key!r} out."
            )
        close = difflib.get_close_matches(key, accepted, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise InvalidArgument(
            f"Got hyper key {key!r}, but {family.name} accepts only {', '.join(accepted)}.{hint}"
        )
    given = {k: v for k, v in hyper.items() if k in family.documented}
    reference = family.validate(**{**family.defaults(), **given, **family.fixed})
    implementation = {}
    for key in IMPLEMENTATION_KEYS:
        if key in hyper:
            value = hyper[key]
            if value is not None and not isinstance(value, bool):
                raise InvalidArgument(
                    f"Got {key}={value!r}, but {key} must be True, False or None."
                )
            implementation[key] = value
    if implementation.get("foreach") and implementation.get("fused"):
        raise InvalidArgument(
            "Got foreach=True and fused=True, but torch runs one implementation at a time. "
            "Pass only one of them."
        )
    torch_kwargs = {k: reference[k] for k in family.documented if k in hyper}
    torch_kwargs.update(implementation)
    shown = ", ".join(f"{k}={hyper[k]!r}" for k in accepted if k in hyper)
    return _Resolved(family, reference, torch_kwargs, f"{optimizer_cls.__name__}({shown})")


# -- running torch, and judging it ------------------------------------------------------------


@dataclass(frozen=True)
class Recording:
    """What a real torch optimizer did: the parameters before the first step, the gradients it
    saw at each step and the parameters after each step (all detached copies)."""

    names: tuple[str, ...]
    initial: tuple[Tensor, ...]
    grads: tuple[tuple[Tensor, ...], ...]
    after: tuple[tuple[Tensor, ...], ...]


def record_steps(
    optimizer_cls: type[torch.optim.Optimizer],
    hyper: Mapping[str, Any] | None,
    params: Sequence[Tensor] | Sequence[tuple[str, Tensor]],
    loss_fn: Callable[[], Tensor],
    *,
    steps: int,
) -> Recording:
    """Run ``optimizer_cls(params, **hyper)`` for ``steps`` steps of ``zero_grad()``,
    ``loss_fn().backward()``, ``step()``, recording what it saw and did.

    ``params`` are leaf tensors, or ``(name, tensor)`` pairs such as ``model.named_parameters()``
    (the names label the checks). Every parameter must receive a gradient at every step. The
    parameters are updated in place, as by any optimizer.
    """
    resolved = _resolve(optimizer_cls, hyper)
    count = validation.positive_int("steps", steps, "3")
    items: list[Any] = list(params)
    if not items:
        raise InvalidArgument("Got params=[], but at least one parameter is needed.")
    names: tuple[str, ...]
    tensors: list[Any]
    if all(isinstance(item, tuple) and len(item) == 2 for item in items):
        names = tuple(str(item[0]) for item in items)
        tensors = [item[1] for item in items]
    else:
        names = tuple(f"p{i}" for i in range(len(items)))
        tensors = items
    for name, tensor in zip(names, tensors):
        if not isinstance(tensor, Tensor) or not tensor.is_leaf or not tensor.requires_grad:
            raise InvalidArgument(
                f"Got parameter {name}={_short(tensor)}, but every parameter must be a leaf "
                "tensor with requires_grad=True."
            )
    initial = tuple(t.detach().clone() for t in tensors)
    grads, after = [], []
    with torch.inference_mode(False), torch.enable_grad():
        optimizer = optimizer_cls(tensors, **resolved.torch_kwargs)  # type: ignore[call-arg]
        for step in range(1, count + 1):
            optimizer.zero_grad()
            loss_fn().backward()
            seen = []
            for name, tensor in zip(names, tensors):
                if tensor.grad is None:
                    raise InvalidArgument(
                        f"Parameter {name} has no .grad after loss_fn().backward() at step "
                        f"{step}; every parameter must take part in the loss."
                    )
                seen.append(tensor.grad.detach().clone())
            grads.append(tuple(seen))
            optimizer.step()
            after.append(tuple(t.detach().clone() for t in tensors))
    return Recording(names, initial, tuple(grads), tuple(after))


CHUNK_ELEMENTS = 1 << 20
"""Large parameters are compared in flat chunks of this many elements: the reference is
elementwise, and chunks this size are several times faster than whole 10-million-element
tensors (fresh huge buffers page-fault)."""


def _judge_parameter(
    name: str,
    family: _Family,
    reference: Mapping[str, Any],
    recording: Recording,
    index: int,
    *,
    atol: float | None,
    rtol: float | None,
    seed: int,
    reproduce: str,
) -> list[tuple[CheckResult, Tally]]:
    """Judge parameter ``index`` at every recorded step: one check and one tally per step."""
    initial = recording.initial[index]
    shape, dtype, size = initial.shape, initial.dtype, initial.numel()
    tolerance = resolve_tolerance(dtype, "formula", atol=atol, rtol=rtol)
    steps = len(recording.after)
    flat_initial = initial.reshape(-1)
    flat_grads = [grads[index].reshape(-1) for grads in recording.grads]
    flat_after = [after[index].reshape(-1) for after in recording.after]
    tallies = [Tally() for _ in range(steps)]
    kept: list[tuple[Tensor, Tensor]] = []
    for start in range(0, size, CHUNK_ELEMENTS):
        piece = slice(start, min(start + CHUNK_ELEMENTS, size))
        trajectory = family.trajectory(
            [flat_initial[piece]],
            [[grads[piece]] for grads in flat_grads],
            **reference,
            measured_dtype=dtype,
        )
        for t in range(steps):
            before = flat_initial[piece] if t == 0 else flat_after[t - 1][piece]
            expected, bound = tally_chunk(
                tallies[t],
                start,
                flat_after[t][piece],
                before,
                trajectory.values[t][0],
                trajectory.errors[t][0],
                tolerance,
            )
            if size <= FULL_CHECK_MAX_ELEMENTS:
                kept.append((expected.reshape(shape), bound.reshape(shape)))
    results = []
    for t, tally in enumerate(tallies):
        if size <= FULL_CHECK_MAX_ELEMENTS:
            expected, bound = kept[t]
            check = check_values(
                name,
                recording.after[t][index],
                expected,
                oracle="formula",
                errors=bound,
                atol=atol,
                rtol=rtol,
                seed=seed,
                reproduce=reproduce,
            )
        else:
            check = check_values(
                f"{where(name, tally.excess_at, shape)} (worst of {size})",
                recording.after[t][index].reshape(-1)[tally.excess_at : tally.excess_at + 1],
                [tally.expected],
                oracle="formula",
                errors=[tally.bound],
                dtype=dtype,
                atol=atol,
                rtol=rtol,
                seed=seed,
                reproduce=reproduce,
            )
        results.append((check, tally))
    return results


def judge_steps(
    optimizer_cls: type[torch.optim.Optimizer],
    hyper: Mapping[str, Any] | None,
    recording: Recording,
    *,
    atol: float | None = None,
    rtol: float | None = None,
    seed: int = 0,
    reproduce: str = "",
    suffix: str = "",
) -> list[Claim]:
    """One claim per recorded step: torch's parameters after the step against the documented
    update of ``optimizer_cls`` with ``hyper``, fed with the gradients torch saw.

    Each parameter tensor is judged under the ``(dtype, "formula")`` tolerance row (``atol`` and
    ``rtol`` override it) widened by the rounding bound of the reference trajectory; pass
    ``atol=0, rtol=0`` to accept rounding alone. A tensor of up to
    :data:`FULL_CHECK_MAX_ELEMENTS` values gives a check of every element; a larger one a check
    of its worst element (it decides the verdict). Elements the reference cannot value (0/0 in
    Adam with ``eps=0``) or whose rounding bound is unbounded (``eps`` below the resolution of
    float16) are not judged; a tensor with no judged element makes the claim inconclusive, not
    passed. ``suffix`` is appended to each statement.
    """
    resolved = _resolve(optimizer_cls, hyper)
    if not recording.after:
        raise InvalidArgument("Got a recording with no steps; record at least one step.")
    family = resolved.family
    reproduce = reproduce or f"gradcheck.optimizers.judge_steps({resolved.label}, ...)"
    per_step: list[list[tuple[CheckResult, Tally]]] = [[] for _ in recording.after]
    for i, name in enumerate(recording.names):
        judged = _judge_parameter(
            name,
            family,
            resolved.reference,
            recording,
            i,
            atol=atol,
            rtol=rtol,
            seed=seed,
            reproduce=reproduce,
        )
        for t, result in enumerate(judged):
            per_step[t].append(result)
    return [
        _step_claim(
            f"{resolved.label} step {t} matches the documented update{suffix}",
            family.name,
            recording,
            t,
            judged,
        )
        for t, judged in enumerate(per_step, start=1)
    ]


def _step_claim(
    statement: str,
    family: str,
    recording: Recording,
    step: int,
    judged: Sequence[tuple[CheckResult, Tally]],
) -> Claim:
    after = recording.after[step - 1]
    checks = tuple(check for check, _ in judged)
    failed = [c for c in checks if c.status == FAILED]
    unjudged = [c for c in checks if c.status == INCONCLUSIVE]
    values = sum(a.numel() for a in after)
    dtypes = "/".join(sorted({str(a.dtype).removeprefix("torch.") for a in after}))
    i, worst = max(enumerate(t for _, t in judged), key=lambda item: item[1].ulps)
    if failed:
        wrong = sum(t.failed for _, t in judged)
        detail = (
            f"{failed[0].message}\n{wrong:,} of {values:,} values in {len(failed)} of "
            f"{len(checks)} parameter tensor(s) fail"
        )
    elif unjudged:
        detail = unjudged[0].message
    else:
        detail = (
            f"{len(checks)} parameter tensor(s), {values:,} value(s) match the documented "
            f"{family} update: "
        )
        if worst.ulps == 0:
            detail += "every value equals the float64 reference exactly"
        else:
            at = where(recording.names[i], worst.ulps_at, after[i].shape)
            detail += (
                f"worst {worst.ulps:.2f} ulp of {dtypes} (|diff| {worst.ulps_diff:.2e} at {at}; "
                f"rounding bound there {worst.ulps_bound:.1e}); at most "
                f"{100 * max(t.share for _, t in judged):.0f}% of the rounding bound used"
            )
    undecided = sum(t.undecided for _, t in judged)
    if undecided:
        detail += (
            f"; {undecided} value(s) not judged: the reference has no finite value there or "
            "rounding could move it without bound (eps below the dtype's resolution)"
        )
    measured = None
    if values <= MEASURED_VALUES_MAX:
        measured = tuple(v for a in after for v in a.double().reshape(-1).tolist())
    return Claim(
        statement=statement,
        passed=not failed and not unjudged,
        detail=detail,
        measured=measured,
        checks=checks,
    )


def _shapes(value: object) -> list[tuple[int, ...]]:
    message = (
        f"Got shapes={_short(value)}, but shapes must be a non-empty sequence of tensor shapes "
        "with at least one element each, for example shapes=((3,), (2, 2))."
    )
    if not isinstance(value, (tuple, list)) or not value:
        raise InvalidArgument(message)
    shapes = []
    for shape in value:
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape
        ):
            raise InvalidArgument(message)
        shapes.append(tuple(shape))
    return shapes


def _seeded_problem(
    sizes: Sequence[tuple[int, ...]], steps: int, seed: int, dtype: torch.dtype
) -> tuple[list[Tensor], Callable[[], Tensor]]:
    """Seeded parameters and the loss whose call number ``t`` is
    ``LOSS_SCALES[t % 2] * sum_i <w_i, sin(p_i)>``."""
    generator = torch.Generator().manual_seed(seed)
    params = [
        torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype).requires_grad_()
        for shape in sizes
    ]
    weights = [torch.randn(shape, generator=generator, dtype=torch.float64) for shape in sizes]
    scaled = [[(w * LOSS_SCALES[t % 2]).to(dtype) for w in weights] for t in range(steps)]
    calls: list[int] = []

    def loss() -> Tensor:
        step_weights = scaled[len(calls) % steps]
        calls.append(1)
        return sum(
            ((w * torch.sin(p)).sum() for w, p in zip(step_weights, params)),
            torch.zeros((), dtype=dtype),
        )

    return params, loss


def check_optimizer_steps(
    optimizer_cls: type[torch.optim.Optimizer],
    hyper: Mapping[str, Any] | None = None,
    *,
    steps: int = 3,
    shapes: Sequence[Sequence[int]] = ((3,), (2, 2)),
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    reproduce: str = "",
) -> list[Claim]:
    """Run the real ``optimizer_cls(**hyper)`` for ``steps`` steps and judge every step against
    the documented update; one :class:`~gradcheck.results.Claim` per step.

    The parameters (one per entry of ``shapes``, in ``dtype``) and the loss of step ``t``,
    ``s_t * sum_i <w_i, sin(p_i)>``, are drawn from a generator seeded with ``seed``; the global
    RNG is not touched. The gradient ``s_t * w_i * cos(p_i)`` changes every step, and its size
    too (``s_t`` alternates between the :data:`LOSS_SCALES` 10 and 0.1), so a momentum buffer
    and AMSGrad's running maximum both matter.

    ``optimizer_cls`` is ``torch.optim.SGD``, ``Adam``, ``AdamW`` or a subclass (a subclass is
    held to its base's documented algorithm and defaults). ``hyper`` holds its keyword
    arguments, validated up front; ``foreach`` and ``fused`` choose torch's implementation and
    are passed through. Each step is judged as :func:`judge_steps` describes: the float64
    tolerance row plus the propagated rounding bound. In float16/bfloat16, Adam with an ``eps``
    below the dtype's resolution can divide by a rounded-away denominator; such elements are
    not judged, and a tensor with none judged makes the step's claim inconclusive (not passed).
    ``reproduce`` replaces the default reproduce line (a scenario passes its own).
    """
    _resolve(optimizer_cls, hyper)  # validate before drawing anything
    count = validation.positive_int("steps", steps, "3")
    sizes = _shapes(shapes)
    validation.seed(seed)
    if dtype not in SUPPORTED_DTYPES:
        raise InvalidArgument(
            f"Got dtype={dtype!r}, but dtype must be one of "
            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)}. Pass, for example, "
            "dtype=torch.float32."
        )
    with torch.inference_mode(False):  # the caller's inference mode would freeze the tensors
        params, loss = _seeded_problem(sizes, count, seed, dtype)
        recording = record_steps(optimizer_cls, hyper, params, loss, steps=count)
    dtype_name = str(dtype).removeprefix("torch.")
    reproduce = reproduce or (
        f"gradcheck.optimizers.check_optimizer_steps({optimizer_cls.__module__}."
        f"{optimizer_cls.__qualname__}, {dict(hyper or {})!r}, steps={count}, "
        f"shapes={tuple(sizes)!r}, seed={seed}, dtype=torch.{dtype_name})"
    )
    suffix = "" if dtype == torch.float64 else f" (in {dtype_name})"
    return judge_steps(
        optimizer_cls, hyper, recording, seed=seed, reproduce=reproduce, suffix=suffix
    )
