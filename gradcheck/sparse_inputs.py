"""Sparse inputs, checked through their stored values.

A sparse tensor's gradient lives on its stored values: the sparsity pattern is part of the
input, not a variable (torch.autograd.gradcheck perturbs the stored values too). So a sparse
input (COO, CSR, CSC, BSR, BSC) becomes its dense ``values()`` tensor, and ``fn`` rebuilds the
sparse tensor around it with the same indices on every call, which autograd differentiates
through and every oracle perturbs like any dense input. The indices come from a valid tensor,
so the rebuilt ones skip torch's invariant checks.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from gradcheck.results import Note

COMPRESSED = {
    torch.sparse_csr: ("crow_indices", "col_indices"),
    torch.sparse_csc: ("ccol_indices", "row_indices"),
    torch.sparse_bsr: ("crow_indices", "col_indices"),
    torch.sparse_bsc: ("ccol_indices", "row_indices"),
}
"""Each compressed layout's (compressed, plain) index accessors."""


def _rebuilder(tensor: torch.Tensor) -> tuple[torch.Tensor, Callable[[torch.Tensor], Any]]:
    """The stored values of a sparse tensor, and the function that rebuilds the tensor from
    new values with the same pattern."""
    size = tensor.shape
    if tensor.layout == torch.sparse_coo:
        tensor = tensor.detach().coalesce()
        indices = tensor.indices()

        def coo(values: torch.Tensor) -> torch.Tensor:
            return torch.sparse_coo_tensor(
                indices, values, size, is_coalesced=True, check_invariants=False
            )

        return tensor.values(), coo
    compressed_name, plain_name = COMPRESSED[tensor.layout]
    compressed = getattr(tensor, compressed_name)()
    plain = getattr(tensor, plain_name)()
    layout = tensor.layout

    def compressed_tensor(values: torch.Tensor) -> torch.Tensor:
        return torch.sparse_compressed_tensor(
            compressed, plain, values, size, layout=layout, check_invariants=False
        )

    return tensor.detach().values(), compressed_tensor


def through_values(
    fn: Callable[..., Any], arguments: tuple[torch.Tensor, ...], names: tuple[str, ...]
) -> tuple[Callable[..., Any], tuple[torch.Tensor, ...], dict[int, Note]]:
    """``fn`` and ``arguments`` with every sparse argument replaced by its stored values, and a
    note per such argument by position (for the caller to keep where that argument is
    differentiated); unchanged when no argument is sparse."""
    sparse = [i for i, a in enumerate(arguments) if a.layout != torch.strided]
    if not sparse:
        return fn, arguments, {}
    rebuild: dict[int, Callable[[torch.Tensor], Any]] = {}
    replaced = list(arguments)
    notes = {}
    for i in sparse:
        original = arguments[i]
        values, rebuild[i] = _rebuilder(original)
        replaced[i] = values.detach().clone().requires_grad_(original.requires_grad)
        layout = str(original.layout).removeprefix("torch.")
        notes[i] = Note(
            names[i],
            f"is a {layout} tensor: its {values.numel()} stored values are checked, with "
            "the sparsity pattern fixed (as torch.autograd.gradcheck perturbs them)",
        )

    @functools.wraps(fn)
    def with_sparse_inputs(*values: torch.Tensor) -> Any:
        rebuilt = [rebuild[i](v) if i in rebuild else v for i, v in enumerate(values)]
        return fn(*rebuilt)

    return with_sparse_inputs, tuple(replaced), notes
