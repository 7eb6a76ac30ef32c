"""Reference updates of ``torch.optim.SGD`` and ``torch.optim.Adam``, and the check that torch
follows them.

The references are written from the algorithms in the optimizers' documentation, not from
``torch.optim`` (which they never call): plain float64 tensor arithmetic, one parameter tensor at
a time, fed with the gradients torch saw. ``sgd_reference`` implements::

    g = -grad if maximize else grad;  g += weight_decay * p
    b = g at the first step, else momentum * b + (1 - dampening) * g
    g = g + momentum * b if nesterov else b        (when momentum != 0)
    p = p - lr * g

and ``adam_reference`` (``AdamW`` is Adam with ``decoupled_weight_decay=True``)::

    g = -grad if maximize else grad
    p *= 1 - lr * weight_decay if decoupled, else g += weight_decay * p
    m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g**2
    v_max = max(v_max, v) if amsgrad   (the raw average, not the bias-corrected one)
    p = p - lr * (m / (1 - beta1**t)) / (sqrt(v or v_max / (1 - beta2**t)) + eps)

Next to each reference value a :class:`Trajectory` carries a bound on how far an implementation
working in a lower ``measured_dtype`` may sit from it through rounding alone: every elementary
operation contributes a few units in the last place of the magnitude of its operands (computed by
the same recurrences on absolute values), and earlier errors are propagated through the update
to first order. That bound is the oracle's error estimate, so a float32 step can be judged to
within float32 rounding (the ResNet18 scenario uses it with no other tolerance).

:func:`check_optimizer_steps` runs a real torch optimizer on seeded random parameters and a
seeded loss for a few steps and returns one :class:`~gradcheck.results.Claim` per step;
:func:`record_steps` and :func:`judge_steps` are its two halves, for callers (a model) that bring
their own parameters and loss.
"""

from __future__ import annotations

import difflib
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.errors import InvalidArgument
from gradcheck.results import FAILED, INCONCLUSIVE, CheckResult, Claim
from gradcheck.tolerances import resolve_tolerance
from gradcheck.values import check_values

Tensor = torch.Tensor

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
"""Parameter dtypes the check can run torch's optimizer in (the reference is always float64)."""

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

_UNIT_ROUNDOFF_64 = 2.0**-53


# -- argument validation ---------------------------------------------------------------------


def _real(name: str, value: object, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be a real number (a Python int or float; "
            f"tensors are not supported here). Pass, for example, {name}={example}."
        )
    number = float(value)
    if not math.isfinite(number):
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be finite. Pass, for example, {name}={example}."
        )
    return number


def _non_negative(name: str, value: object, example: str) -> float:
    number = _real(name, value, example)
    if number < 0:
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be >= 0. Pass, for example, {name}={example}."
        )
    return number


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be True or False. Pass {name}=True or "
            f"{name}=False."
        )
    return value


def _beta_pair(value: object) -> tuple[float, float]:
    message = (
        f"Got betas={value!r}, but betas must be a pair (beta1, beta2) of numbers in [0, 1). "
        "Pass, for example, betas=(0.9, 0.999)."
    )
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise InvalidArgument(message)
    pair = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, (int, float)):
            raise InvalidArgument(message)
        number = float(item)
        if not 0.0 <= number < 1.0:
            raise InvalidArgument(message)
        pair.append(number)
    return pair[0], pair[1]


def _sgd_hyper(
    lr: object,
    momentum: object,
    dampening: object,
    nesterov: object,
    weight_decay: object,
    maximize: object,
) -> dict[str, Any]:
    hyper = {
        "lr": _non_negative("lr", lr, "0.01"),
        "momentum": _non_negative("momentum", momentum, "0.9"),
        "dampening": _real("dampening", dampening, "0.1"),
        "nesterov": _flag("nesterov", nesterov),
        "weight_decay": _non_negative("weight_decay", weight_decay, "1e-4"),
        "maximize": _flag("maximize", maximize),
    }
    if hyper["nesterov"] and hyper["momentum"] <= 0:
        raise InvalidArgument(
            f"Got nesterov=True with momentum={momentum!r}, but Nesterov momentum needs "
            "momentum > 0. Pass momentum=0.9 (for example) or nesterov=False."
        )
    if hyper["nesterov"] and hyper["dampening"] != 0:
        raise InvalidArgument(
            f"Got nesterov=True with dampening={dampening!r}, but Nesterov momentum needs "
            "dampening=0 (torch.optim.SGD refuses anything else). Pass dampening=0 or "
            "nesterov=False."
        )
    return hyper


