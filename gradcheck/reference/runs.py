"""One side of a reference check, run in one dtype: the callable (a function, or a deep copy of
a module cast to the dtype), its inputs rounded to the dtype, one forward and one backward with
the shared cotangents, and every tensor a row compares.

Inputs and weights are rounded to the low dtype first and the float64 golden run gets those
rounded values upcast, so all three runs (golden, baseline, candidate) see exactly the same
numbers and the golden value is the exact answer for the inputs the kernel sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from gradcheck.arguments import argument_names, default_cotangent, output_tuple
from gradcheck.errors import InvalidArgument
from gradcheck.oracles.base import seed_rng

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]
"""What turns a prepared callable into the implementation (``torch.compile`` for
check_compiled; the identity otherwise)."""


@dataclass(frozen=True)
class Values:
    """One run's tensors, by row name in row order (inputs, parameters, outputs), detached."""

    tensors: dict[str, torch.Tensor]
    kinds: dict[str, str]


@dataclass(frozen=True)
class Subject:
    """A function or module under check, with the weights it runs with (a module's floating
    state in the check's dtype, shared by the implementation and the reference)."""

    fn: Callable[..., Any]
    mode: str
    weights: dict[str, torch.Tensor] | None = None

    @property
    def is_module(self) -> bool:
        """True for an ``nn.Module``."""
        return isinstance(self.fn, torch.nn.Module)

    def prepared(
        self, dtype: torch.dtype, device: torch.device
    ) -> tuple[Callable[..., Any], dict[str, torch.Tensor]]:
        """The callable in ``dtype`` on ``device`` and its parameters to differentiate (a module
        is deep-copied first: the caller's is never touched)."""
        if not isinstance(self.fn, torch.nn.Module):
            return self.fn, {}
        module = copy.deepcopy(self.fn)
        if self.weights is not None:
            load_weights(module, self.weights)
        module = module.to(device=device, dtype=dtype)
        module.train(self.mode == "train")
        parameters: dict[str, torch.Tensor] = {
            n: p for n, p in module.named_parameters() if p.requires_grad
        }
        return module, parameters


