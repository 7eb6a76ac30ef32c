"""Argument checks shared by every public check: each validates one argument the same way.

Every function here takes the argument's name as the caller wrote it and the value, and either
returns the value (normalised) or raises :class:`~gradcheck.InvalidArgument` with a message that
repeats the argument as written and says how to fix it:
``Got seed=-1, but seed must be an integer in [0, 9223372036854775806] ...``.
"""

from __future__ import annotations

import math
import pickle
import sys
from typing import Any

import torch

from gradcheck.errors import InvalidArgument

MAX_SEED = 2**63 - 2
"""The largest seed any check takes: torch generators take 64-bit seeds, and a check derives
``seed + 1`` (random directions) from it."""


def short_repr(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters, for messages about bad arguments."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def seed(value: object, name: str = "seed") -> int:
    """A seed: an integer in ``[0, MAX_SEED]`` (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be an integer in [0, {MAX_SEED}] "
            f"(torch generators take 64-bit seeds). Pass a small integer such as {name}=0."
        )
    return int(value)


def positive_int(name: str, value: object, example: str = "3") -> int:
    """An integer >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be an integer >= 1. Pass, for "
            f"example, {name}={example}."
        )
    return int(value)


def non_negative_or_none(name: str, value: object) -> float | None:
    """A finite number >= 0, or None (a tolerance override: None keeps the table default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be a non-negative number or None. "
            f"Pass a float such as {name}=1e-8, or None for the table default."
        )
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(
            f"Got {name}={value!r}, but {name} must be finite and >= 0. "
            f"Pass a float such as {name}=1e-8, or None for the table default."
        )
    return float(value)


def callable_fn(value: object, name: str = "fn") -> Any:
    """A callable (the function under check), not the result of calling it."""
    if not callable(value):
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be callable. Pass the function "
            "itself, for example check_function(torch.sin, x), not the result of calling it."
        )
    return value


def optional_name(value: object, name: str = "name") -> str | None:
    """A display name: a string, or None for the function's own name."""
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be a string or None (None uses "
            "fn's own name)."
        )
    return value


def floating_dtype(value: object, name: str = "dtype") -> torch.dtype:
    """A floating-point ``torch.dtype``."""
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be a floating-point torch.dtype "
            "such as torch.float64 (the dtype of truth) or torch.float32."
        )
    return value


def flag(name: str, value: object) -> bool:
    """A bool (not a truthy number or string)."""
    if not isinstance(value, bool):
        raise InvalidArgument(f"Got {name}={short_repr(value)}, but {name} must be True or False.")
    return value


def one_of(name: str, value: object, choices: tuple[str, ...], meaning: str = "") -> str:
    """One of the strings in ``choices``; ``meaning`` explains them in the message."""
    if not isinstance(value, str) or value not in choices:
        listed = " or ".join(repr(c) for c in choices)
        explained = f" ({meaning})" if meaning else ""
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but {name} must be {listed}{explained}."
        )
    return value