def _adam_hyper(
    lr: object,
    betas: object,
    eps: object,
    weight_decay: object,
    amsgrad: object,
    maximize: object,
    decoupled_weight_decay: object,
) -> dict[str, Any]:
    return {
        "lr": _non_negative("lr", lr, "1e-3"),
        "betas": _beta_pair(betas),
        "eps": _non_negative("eps", eps, "1e-8"),
        "weight_decay": _non_negative("weight_decay", weight_decay, "1e-2"),
        "amsgrad": _flag("amsgrad", amsgrad),
        "maximize": _flag("maximize", maximize),
        "decoupled_weight_decay": _flag("decoupled_weight_decay", decoupled_weight_decay),
    }


def _as_float64_list(label: str, tensors: object) -> list[Tensor]:
    if isinstance(tensors, Tensor) or not isinstance(tensors, Sequence) or not tensors:
        raise InvalidArgument(
            f"Got {label}={_short(tensors)}, but {label} must be a non-empty list of tensors "
            f"(one per parameter). Pass, for example, {label}=[torch.zeros(3)]."
        )
    result = []
    for i, tensor in enumerate(tensors):
        if not isinstance(tensor, Tensor) or not tensor.is_floating_point():
            raise InvalidArgument(
                f"Got {label}[{i}]={_short(tensor)}, but every entry must be a floating-point "
                "tensor."
            )
        result.append(tensor.detach().to("cpu", torch.float64))
    return result


def _grads_by_parameter(params: list[Tensor], grads_per_step: object) -> list[list[Tensor]]:
    """The gradients regrouped as ``[parameter][step]``, in float64, after checking shapes."""
    if (
        isinstance(grads_per_step, Tensor)
        or not isinstance(grads_per_step, Sequence)
        or not grads_per_step
    ):
        raise InvalidArgument(
            f"Got grads_per_step={_short(grads_per_step)}, but it must be a non-empty list with "
            "one list of gradients (one per parameter) per step, for example "
            "grads_per_step=[[g0, g1], [g0_step2, g1_step2]]."
        )
    by_parameter: list[list[Tensor]] = [[] for _ in params]
    for t, grads in enumerate(grads_per_step):
        step = _as_float64_list(f"grads_per_step[{t}]", grads)
        if len(step) != len(params):
            raise InvalidArgument(
                f"Got {len(step)} gradient(s) in grads_per_step[{t}] for {len(params)} "
                "parameter(s); pass one gradient per parameter at every step."
            )
        for i, (grad, param) in enumerate(zip(step, params)):
            if grad.shape != param.shape:
                raise InvalidArgument(
                    f"Got grads_per_step[{t}][{i}] of shape {tuple(grad.shape)} for a parameter "
                    f"of shape {tuple(param.shape)}; each gradient must match its parameter."
                )
            by_parameter[i].append(grad)
    return by_parameter


