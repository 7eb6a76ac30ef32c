"""The copy a module check runs on: the module deep-copied to the device, its parameters,
buffers and inputs in float64 (the oracle's side) and in ``dtype`` (autograd's side), the loss,
and the oracle's evaluations of it, batched with ``torch.func.vmap`` where the module allows.

Buffers (BatchNorm running statistics) are restored before every evaluation, so in
``mode="train"`` batch statistics are part of the function while running statistics never
drift; the RNG is reseeded with ``seed`` before every evaluation, so Dropout draws the same mask
each time.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, vmap

from gradcheck.errors import InvalidArgument
from gradcheck.model.settings import Settings, input_name
from gradcheck.oracles.base import seed_rng
from gradcheck.tolerances import BATCH_AGREEMENT_RTOL


@dataclass(frozen=True)
class Target:
    """A tensor to check: a parameter (by name) or an input (by position)."""

    name: str
    kind: str
    key: str | int
    base: torch.Tensor  # float64 value on the device


@dataclass
class Gradients:
    """Autograd's gradient of each checked tensor (float64) and the loss's rounding magnitude."""

    tensors: dict[str, torch.Tensor]
    magnitude: float


class Workspace:
    """A deep copy of the module with float64 (oracle) and ``dtype`` (autograd) tensors."""

    def __init__(
        self,
        module: torch.nn.Module,
        arguments: tuple[torch.Tensor, ...],
        settings: Settings,
        loss: Callable[[Any], torch.Tensor] | None,
    ) -> None:
        if loss is not None and not callable(loss):
            raise InvalidArgument(
                f"Got loss={loss!r}, but loss must be a callable output -> scalar tensor, or "
                "None for a seeded random projection of the outputs."
            )
        try:
            self.module = copy.deepcopy(module).to(settings.device)
        except Exception as exc:
            raise InvalidArgument(
                f"Could not deep-copy the {type(module).__name__} ({type(exc).__name__}: "
                f"{exc}). check_module works on a copy so your module is never changed; make "
                "it deep-copyable (no open files or locks as attributes)."
            ) from exc
        self.module.train(settings.mode == "train")
        self.settings = settings
        self.loss = loss
        self.evaluations = 0
        self.order: dict[str, int] = {}
        device = settings.device
        self.params64 = {
            n: p.detach().to(device, torch.float64, copy=True) for n, p in module.named_parameters()
        }
        self.buffer_snapshot = {
            n: b.detach().to(device, _float64_if_floating(b), copy=True)
            for n, b in module.named_buffers()
        }
        self.buffers = {n: b.clone() for n, b in self.buffer_snapshot.items()}
        self.args64 = tuple(
            a.detach().to(device, _float64_if_floating(a), copy=True) for a in arguments
        )
        self.projections: list[torch.Tensor] | None = None
        self.owner = type(module).__name__
        self.rounding_scale = 0.0
        self.batching = True
        self.batch_verified = False
        self.unbatchable: set[str | int] = set()

    # The loss ------------------------------------------------------------------------------

    def _run(
        self,
        params: dict[str, torch.Tensor],
        args: tuple[torch.Tensor, ...],
        buffers: dict[str, torch.Tensor],
    ) -> Any:
        """One forward pass with fresh buffers and the RNG at ``seed``."""
        for name, snapshot in self.buffer_snapshot.items():
            buffers[name].copy_(snapshot)
        seed_rng(self.settings.seed, self.settings.device)
        self.evaluations += 1
        return functional_call(self.module, (params, buffers), args)

    def _scalar(self, output: Any) -> torch.Tensor:
        """The loss of one output: the caller's ``loss`` or the seeded projection."""
        if self.loss is None:
            return self._projection_loss(output_tensors(output, self.owner))
        value = self.loss(output)
        if not (
            isinstance(value, torch.Tensor) and value.numel() == 1 and value.is_floating_point()
        ):
            raise InvalidArgument(
                f"Got a loss value {_describe(value)}, but loss(output) must return a "
                "floating-point tensor with one element, for example "
                "((output - target) ** 2).mean()."
            )
        return value.reshape(())

    def _projection_loss(self, leaves: list[torch.Tensor]) -> torch.Tensor:
        if self.projections is None:
            generator = torch.Generator().manual_seed(self.settings.seed)
            self.projections = [
                torch.randn(leaf.shape, generator=generator, dtype=torch.float64) for leaf in leaves
            ]
        total = torch.zeros((), dtype=torch.float64, device=self.settings.device)
        for leaf, weights in zip(leaves, self.projections):
            total = total + (weights.to(leaf.device, leaf.dtype) * leaf).sum().double()
        return total

    def _replaced(
        self, replace: str | int, point: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], tuple[torch.Tensor, ...]]:
        """The float64 parameters and inputs with one parameter (name) or input (position)
        set to ``point``."""
        if isinstance(replace, str):
            return {**self.params64, replace: point}, self.args64
        return self.params64, tuple(point if i == replace else a for i, a in enumerate(self.args64))

    def oracle_loss(self, replace: str | int, point: torch.Tensor) -> float:
        """``L`` in float64 with one parameter (by name) or input (by position) replaced."""
        params, args = self._replaced(replace, point)
        with torch.no_grad():
            return float(self._scalar(self._run(params, args, self.buffers)))

    def oracle_losses(self, replace: str | int, points: Sequence[torch.Tensor]) -> list[float]:
        """``L`` in float64 at each point for one parameter or input, in one vmapped batch.

        Layers before the replaced tensor run once for the whole batch. When vmap fails for a
        tensor (a custom autograd.Function without a vmap rule, an in-place op mixing batched
        and unbatched tensors, ``.item()`` in a loss), that tensor's points run one by one; when
        the first batch disagrees with a plain evaluation at the center (randomness that vmap
        draws differently), batching is switched off for the whole check.
        """
        if self.batching and len(points) > 1 and replace not in self.unbatchable:
            try:
                values = self._batched_losses(replace, torch.stack(list(points)))
            except Exception:
                # In-place ops mixing batched and unbatched tensors (ResNet's ``out += identity``
                # below a replaced downsample) cannot be vmapped: this tensor runs unbatched.
                self.unbatchable.add(replace)
            else:
                if self.batch_verified or self._agrees_with_plain(replace, points[0], values[0]):
                    return values
        return [self.oracle_loss(replace, point) for point in points]

    def _agrees_with_plain(self, replace: str | int, point: torch.Tensor, value: float) -> bool:
        plain = self.oracle_loss(replace, point)
        # A mismatch means randomness or batch-dependent layers: no batching from here on.
        self.batch_verified = abs(plain - value) <= BATCH_AGREEMENT_RTOL * max(
            self.rounding_scale, abs(plain)
        )
        self.batching = self.batch_verified
        return self.batch_verified

    def _batched_losses(self, replace: str | int, points: torch.Tensor) -> list[float]:
        count = points.shape[0]
        # Train mode updates buffers in place (running statistics), which vmap allows only on
        # batched tensors; in eval mode they are read-only and stay unbatched, so the layers
        # before the replaced tensor run once for the whole batch.
        training = self.settings.mode == "train"
        buffers = {
            name: snapshot.expand(count, *snapshot.shape).clone() if training else snapshot
            for name, snapshot in self.buffer_snapshot.items()
        }

        def loss_at(point: torch.Tensor, own_buffers: dict[str, torch.Tensor]) -> torch.Tensor:
            params, args = self._replaced(replace, point)
            output = functional_call(self.module, (params, own_buffers), args)
            return self._scalar(output)

        seed_rng(self.settings.seed, self.settings.device)
        with torch.no_grad(), warnings.catch_warnings():
            # Ops without a batching rule (multi-head attention) run in a loop, correctly; torch's
            # warning about the lost speed would only confuse the caller, who never asked for vmap.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            batched = vmap(loss_at, in_dims=(0, 0 if training else None), randomness="same")
            values = batched(points, buffers)
        self.evaluations += count
        return [float(v) for v in values.tolist()]

    # Autograd ------------------------------------------------------------------------------

    def autograd(self, names: list[str], positions: list[int]) -> Gradients:
        """Autograd's gradient of ``L`` (in ``dtype``) for each target, as float64, and the
        rounding magnitude ``|L| + sum |dL/dout * out|``; records the modules' call order."""
        dtype, chosen = self.settings.dtype, set(names)
        params = {
            n: p.to(dtype, copy=True).requires_grad_(n in chosen) for n, p in self.params64.items()
        }
        buffers = {
            n: b.to(dtype, copy=True) if b.is_floating_point() else b.clone()
            for n, b in self.buffer_snapshot.items()
        }
        args = tuple(
            a.to(dtype, copy=True).requires_grad_(i in positions) if a.is_floating_point() else a
            for i, a in enumerate(self.args64)
        )
        handles = [
            sub.register_forward_pre_hook(self._recorder(name))
            for name, sub in self.module.named_modules()
        ]
        try:
            with torch.enable_grad():
                output = self._run(params, args, buffers)
                loss = self._scalar(output)
                leaves = output_tensors(output, self.owner)
                wanted = [params[n] for n in names] + [args[i] for i in positions]
                outputs = [leaf for leaf in leaves if leaf.requires_grad]
                grads = torch.autograd.grad(loss, wanted + outputs, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        labels = names + [input_name(i, len(args)) for i in positions]
        tensors = {
            label: (torch.zeros_like(w) if g is None else g).detach().to(torch.float64)
            for label, w, g in zip(labels, wanted, grads)
        }
        magnitude = abs(float(loss.detach()))
        for leaf, g in zip(outputs, grads[len(wanted) :]):
            if g is not None:
                magnitude += float((g.double() * leaf.detach().double()).abs().sum())
        self.rounding_scale = magnitude
        return Gradients(tensors, magnitude)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, _args: object) -> None:
            self.order.setdefault(name, len(self.order))

        return record

    def targets(self, names: list[str], positions: list[int]) -> list[Target]:
        """The tensors to check, inputs first, then parameters in forward execution order."""
        found = [
            Target(input_name(i, len(self.args64)), "input", i, self.args64[i]) for i in positions
        ]
        unused = len(self.order)

        def called(name: str) -> int:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            return self.order.get(owner, unused)

        ordered = sorted(names, key=lambda n: (called(n), names.index(n)))
        return found + [Target(n, "parameter", n, self.params64[n]) for n in ordered]


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"of type {type(value).__name__}"


def _float64_if_floating(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.is_floating_point() else tensor.dtype


def output_tensors(output: object, owner: str) -> list[torch.Tensor]:
    """The floating-point tensors in a module's output (a tensor, or tuples/lists/dicts)."""
    found: list[torch.Tensor] = []

    def walk(item: object, where: str) -> None:
        if isinstance(item, torch.Tensor):
            if item.is_floating_point():
                found.append(item)
        elif isinstance(item, (tuple, list)):
            for i, sub in enumerate(item):
                walk(sub, f"{where}[{i}]")
        elif isinstance(item, dict):
            for key, sub in item.items():
                walk(sub, f"{where}[{key!r}]")
        else:
            raise InvalidArgument(
                f"Got {where} of type {type(item).__name__} from the {owner}, but a module's "
                "output must be a tensor, or tuples, lists or dicts of tensors. Pass loss= to "
                "reduce other outputs to a scalar tensor."
            )

    walk(output, "output")
    if not found:
        raise InvalidArgument(
            f"Got no floating-point tensor in the {owner}'s output, so there is nothing to "
            "differentiate. Return the logits (or pass loss= to build a scalar from the output)."
        )
    return found
