"""Modules with planted gradient bugs and a snapshot of everything check_module must not touch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F


class _ScaledWeightGradConv(torch.autograd.Function):
    """conv2d whose weight gradient is scaled by ``1 + error`` (input gradient is right)."""

    @staticmethod
    def forward(ctx: Any, x, weight, stride, padding, error):  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        ctx.settings = (stride, padding, error)
        return F.conv2d(x, weight, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad):  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, error = ctx.settings
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, stride=stride, padding=padding)
        grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad, stride=stride, padding=padding)
        return grad_x, grad_w * (1.0 + error), None, None, None


class WrongWeightGradConv(torch.nn.Conv2d):
    """A bias-free Conv2d whose backward scales the weight gradient by ``1 + error``."""

    error = 1e-4

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _ScaledWeightGradConv.apply(x, self.weight, self.stride, self.padding, self.error)


def plant_wrong_conv(model: torch.nn.Module, path: str) -> None:
    """Replace the conv at ``path`` (``"layer3.0.conv1"``) with :class:`WrongWeightGradConv`."""
    parent_path, _, leaf = path.rpartition(".")
    parent = model.get_submodule(parent_path)
    old = getattr(parent, leaf)
    new = WrongWeightGradConv(
        old.in_channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=False,
    )
    new.load_state_dict(old.state_dict())
    setattr(parent, leaf, new)


def scale_grad_input(error: float):
    """A full backward hook that scales ``grad_input`` by ``1 + error``."""

    def hook(_module, grad_input, _grad_output):
        return tuple(None if g is None else g * (1.0 + error) for g in grad_input)

    return hook


@dataclass
class Snapshot:
    """Everything of a module and the process that a check must leave bit-identical."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    requires_grad: dict[str, bool]
    training: dict[str, bool]
    data_ptrs: dict[str, int]
    cpu_rng: torch.Tensor
    grad_enabled: bool
    tf32: tuple[bool, bool]

    @classmethod
    def take(cls, module: torch.nn.Module) -> Snapshot:
        state = module.state_dict(keep_vars=True)
        params = dict(module.named_parameters())
        return cls(
            tensors={k: v.detach().clone() for k, v in state.items()},
            grads={k: None if p.grad is None else p.grad.clone() for k, p in params.items()},
            requires_grad={k: p.requires_grad for k, p in params.items()},
            training={k: m.training for k, m in module.named_modules()},
            data_ptrs={k: v.data_ptr() for k, v in state.items()},
            cpu_rng=torch.get_rng_state(),
            grad_enabled=torch.is_grad_enabled(),
            tf32=(torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32),
        )

    def differences(self, module: torch.nn.Module) -> list[str]:
        """What changed, in words; empty when nothing did."""
        now = Snapshot.take(module)
        found = []
        for key, value in self.tensors.items():
            after = now.tensors[key]
            if value.dtype != after.dtype or not torch.equal(value, after):
                found.append(f"value of {key}")
        for key, grad in self.grads.items():
            after = now.grads[key]
            if (grad is None) != (after is None) or (
                grad is not None and not torch.equal(grad, after)
            ):
                found.append(f"grad of {key}")
        for label in ("requires_grad", "training", "data_ptrs", "grad_enabled", "tf32"):
            if getattr(self, label) != getattr(now, label):
                found.append(label)
        if not torch.equal(self.cpu_rng, now.cpu_rng):
            found.append("CPU RNG state")
        return found
