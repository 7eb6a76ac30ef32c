"""What check_module and check_device_parity take: the validated settings, the module's inputs
and which tensors to check, and the global state they keep as they found it."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import inspect
import math
import random
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import RNG_LOCK

MODES = ("eval", "train")


@dataclass(frozen=True)
class Settings:
    """The validated settings of one module check: autograd's dtype, the device, the mode,
    directions per tensor, the seed and how far two runs of the same backward may differ."""

    dtype: torch.dtype
    device: torch.device
    mode: str
    directions: int
    seed: int
    nondet_tol: float = 0.0

    @classmethod
    def validated(
        cls,
        module: object,
        *,
        dtype: object,
        device: object,
        mode: object,
        directions: object,
        seed: object,
        nondet_tol: object = 0.0,
    ) -> Settings:
        """Check every argument (the module first) and resolve the device."""
        if not isinstance(module, torch.nn.Module):
            raise InvalidArgument(
                f"Got module of type {type(module).__name__}, but check_module needs a "
                "torch.nn.Module. For a plain function use gradcheck.check_function(fn, inputs)."
            )
        return cls(
            dtype=validation.floating_dtype(dtype),
            device=resolve_device(device, module),
            mode=validation.one_of(
                "mode",
                mode,
                MODES,
                "running statistics, or batch statistics and dropout with a fixed mask",
            ),
            directions=validation.positive_int("directions", directions, "2"),
            seed=validation.seed(seed),
            nondet_tol=_nondet_tol(nondet_tol),
        )

    @property
    def dtype_name(self) -> str:
        """``float64``, ``float32``, ..."""
        return str(self.dtype).removeprefix("torch.")


def _nondet_tol(value: object) -> float:
    """A finite number >= 0 (not a bool): how far two runs of one backward may differ."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise InvalidArgument(
            f"Got nondet_tol={validation.short_repr(value)}, but nondet_tol must be a finite "
            "number >= 0: how far two runs of autograd's backward with the same loss may differ "
            "(as in torch.autograd.gradcheck). Pass nondet_tol=0.0 to require identical runs, "
            "or a small float such as 1e-12 for a nondeterministic GPU kernel."
        )
    return float(value)


def resolve_device(device: object, module: torch.nn.Module) -> torch.device:
    """``device``, or where the module's first tensor lives (the CPU for a meta module)."""
    if device is None:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device if tensor.device.type != "meta" else torch.device("cpu")
        return torch.device("cpu")
    return validation.available_device(device)


def module_inputs(inputs: object) -> tuple[torch.Tensor, ...]:
    """The module's positional forward arguments as a tuple of tensors (floating ones finite)."""
    arguments = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not arguments:
        raise InvalidArgument(
            "Got inputs=(), but the module needs its forward arguments, for example "
            "torch.rand(2, 3, 64, 64, dtype=torch.float64)."
        )
    for i, item in enumerate(arguments):
        if not isinstance(item, torch.Tensor):
            raise InvalidArgument(
                f"Got inputs[{i}] of type {type(item).__name__}, but every input must be a "
                "torch.Tensor (the module's positional forward arguments). Bind other arguments "
                "in a small wrapper module."
            )
        if item.is_floating_point():
            validation.finite_tensor(item, f"inputs[{i}]")
    return arguments  # type: ignore[return-value]


def input_positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    """The inputs that get a row: floating point and non-empty."""
    return [i for i, a in enumerate(arguments) if a.is_floating_point() and a.numel() > 0]


def differentiated_inputs(
    arguments: tuple[torch.Tensor, ...], include_inputs: object, inputs_to_check: object
) -> tuple[list[int], bool]:
    """The inputs that get a row, and whether they were guessed.

    ``inputs_to_check`` (positions) when given; else, as torch.autograd.gradcheck does, the
    floating-point inputs that require grad; else every floating-point input (guessed: the
    caller may drop one that torch cannot differentiate, such as a loss's target). None with
    ``include_inputs=False``.
    """
    if not isinstance(include_inputs, bool):
        raise InvalidArgument(
            f"Got include_inputs={validation.short_repr(include_inputs)}, but include_inputs "
            "must be True or False."
        )
    if inputs_to_check is not None:
        if not include_inputs:
            raise InvalidArgument(
                f"Got inputs_to_check={validation.short_repr(inputs_to_check)} with "
                "include_inputs=False; pass one of them: inputs_to_check=(0,) picks the inputs "
                "to differentiate, include_inputs=False differentiates none."
            )
        return _checked_positions(arguments, inputs_to_check), False
    if not include_inputs:
        return [], False
    floating = input_positions(arguments)
    requiring = [i for i in floating if arguments[i].requires_grad]
    return (requiring, False) if requiring else (floating, True)


