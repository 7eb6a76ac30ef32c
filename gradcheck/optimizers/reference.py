"""The documented updates of ``torch.optim.SGD`` and ``torch.optim.Adam``, in float64, with a
bound on how far a lower-precision implementation may sit from them through rounding alone.

The references are written from the algorithms in the optimizers' documentation, not from
``torch.optim`` (which they never call): plain float64 tensor arithmetic, one parameter tensor at
a time. ``sgd_reference`` implements::

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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.errors import InvalidArgument

Tensor = torch.Tensor

SUPPORTED_DTYPES = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
"""Parameter dtypes the check can run torch's optimizer in (the reference is always float64)."""

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
