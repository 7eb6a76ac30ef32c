"""check_module over PyTorch's module database (ModuleInfo), one seeded sample per module and
mode, float64 on the CPU; run as a script by tests/test_moduleinfo.py (a separate process:
importing ``torch.testing._internal.common_utils`` freezes torch's cuDNN flags for the rest of
the process). Prints one JSON object per module and mode."""

from __future__ import annotations

import json
import sys
import warnings

import torch
from torch.testing._internal.common_modules import module_db
from torch.utils._pytree import tree_flatten, tree_leaves, tree_unflatten

import gradcheck


class Bound(torch.nn.Module):
    """``forward(*tensors)``: the wrapped module called with the sample's arguments, its tensor
    leaves replaced by ``tensors`` (non-tensor arguments and keywords stay bound)."""

    def __init__(self, inner: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        super().__init__()
        self.inner = inner
        leaves, self.spec = tree_flatten((args, kwargs))
        self.slots = [i for i, x in enumerate(leaves) if isinstance(x, torch.Tensor)]
        self.leaves = [x.detach().clone() if isinstance(x, torch.Tensor) else x for x in leaves]

    def forward(self, *tensors: torch.Tensor) -> object:
        leaves = list(self.leaves)
        for slot, tensor in zip(self.slots, tensors):
            leaves[slot] = tensor
        args, kwargs = tree_unflatten(leaves, self.spec)
        return self.inner(*args, **kwargs)


def torch_skips_grad(info: object) -> bool:
    """Whether torch's own test_modules skips its gradcheck (test_grad) for this module."""
    return any(d.test_name == "test_grad" for d in info.decorators)  # type: ignore[attr-defined]


def outcome(info: object, training: bool) -> dict[str, object]:
    """check_module on the module's first sample input: its status, or the error it raised."""
    torch.manual_seed(0)
    samples = info.module_inputs_func(  # type: ignore[attr-defined]
        info, device="cpu", dtype=torch.float64, requires_grad=True, training=training
    )
    if not samples:
        return {"status": "no sample"}
    sample = samples[0]
    constructor = sample.constructor_input
    module = info.module_cls(*constructor.args, **constructor.kwargs)  # type: ignore[attr-defined]
    module = module.to(torch.float64).train(training)
    args, kwargs = sample.forward_input.args, sample.forward_input.kwargs
    tensors = tuple(x for x in tree_leaves((args, kwargs)) if isinstance(x, torch.Tensor))
    differentiable = any(t.requires_grad for t in tensors)
    try:
        result = gradcheck.check_module(
            Bound(module, args, kwargs),
            tensors,
            mode="train" if training else "eval",
            include_inputs=differentiable,
        )
    except gradcheck.InvalidArgument as exc:
        return {"status": "invalid", "message": str(exc)[:300]}
    except Exception as exc:  # the sweep reports every crash
        return {"status": "exception", "message": f"{type(exc).__name__}: {exc}"[:300]}
    worst = [row for row in result.rows if not row.passed]
    note = f"{worst[0].name}: {worst[0].status} {worst[0].note}"[:300] if worst else ""
    return {"status": result.status, "rows": len(result.rows), "note": note}


def main() -> None:
    warnings.filterwarnings("ignore")
    for info in module_db:
        for training in (False, True):
            row = {"module": info.name, "mode": "train" if training else "eval"}
            row["torch_skips_grad"] = torch_skips_grad(info)
            row.update(outcome(info, training))
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