def _checked_positions(arguments: tuple[torch.Tensor, ...], value: object) -> list[int]:
    """``inputs_to_check`` as a sorted list of positions of non-empty floating inputs."""
    shown = validation.short_repr(value)
    entries = list(value) if isinstance(value, (tuple, list)) else None
    if entries is None or any(isinstance(i, bool) or not isinstance(i, int) for i in entries):
        raise InvalidArgument(
            f"Got inputs_to_check={shown}, but inputs_to_check must be a tuple of input "
            "positions (integers), such as inputs_to_check=(0,) for the first input only."
        )
    for i in entries:
        if not 0 <= i < len(arguments):
            raise InvalidArgument(
                f"Got inputs_to_check={shown}, but the module gets {len(arguments)} "
                f"input(s), at positions 0 to {len(arguments) - 1}. Pass positions in that "
                "range, such as inputs_to_check=(0,)."
            )
        if not arguments[i].is_floating_point() or arguments[i].numel() == 0:
            raise InvalidArgument(
                f"Got inputs_to_check={shown}, but inputs[{i}] is an empty or non-floating-"
                f"point tensor ({arguments[i].dtype}, shape {tuple(arguments[i].shape)}); only "
                "non-empty floating-point inputs can be differentiated. Leave it out."
            )
    return sorted(set(entries))


def input_name(position: int, count: int) -> str:
    """A row's name for an input: ``input``, or ``input[1]`` when there are several."""
    return "input" if count == 1 else f"input[{position}]"


def select_parameters(module: torch.nn.Module, parameters: str | Sequence[str] | None) -> list[str]:
    """Names of the parameter tensors to check, in registration order.

    ``None`` selects every parameter with ``requires_grad``; otherwise each entry is an exact
    name or a glob pattern (``"layer1.*.weight"``). An entry that matches nothing raises
    :class:`~gradcheck.InvalidArgument` listing the closest names.
    """
    all_names = [name for name, _ in module.named_parameters()]
    if parameters is None:
        return [name for name, p in module.named_parameters() if p.requires_grad]
    patterns = [parameters] if isinstance(parameters, str) else list(parameters)
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise InvalidArgument(
                f"Got parameters entry {pattern!r} of type {type(pattern).__name__}, but each "
                "entry must be a parameter name or a glob pattern such as 'layer1.*'."
            )
        matches = [name for name in all_names if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            close = difflib.get_close_matches(pattern, all_names, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise InvalidArgument(
                f"Got parameters entry {pattern!r}, but no parameter of the "
                f"{type(module).__name__} matches it.{hint} List the names with "
                "[n for n, _ in module.named_parameters()]; glob patterns such as "
                "'layer1.*' work too."
            )
        chosen.update(matches)
    return [name for name in all_names if name in chosen]


@contextlib.contextmanager
def preserved_global_state(device: torch.device) -> Iterator[None]:
    """Fork torch's RNG, keep grad mode, turn TF32 off, and keep Python's and numpy's global
    generators (a forward that draws from them must not move the caller's), restoring all of
    them afterwards; under :data:`~gradcheck.oracles.base.RNG_LOCK`, so checks on several
    threads take turns."""
    devices = [device.index or 0] if device.type == "cuda" else []
    grad_enabled = torch.is_grad_enabled()
    try:
        with (
            RNG_LOCK,
            tf32_off(),
            host_generators_kept(),
            torch.random.fork_rng(devices=devices),
        ):
            yield
    finally:
        torch.set_grad_enabled(grad_enabled)


@contextlib.contextmanager
def tf32_off() -> Iterator[None]:
    """TF32 off for cuBLAS and cuDNN, changing a flag only where it is on.

    cuDNN's flags go through :func:`torch.backends.cudnn.flags`, which setting them directly
    would trip once PyTorch's test utilities have frozen them (``disable_global_flags``); every
    other cuDNN flag is passed as None, which that context manager leaves as it is.
    """
    matmul = torch.backends.cuda.matmul
    with contextlib.ExitStack() as stack:
        if torch.backends.cudnn.allow_tf32:
            names = inspect.signature(torch.backends.cudnn.flags).parameters
            kept = {name: None for name in names if name != "allow_tf32"}
            stack.enter_context(torch.backends.cudnn.flags(**kept, allow_tf32=False))
        if matmul.allow_tf32:
            matmul.allow_tf32 = False
            stack.callback(setattr, matmul, "allow_tf32", True)
        yield


@contextlib.contextmanager
def host_generators_kept() -> Iterator[None]:
    """Python's ``random`` and (when imported) numpy's global generator, as they were."""
    python_state = random.getstate()
    numpy = sys.modules.get("numpy")
    numpy_state = numpy.random.get_state() if numpy is not None else None
    try:
        yield
    finally:
        random.setstate(python_state)
        if numpy is not None:
            numpy.random.set_state(numpy_state)