def _short(value: object, limit: int = 60) -> str:
    if isinstance(value, Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- rounding model --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rounding:
    """How much one elementary operation may be off, in the measured dtype plus the reference's
    own float64: ``unit`` relative to the operands' magnitude, ``tiny`` absolute (underflow)."""

    unit: float
    tiny: float

    @classmethod
    def of(cls, dtype: torch.dtype) -> _Rounding:
        info = torch.finfo(dtype)
        return cls(unit=info.eps / 2 + _UNIT_ROUNDOFF_64, tiny=info.tiny * info.eps)

    def ops(self, count: float, magnitude: Tensor) -> Tensor:
        """The rounding of ``count`` operations on values of size ``magnitude``."""
        return count * (self.unit * magnitude + self.tiny)


def _unbounded_as_inf(bound: Tensor) -> Tensor:
    """A bound that became NaN (``0 * inf`` once a bound was infinite) is infinite."""
    return bound.nan_to_num(nan=math.inf, posinf=math.inf)


# -- the references, one parameter tensor at a time -------------------------------------------


def _sgd_parameter(
    p0: Tensor, grads: Sequence[Tensor], hyper: Mapping[str, Any], rounding: _Rounding
) -> tuple[list[Tensor], list[Tensor]]:
    lr, mu, tau = hyper["lr"], hyper["momentum"], hyper["dampening"]
    wd, nesterov, maximize = hyper["weight_decay"], hyper["nesterov"], hyper["maximize"]
    p, e_p = p0, torch.zeros_like(p0)
    buf = e_buf = mag_buf = None
    values, errors = [], []
    for grad in grads:
        g = -grad if maximize else grad
        mag_g, e_g = g.abs(), torch.zeros_like(g)
        if wd != 0:
            mag_g = mag_g + wd * p.abs()
            g = g + wd * p
            e_g = wd * e_p + rounding.ops(2, mag_g)
        if mu != 0:
            if buf is None or e_buf is None or mag_buf is None:
                buf, e_buf, mag_buf = g, e_g, mag_g
            else:
                mag_buf = mu * mag_buf + abs(1 - tau) * mag_g
                e_buf = mu * e_buf + abs(1 - tau) * e_g + rounding.ops(3, mag_buf)
                buf = mu * buf + (1 - tau) * g
            if nesterov:
                mag_d = mag_g + mu * mag_buf
                e_d = e_g + mu * e_buf + rounding.ops(2, mag_d)
                d = g + mu * buf
            else:
                d, e_d, mag_d = buf, e_buf, mag_buf
        else:
            d, e_d, mag_d = g, e_g, mag_g
        e_p = _unbounded_as_inf(e_p + lr * e_d + rounding.ops(3, p.abs() + lr * mag_d))
        p = p - lr * d
        values.append(p)
        errors.append(e_p)
    return values, errors


def _adam_parameter(
    p0: Tensor, grads: Sequence[Tensor], hyper: Mapping[str, Any], rounding: _Rounding
) -> tuple[list[Tensor], list[Tensor]]:
    lr, (beta1, beta2), eps = hyper["lr"], hyper["betas"], hyper["eps"]
    wd, amsgrad, maximize = hyper["weight_decay"], hyper["amsgrad"], hyper["maximize"]
    decoupled = hyper["decoupled_weight_decay"]
    zero = torch.zeros_like(p0)
    p, e_p = p0, zero
    m, e_m, mag_m = zero, zero, zero
    v, e_v, mag_v = zero, zero, zero
    v_max, e_v_max = zero, zero
    values, errors = [], []
    for t, grad in enumerate(grads, start=1):
        g = -grad if maximize else grad
        mag_g, e_g = g.abs(), zero
        if wd != 0 and decoupled:
            factor = 1 - lr * wd
            e_p = abs(factor) * e_p + rounding.ops(2, p.abs())
            p = p * factor
        elif wd != 0:
            mag_g = mag_g + wd * p.abs()
            g = g + wd * p
            e_g = wd * e_p + rounding.ops(2, mag_g)
        # m: torch lerps (m + (1 - beta1) * (g - m)); bound its rounding by |m| + |g| generously.
        e_m = beta1 * e_m + (1 - beta1) * e_g + rounding.ops(4, mag_m + mag_g)
        mag_m = beta1 * mag_m + (1 - beta1) * mag_g
        m = beta1 * m + (1 - beta1) * g
        mag_v = beta2 * mag_v + (1 - beta2) * mag_g**2
        e_v = beta2 * e_v + (1 - beta2) * (2 * g.abs() * e_g + e_g**2) + rounding.ops(3, mag_v)
        v = beta2 * v + (1 - beta2) * g * g
        if amsgrad:
            v_max = torch.maximum(v_max, v)
            e_v_max = torch.maximum(e_v_max, e_v)
            second, e_second = v_max, e_v_max
        else:
            second, e_second = v, e_v
        correction1 = 1 - beta1**t
        correction2 = 1 - beta2**t
        root = second.sqrt()
        e_root = root - (second - e_second).clamp_min(0).sqrt()
        denominator = root / math.sqrt(correction2) + eps
        e_denominator = e_root / math.sqrt(correction2) + rounding.ops(3, denominator)
        step_size = lr / correction1
        update = step_size * m / denominator
        low = denominator - e_denominator
        e_update = torch.where(
            low > 0,
            step_size * (e_m + m.abs() * e_denominator / denominator) / low.clamp_min(1e-300)
            + rounding.ops(3, step_size * mag_m / denominator),
            torch.full_like(p, math.inf),
        )
        e_p = _unbounded_as_inf(e_p + e_update + rounding.ops(2, p.abs() + update.abs()))
        p = p - update
        values.append(p)
        errors.append(e_p)
    return values, errors


@dataclass(frozen=True)
class Trajectory:
    """Reference parameter values after each step, with their rounding bounds.

    ``values[t][i]`` is parameter ``i`` after step ``t + 1`` (float64); ``errors[t][i]`` bounds,
    elementwise, how far an implementation computing in ``measured_dtype`` may sit from it
    through rounding alone (including the reference's own float64 rounding).
    """

    values: tuple[tuple[Tensor, ...], ...]
    errors: tuple[tuple[Tensor, ...], ...]
    measured_dtype: torch.dtype


def _trajectory(
    per_parameter: Callable[..., tuple[list[Tensor], list[Tensor]]],
    params: Sequence[Tensor],
    grads_per_step: Sequence[Sequence[Tensor]],
    hyper: Mapping[str, Any],
    measured_dtype: torch.dtype | None,
) -> Trajectory:
    start = _as_float64_list("params", params)
    grads = _grads_by_parameter(start, grads_per_step)
    dtype = _measured_dtype(measured_dtype, params)
    rounding = _Rounding.of(dtype)
    results = [per_parameter(p, g, hyper, rounding) for p, g in zip(start, grads)]
    steps = len(grads[0])
    return Trajectory(
        values=tuple(tuple(r[0][t] for r in results) for t in range(steps)),
        errors=tuple(tuple(r[1][t] for r in results) for t in range(steps)),
        measured_dtype=dtype,
    )


def _measured_dtype(dtype: object, params: Sequence[Tensor]) -> torch.dtype:
    if dtype is None:
        dtype = params[0].dtype
    if dtype not in SUPPORTED_DTYPES:
        raise InvalidArgument(
            f"Got measured_dtype={dtype!r}, but it must be one of "
            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)}. Pass the dtype torch's optimizer "
            "computed in, for example measured_dtype=torch.float32."
        )
    assert isinstance(dtype, torch.dtype)
    return dtype