def module_weights(module: torch.nn.Module, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """``module``'s floating parameters and buffers, rounded to ``dtype`` (on the CPU)."""
    return {
        name: tensor.detach().to(device="cpu", dtype=dtype)
        for name, tensor in module.state_dict().items()
        if tensor.is_floating_point()
    }


def matching_parameters(implementation: torch.nn.Module, reference: torch.nn.Module) -> None:
    """Refuse two modules whose parameters differ in name or shape: the reference runs with
    the implementation's weights, which needs one parameter per name."""
    ours = {n: tuple(p.shape) for n, p in implementation.named_parameters()}
    theirs = {n: tuple(p.shape) for n, p in reference.named_parameters()}
    if ours == theirs:
        return
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    shapes = sorted(n for n in set(ours) & set(theirs) if ours[n] != theirs[n])
    parts = [
        f"{label}: {', '.join(names[:4])}{' ...' if len(names) > 4 else ''}"
        for label, names in (
            ("only in fn", missing),
            ("only in reference", extra),
            ("shapes differ", shapes),
        )
        if names
    ]
    raise InvalidArgument(
        f"Got modules fn={type(implementation).__name__} and reference="
        f"{type(reference).__name__} whose parameters do not match ({'; '.join(parts)}). "
        "The reference runs with fn's weights, so both need the same parameter names and "
        "shapes; pass the reference as a function of the inputs to compare outputs and input "
        "gradients only."
    )


def load_weights(module: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Copy ``weights`` into ``module``'s tensors of the same names (others are kept)."""
    state = module.state_dict()
    with torch.no_grad():
        for name, value in weights.items():
            if name in state and state[name].shape == value.shape:
                state[name].copy_(value)


def rounded_inputs(
    arguments: tuple[torch.Tensor, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """The inputs on ``device`` with every floating one rounded to ``dtype``."""
    return tuple(
        a.detach().to(device=device, dtype=dtype) if a.is_floating_point() else a.to(device)
        for a in arguments
    )


def upcast(arguments: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The floating tensors in float64 (exactly: every lower dtype is a subset of it)."""
    return tuple(a.double() if a.is_floating_point() else a for a in arguments)


def input_names(subject: Subject, count: int) -> tuple[str, ...]:
    """Row names of the inputs: ``input``/``input[i]`` for a module (as check_module), the
    argument names of a function."""
    if subject.is_module:
        return ("input",) if count == 1 else tuple(f"input[{i}]" for i in range(count))
    return argument_names(subject.fn, count)


def cotangents(
    outputs: tuple[torch.Tensor, ...],
    given: Sequence[torch.Tensor | None] | None,
    dtype: torch.dtype,
    seed: int,
) -> list[torch.Tensor | None]:
    """One cotangent per output that takes one (floating, requiring grad): the caller's, or
    seeded N(0, 1) values, rounded to ``dtype`` and held in float64 (each run casts them to
    its own output dtype, exactly)."""
    generator = torch.Generator().manual_seed(seed)
    chosen: list[torch.Tensor | None] = []
    for j, out in enumerate(outputs):
        if not out.is_floating_point() or not out.requires_grad:
            chosen.append(None)
            continue
        v = given[j] if given is not None else default_cotangent(out.shape, generator)
        chosen.append(None if v is None else v.detach().cpu().to(dtype).double())
    return chosen


def output_names(outputs: tuple[torch.Tensor, ...]) -> list[tuple[int, str]]:
    """The floating outputs' positions and row names (``output`` when there is one)."""
    floating = [j for j, out in enumerate(outputs) if out.is_floating_point()]
    if len(outputs) == 1:
        return [(j, "output") for j in floating]
    return [(j, f"output[{j}]") for j in floating]


@dataclass(frozen=True)
class Run:
    """What every run of a check shares: the inputs (rounded), which to differentiate, their
    row names, the device and the seed each forward is run under."""

    inputs: tuple[torch.Tensor, ...]
    positions: tuple[int, ...]
    names: tuple[str, ...]
    device: torch.device
    seed: int
    label: str

    def evaluate(
        self,
        call: Callable[..., Any],
        parameters: dict[str, torch.Tensor],
        dtype: torch.dtype,
        pick_cotangents: Callable[[tuple[torch.Tensor, ...]], list[torch.Tensor | None]],
    ) -> Values:
        """One forward and one backward of ``call`` in ``dtype`` (fresh leaves, the RNG seeded
        to ``seed``), the device synchronised after."""
        arguments = rounded_inputs(self.inputs, dtype, self.device)
        leaves = tuple(
            a.clone().requires_grad_() if i in self.positions else a
            for i, a in enumerate(arguments)
        )
        seed_rng(self.seed, self.device)
        with torch.enable_grad():
            outputs = output_tuple(call(*leaves), self.label)
            vs = pick_cotangents(outputs)
            wrt = [leaves[i] for i in self.positions] + list(parameters.values())
            # An output shaped unlike the reference's takes no cotangent: its row fails on the
            # shape, and the gradients go without its part.
            pairs = [
                (o, v)
                for o, v in zip(outputs, vs)
                if v is not None and o.requires_grad and o.shape == v.shape
            ]
            grads: Sequence[torch.Tensor | None] = [None] * len(wrt)
            if pairs:
                grads = torch.autograd.grad(
                    [o for o, _ in pairs],
                    wrt,
                    [v.to(device=o.device, dtype=o.dtype) for o, v in pairs],
                    allow_unused=True,
                )
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        tensors: dict[str, torch.Tensor] = {}
        kinds: dict[str, str] = {}
        keys = [self.names[i] for i in self.positions] + list(parameters)
        for k, (key, leaf, grad) in enumerate(zip(keys, wrt, grads)):
            tensors[key] = (torch.zeros_like(leaf) if grad is None else grad).detach()
            kinds[key] = "input" if k < len(self.positions) else "parameter"
        for j, name in output_names(outputs):
            tensors[name] = outputs[j].detach()
            kinds[name] = "output"
        return Values(tensors, kinds)
