"""What one float64 evaluation of a module shows: where forward first uses each checked tensor,
and the lowest floating-point precision it computes in.

A :class:`torch.overrides.TorchFunctionMode` sees every torch function and tensor method that
forward calls (``F.linear``, ``x * self.scale``, ``self.weight.float()``) with the tensors it
calls them on. The first call that reads a checked tensor and returns a tensor fixes that
tensor's place in forward order, whichever module owns it (a LayerScale's ``scale`` used after
its children, a child's weight used through the functional API). A call whose floating-point
result has less precision than its floating-point inputs (``x.float()``, ``.half()``) means part
of the float64 evaluation runs in that precision, so the oracle's noise is that precision's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

from gradcheck.oracles.base import EPS64


def precision_eps(tensor: torch.Tensor) -> float | None:
    """``eps`` of a floating-point or complex tensor's dtype; None for other dtypes."""
    if tensor.is_floating_point() or tensor.is_complex():
        return float(torch.finfo(tensor.dtype).eps)
    return None


class Observer(TorchFunctionMode):
    """Records the first use of each watched tensor and the lowest precision computed in."""

    def __init__(self, watched: dict[int, str]) -> None:
        super().__init__()
        self.watched = watched
        self.first_use: dict[str, int] = {}
        self.lowest_eps = EPS64

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        if not inputs:
            return result
        outputs = [t for t in tree_leaves(result) if isinstance(t, torch.Tensor)]
        if outputs:
            # Only a call that produces a tensor counts as a use (not ``weight.shape``).
            for tensor in inputs:
                name = self.watched.get(id(tensor))
                if name is not None and name not in self.first_use:
                    self.first_use[name] = len(self.first_use)
            self._note_precision(inputs, outputs)
        return result

    def _note_precision(self, inputs: list[torch.Tensor], outputs: list[torch.Tensor]) -> None:
        """A floating result less precise than the call's most precise floating input."""
        finest = [e for e in map(precision_eps, inputs) if e is not None]
        if not finest:
            return
        for tensor in outputs:
            eps = precision_eps(tensor)
            if eps is not None and eps > min(finest):
                self.lowest_eps = max(self.lowest_eps, eps)