def unavailable_device(device: object) -> str:
    """Why ``device`` cannot run here, or "" when it can; an unparsable device raises."""
    try:
        parsed = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgument(
            f"Got device={device!r}, which torch does not understand ({exc}). Use 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return (
                f"CUDA is not available here (torch {torch.__version__}, "
                f"torch.version.cuda={torch.version.cuda}, torch.cuda.is_available() is False)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            return f"{parsed} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
    elif parsed.type not in ("cpu", "cuda"):
        return f"device type {parsed.type!r} is not supported by gradcheck (use cpu or cuda)"
    return ""


def available_device(device: object) -> torch.device:
    """A device that can run here (cpu, or a visible cuda device)."""
    reason = unavailable_device(device)
    if reason:
        raise InvalidArgument(
            f"Got device={device!r}, but {reason}. Use device='cpu', or run where a GPU is visible."
        )
    return torch.device(device)  # type: ignore[call-overload]


LAYOUTS = (
    torch.strided,
    torch.sparse_coo,
    torch.sparse_csr,
    torch.sparse_csc,
    torch.sparse_bsr,
    torch.sparse_bsc,
)
"""The layouts an input may have: dense, or sparse (checked through its stored values)."""


def tensor_tuple(inputs: object, *, complex_ok: bool = False) -> tuple[torch.Tensor, ...]:
    """``inputs`` (one tensor or a sequence of them) as a non-empty tuple of tensors, dense or
    sparse, with values (not on the meta device), real unless ``complex_ok``."""
    if isinstance(inputs, torch.Tensor):
        arguments: tuple[object, ...] = (inputs,)
    elif isinstance(inputs, (tuple, list)):
        arguments = tuple(inputs)
    else:
        raise InvalidArgument(
            f"Got inputs of type {type(inputs).__name__}, but inputs must be a torch.Tensor or "
            "a tuple of tensors. Wrap numbers with torch.tensor(..., dtype=torch.float64)."
        )
    if not arguments:
        raise InvalidArgument(
            "Got inputs=(), but there must be at least one tensor to differentiate."
        )
    for i, item in enumerate(arguments):
        if not isinstance(item, torch.Tensor):
            raise InvalidArgument(
                f"Got inputs[{i}] of type {type(item).__name__} ({short_repr(item)}), but every "
                "input must be a torch.Tensor. Wrap it with torch.tensor(..., "
                "dtype=torch.float64), or bind non-tensor arguments with a lambda: "
                "check_function(lambda x: fn(x, 3), x)."
            )
        if item.device.type == "meta":
            raise InvalidArgument(
                f"Got inputs[{i}] on the meta device, which holds no values to differentiate "
                "at. Materialise it first, for example torch.randn(shape, dtype=torch.float64)."
            )
        if item.layout not in LAYOUTS:
            raise InvalidArgument(
                f"Got inputs[{i}] with layout {item.layout}, but only dense (strided) and "
                "sparse (COO, CSR, CSC, BSR, BSC) tensors are supported. Convert it with "
                ".to_dense()."
            )
        if item.is_complex() and not complex_ok:
            raise InvalidArgument(
                f"Got inputs[{i}] of dtype {item.dtype}, but complex gradients are not "
                "supported. Check the real and imaginary parts as separate real inputs."
            )
    return arguments  # type: ignore[return-value]


def finite_tensor(tensor: torch.Tensor, where: str) -> torch.Tensor:
    """A tensor with no NaN/Inf value (a gradient at a non-finite point is meaningless)."""
    bad = (~torch.isfinite(tensor.detach())).nonzero()
    if len(bad):
        first = tuple(int(j) for j in bad[0])
        raise InvalidArgument(
            f"Got {where} with {len(bad)} NaN/Inf value(s), the first at index {first}: "
            "a gradient at a non-finite point is meaningless. Pass finite values."
        )
    return tensor


def spawnable_callable(value: object, name: str) -> Any:
    """A callable that can travel to a spawned process: spawn pickles it by name, so it must be
    defined at the top level of an importable module (a lambda, a local function or a callable
    defined where ``__main__`` has no file cannot be found there)."""
    callable_fn(value, name)
    qualname = getattr(value, "__qualname__", "")
    fix = (
        f"Define {name} with def at the top level of a module (functools.partial of such a "
        "function works too)."
    )
    if "<lambda>" in qualname or "<locals>" in qualname:
        kind = "a lambda" if "<lambda>" in qualname else "a function defined inside a function"
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, {kind}, but {name} travels to the spawned ranks "
            f"by pickling, which reaches only module-level callables. {fix}"
        )
    main = sys.modules.get("__main__")
    if getattr(value, "__module__", None) == "__main__" and not getattr(main, "__file__", None):
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, defined in an interactive session or notebook "
            f"(__main__ has no file), which the spawned ranks cannot import. Move {name} into "
            "a .py module and import it from there."
        )
    try:
        pickle.dumps(value)
    except Exception as exc:  # pickle.PicklingError, AttributeError, TypeError
        raise InvalidArgument(
            f"Got {name}={short_repr(value)}, but it cannot be pickled for the spawned ranks "
            f"({type(exc).__name__}: {exc}). {fix}"
        ) from None
    return value