def sgd_trajectory(
    params: Sequence[Tensor],
    grads_per_step: Sequence[Sequence[Tensor]],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
    measured_dtype: torch.dtype | None = None,
) -> Trajectory:
    """The documented SGD update applied to ``params`` with ``grads_per_step[t]`` at step t+1,
    in float64, with the rounding bound for an implementation in ``measured_dtype`` (default:
    the dtype of ``params[0]``)."""
    hyper = _sgd_hyper(lr, momentum, dampening, nesterov, weight_decay, maximize)
    return _trajectory(_sgd_parameter, params, grads_per_step, hyper, measured_dtype)


def adam_trajectory(
    params: Sequence[Tensor],
    grads_per_step: Sequence[Sequence[Tensor]],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    measured_dtype: torch.dtype | None = None,
) -> Trajectory:
    """The documented Adam update (AdamW with ``decoupled_weight_decay=True``) applied to
    ``params`` with ``grads_per_step[t]`` at step t+1, in float64, with the rounding bound for an
    implementation in ``measured_dtype`` (default: the dtype of ``params[0]``)."""
    hyper = _adam_hyper(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay)
    return _trajectory(_adam_parameter, params, grads_per_step, hyper, measured_dtype)


def sgd_reference(
    params: Sequence[Tensor],
    grads_per_step: Sequence[Sequence[Tensor]],
    *,
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    nesterov: bool = False,
    weight_decay: float = 0.0,
    maximize: bool = False,
) -> list[list[Tensor]]:
    """Parameter values (float64) after each step of the documented ``torch.optim.SGD`` update.

    ``params`` are the starting values; ``grads_per_step[t][i]`` is the gradient of parameter
    ``i`` at step ``t + 1`` (as the real optimizer would see it in ``.grad``). Returns
    ``[step][parameter]``. Dampening does not apply at the first step (the buffer starts as the
    gradient itself), as documented.
    """
    trajectory = sgd_trajectory(
        params,
        grads_per_step,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        nesterov=nesterov,
        weight_decay=weight_decay,
        maximize=maximize,
        measured_dtype=torch.float64,
    )
    return [list(step) for step in trajectory.values]


