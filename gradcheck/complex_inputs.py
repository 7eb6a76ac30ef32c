"""Complex inputs, checked through their real and imaginary parts.

PyTorch's convention for a real loss ``L`` of a complex input ``z = x + iy`` is that ``z.grad``
is ``dL/dx + i dL/dy``, the conjugate Wirtinger derivative ``2 dL/dz*`` ("Autograd for Complex
Numbers" in torch's notes), and a complex output contracted with a cotangent ``v`` is the real
inner product of their real and imaginary parts (``backward(v)`` of ``out`` differentiates
``sum(v.real * out.real + v.imag * out.imag)``). Both are exactly the real calculus of
``torch.view_as_real``: so a complex input becomes its ``view_as_real`` pair tensor, ``fn``
rebuilds the complex tensor with ``torch.view_as_complex`` on every call (autograd passes the
gradient through that view unchanged), and every oracle perturbs the real and the imaginary
part of each element as two real elements. A backward that forgets a ``.conj()`` is wrong in
the imaginary direction, holomorphic or not, and that is where it is caught.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from gradcheck.oracles.base import shares_a_larger_storage, whole_storage_copy
from gradcheck.results import Note


def through_real_parts(
    fn: Callable[..., Any], arguments: tuple[torch.Tensor, ...], names: tuple[str, ...]
) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...], dict[int, Note]]:
    """``fn`` and ``arguments`` with every complex argument replaced by its real and imaginary
    parts (``torch.view_as_real``, a trailing dimension of 2), and a note per such argument by
    position; unchanged when no argument is complex."""
    complex_positions = [i for i, a in enumerate(arguments) if a.is_complex()]
    if not complex_positions:
        return fn, arguments, {}
    replaced = list(arguments)
    notes = {}
    for i in complex_positions:
        original = arguments[i]
        source = original.detach().resolve_conj()
        if shares_a_larger_storage(source):
            # A partial view (as_strided reads beyond its elements): the pairs view a copy of
            # the whole storage, so the rebuilt complex tensor has the same layout.
            pairs = torch.view_as_real(whole_storage_copy(source))
        else:
            pairs = torch.view_as_real(source.contiguous()).clone()
        replaced[i] = pairs.requires_grad_(original.requires_grad)
        dtype = str(original.dtype).removeprefix("torch.")
        notes[i] = Note(
            names[i],
            f"is {dtype}: checked as its real and imaginary parts (.real[...] and .imag[...]), "
            "so autograd's gradient is judged as PyTorch defines it, dL/d(real) + i dL/d(imag), "
            "the conjugate Wirtinger derivative",
        )
    positions = frozenset(complex_positions)

    @functools.wraps(fn)
    def with_complex_inputs(*values: torch.Tensor) -> Any:
        rebuilt = [_as_complex(v) if i in positions else v for i, v in enumerate(values)]
        return fn(*rebuilt)

    return with_complex_inputs, tuple(replaced), notes


def _as_complex(pairs: torch.Tensor) -> torch.Tensor:
    """``view_as_complex`` of the pairs, keeping their layout where it is a complex one."""
    strides = pairs.stride()
    if (
        strides[-1] == 1
        and all(s % 2 == 0 for s in strides[:-1])
        and pairs.storage_offset() % 2 == 0
    ):
        return torch.view_as_complex(pairs)
    return torch.view_as_complex(pairs.contiguous())


def complex_dtype(real: torch.dtype) -> torch.dtype:
    """The complex dtype whose parts are ``real`` (float32 -> complex64)."""
    return {torch.float16: torch.complex32, torch.float32: torch.complex64}.get(
        real, torch.complex128
    )
