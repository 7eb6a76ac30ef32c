"""One OpInfo sample as a function of its differentiable tensors, the way torch's own
``test_fn_grad`` builds it (``TestGradients._check_helper`` in
``torch.testing._internal.common_utils``).

Only the tensors that require grad are differentiated: the sample's input (each tensor of a
TensorList input), its positional arguments and its keyword arguments, in that order. Everything
else (integer indices, shapes, scalars, tensors that do not require grad) is bound in the
closure. The closure puts the differentiated tensors back where they came from, calls the
OpInfo's ``gradcheck_wrapper`` around ``op.get_op()`` and applies the sample's
``output_process_fn_grad``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Case:
    """A sample ready for both checks: ``fn(*inputs)`` is the op on the sample."""

    fn: Callable[..., Any]
    inputs: tuple[torch.Tensor, ...]
    shapes: tuple[tuple[int, ...], ...]
    description: str


def _is_tensor_list(value: Any) -> bool:
    """torch's ``is_iterable_of_tensors``: a non-empty list or tuple of tensors only."""
    return (
        isinstance(value, (list, tuple))
        and len(value) > 0
        and all(isinstance(item, torch.Tensor) for item in value)
    )


def _differentiated(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.requires_grad


def _gradcheck_inputs(sample: Any) -> tuple[torch.Tensor, ...]:
    """The tensors that require grad, in torch's order: input (flattened if a TensorList),
    args, kwargs values; tensor lists among the args are flattened the same way."""
    found: list[torch.Tensor] = []
    for value in (sample.input, *sample.args, *sample.kwargs.values()):
        items = value if _is_tensor_list(value) else (value,)
        found += [item for item in items if _differentiated(item)]
    return tuple(found)


def _recompose(value: Any, inputs: Iterator[torch.Tensor]) -> Any:
    """``value`` with each differentiated tensor replaced by the next of ``inputs``."""
    if _is_tensor_list(value):
        return [next(inputs) if _differentiated(item) else item for item in value]
    return next(inputs) if _differentiated(value) else value


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        grad = "" if value.requires_grad else " (no grad)"
        return f"Tensor{list(value.shape)}{grad}"
    if _is_tensor_list(value):
        return "[" + ", ".join(_describe(item) for item in value) + "]"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "~"


def describe(sample: Any) -> str:
    """A one-line account of a sample: input, args and kwargs, tensors by shape."""
    parts = [_describe(sample.input), *(_describe(a) for a in sample.args)]
    parts += [f"{k}={_describe(v)}" for k, v in sample.kwargs.items()]
    return ", ".join(parts)


def case_of(op: Any, sample: Any) -> Case:
    """The :class:`Case` of one ``SampleInput`` of ``op``."""
    variant = op.get_op()
    inputs = _gradcheck_inputs(sample)

    def fn(*tensors: torch.Tensor) -> Any:
        """The op on the sample, ``tensors`` in place of those that require grad."""
        remaining = iter(tensors)
        first = _recompose(sample.input, remaining)
        args = [_recompose(a, remaining) for a in sample.args]
        kwargs = {k: _recompose(v, remaining) for k, v in sample.kwargs.items()}
        output = op.gradcheck_wrapper(variant, first, *args, **kwargs)
        if sample.output_process_fn_grad is not None:
            return sample.output_process_fn_grad(output)
        return output

    fn.__name__ = fn.__qualname__ = str(op.name).replace(".", "_")
    shapes = tuple(tuple(t.shape) for t in inputs)
    return Case(fn, inputs, shapes, describe(sample))


@contextlib.contextmanager
def restored(case: Case) -> Iterator[tuple[torch.Tensor, ...]]:
    """The case's own tensors (as torch's test passes them: an op such as ``as_strided``
    reads their storage, which a copy would not have), their values put back afterwards, so a
    check interrupted mid-perturbation cannot leave the next one a perturbed input."""
    kept = [(t, t.detach().clone()) for t in case.inputs if t.layout == torch.strided]
    try:
        yield case.inputs
    finally:
        with torch.no_grad():
            for tensor, values in kept:
                tensor.detach().copy_(values)


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Leave torch's CPU (and CUDA) generators, Python's ``random`` and NumPy's global state as
    they were: torch's sample generators reseed all three."""
    python_state = random.getstate()
    numpy_state = _numpy_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(python_state)
        if numpy_state is not None:
            import numpy

            numpy.random.set_state(numpy_state)


def _numpy_state() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy.random.get_state()


def first_samples(op: Any, device: str, dtype: torch.dtype, count: int) -> list[Any]:
    """The first ``count`` samples of ``op.sample_inputs(device, dtype, requires_grad=True)``,
    generated under torch's own seeding (so they are the samples torch's test sees) with the
    caller's random state left alone."""
    chosen = []
    with preserved_rng():
        for sample in op.sample_inputs(device, dtype, requires_grad=True):
            chosen.append(sample)
            if len(chosen) == count:
                break
    return chosen