def adam_reference(
    params: Sequence[Tensor],
    grads_per_step: Sequence[Sequence[Tensor]],
    *,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
) -> list[list[Tensor]]:
    """Parameter values (float64) after each step of the documented ``torch.optim.Adam`` update
    (with bias correction; ``decoupled_weight_decay=True`` is ``torch.optim.AdamW``).

    Arguments as in :func:`sgd_reference`. With ``amsgrad`` the running maximum is taken of the
    raw second moment ``v`` and bias-corrected afterwards, as documented.
    """
    trajectory = adam_trajectory(
        params,
        grads_per_step,
        lr=lr,
        betas=betas,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
        measured_dtype=torch.float64,
    )
    return [list(step) for step in trajectory.values]


# -- which optimiser, with which hyper-parameters ----------------------------------------------


@dataclass(frozen=True)
class _Family:
    name: str
    torch_cls: type[torch.optim.Optimizer]
    documented: tuple[str, ...]
    fixed: Mapping[str, Any]
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
        adam_trajectory,
    ),
    _Family(
        "Adam",
        torch.optim.Adam,
        ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"),
        {},
        adam_trajectory,
    ),
    _Family(
        "SGD",
        torch.optim.SGD,
        ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"),
        {},
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
    merged = {**family.defaults(), **{k: v for k, v in hyper.items() if k in family.documented}}
    if family.trajectory is sgd_trajectory:
        reference = _sgd_hyper(
            merged["lr"],
            merged["momentum"],
            merged["dampening"],
            merged["nesterov"],
            merged["weight_decay"],
            merged["maximize"],
        )
    else:
        merged.update(family.fixed)
        reference = _adam_hyper(
            merged["lr"],
            merged["betas"],
            merged["eps"],
            merged["weight_decay"],
            merged["amsgrad"],
            merged["maximize"],
            merged["decoupled_weight_decay"],
        )
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
    count = _positive_int("steps", steps, "3")
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


def _ulp(values: Tensor, dtype: torch.dtype) -> Tensor:
    """The spacing of ``dtype`` numbers at ``values`` (float64 in, float64 out)."""
    info = torch.finfo(dtype)
    _, exponent = torch.frexp(values)
    spacing = torch.ldexp(torch.full_like(values, info.eps), exponent - 1)
    smallest = info.tiny * info.eps  # the spacing of subnormals, and at zero
    return torch.where(values == 0, smallest, spacing.clamp_min_(smallest))


def _where(name: str, flat: int, shape: torch.Size) -> str:
    index = torch.unravel_index(torch.tensor(flat), shape)
    return f"{name}[{', '.join(str(int(i)) for i in index)}]" if len(shape) else name


@dataclass
class _Tally:
    """What the comparison of one parameter tensor at one step found, merged over its chunks.

    ``excess`` is the largest ``|diff| - allowed`` (the element that decides the verdict);
    ``ulps`` the largest ``|diff|`` in units of the last place of the measured dtype at the
    larger of the parameter's value before and after the step; ``share`` the largest
    ``|diff| / rounding bound`` (how much of the rounding allowance was used).
    """

    excess: float = -math.inf
    excess_at: int = 0
    measured: float = math.nan
    expected: float = math.nan
    bound: float = 0.0
    ulps: float = 0.0
    ulps_at: int = 0
    ulps_diff: float = 0.0
    ulps_bound: float = 0.0
    share: float = 0.0
    failed: int = 0
    undecided: int = 0


def _tally_chunk(
    tally: _Tally,
    offset: int,
    measured: Tensor,
    before: Tensor,
    expected: Tensor,
    bound: Tensor,
    allowance: tuple[float, float, float],
) -> tuple[Tensor, Tensor]:
    """Compare one flat chunk and merge it into ``tally``; return the expected values and bounds
    with undecided elements (no finite reference, or an unbounded rounding bound) as NaN and 0."""
    atol, rtol, error_factor = allowance
    got = measured.to(torch.float64)
    decided = expected.isfinite() & bound.isfinite()
    undecided = int(decided.numel() - decided.sum())
    if undecided:
        expected = torch.where(decided, expected, math.nan)
        bound = torch.where(decided, bound, 0.0)
    diff = (got - expected).abs_()
    if undecided:
        diff = torch.where(decided, diff, 0.0)
    diff.nan_to_num_(nan=math.inf, posinf=math.inf)  # a NaN measured against a finite value
    excess = diff - (expected.abs() * rtol + atol + bound * error_factor)
    if undecided:
        excess = torch.where(decided, excess, -math.inf)
    tally.failed += int((excess > 0).sum())
    at = int(excess.argmax())
    if float(excess[at]) > tally.excess or tally.excess == -math.inf:
        tally.excess, tally.excess_at = float(excess[at]), offset + at
        tally.measured, tally.expected = float(got[at]), float(expected[at])
        tally.bound = float(bound[at])
    share = (diff / bound).nan_to_num_(nan=0.0, posinf=math.inf)
    tally.share = max(tally.share, float(share.max()))
    scale = torch.maximum(before.to(torch.float64).abs(), expected.nan_to_num(0.0).abs())
    ulps = diff.div_(_ulp(scale, measured.dtype))
    most = int(ulps.argmax())
    if float(ulps[most]) > tally.ulps:
        tally.ulps, tally.ulps_at = float(ulps[most]), offset + most
        tally.ulps_diff = float((got[most] - expected[most]).abs())
        tally.ulps_bound = float(bound[most])
    tally.undecided += undecided
    return expected, bound


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
) -> list[tuple[CheckResult, _Tally]]:
    """Judge parameter ``index`` at every recorded step: one check and one tally per step."""
    initial = recording.initial[index]
    shape, dtype, size = initial.shape, initial.dtype, initial.numel()
    tolerance = resolve_tolerance(dtype, "formula", atol=atol, rtol=rtol)
    allowance = (tolerance.atol, tolerance.rtol, tolerance.error_factor)
    steps = len(recording.after)
    flat_initial = initial.reshape(-1)
    flat_grads = [grads[index].reshape(-1) for grads in recording.grads]
    flat_after = [after[index].reshape(-1) for after in recording.after]
    tallies = [_Tally() for _ in range(steps)]
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
            expected, bound = _tally_chunk(
                tallies[t],
                start,
                flat_after[t][piece],
                before,
                trajectory.values[t][0],
                trajectory.errors[t][0],
                allowance,
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
                f"{_where(name, tally.excess_at, shape)} (worst of {size})",
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
    per_step: list[list[tuple[CheckResult, _Tally]]] = [[] for _ in recording.after]
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
    judged: Sequence[tuple[CheckResult, _Tally]],
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
            at = _where(recording.names[i], worst.ulps_at, after[i].shape)
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


def _positive_int(name: str, value: object, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be an integer >= 1. Pass, for example, "
            f"{name}={example}."
        )
    return value


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
    count = _positive_int("steps", steps, "3")
    sizes = _shapes(shapes)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise InvalidArgument(
            f"Got seed={seed!r}, but seed must be an integer in [0, 2**63). Pass, for example, "
            "seed=0."
        )
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
