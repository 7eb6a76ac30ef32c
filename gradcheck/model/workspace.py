"""The copy a module check runs on: the module deep-copied to the device, its parameters,
buffers and inputs in float64 (the oracle's side) and in ``dtype`` (autograd's side), the loss,
and the oracle's evaluations of it, batched with ``torch.func.vmap`` where the module allows.

Buffers (BatchNorm running statistics) are restored before every evaluation, so in
``mode="train"`` batch statistics are part of the function while running statistics never
drift; the RNG is reseeded with ``seed`` before every evaluation, so Dropout draws the same mask
each time.
"""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_leaves

from gradcheck import messages
from gradcheck.errors import InvalidArgument
from gradcheck.model.batched import (
    lift_candidates,
    lifted_inputs,
    owner,
    per_lane_buffers,
    points_size,
    probe_points,
)
from gradcheck.model.layout import channels_last, layouts_agree, wants_channels_last
from gradcheck.model.observe import Observer
from gradcheck.model.settings import Settings, input_name
from gradcheck.model.wide_conv import WideConvolutions, has_wide_weight
from gradcheck.oracles.base import EPS64, seed_rng
from gradcheck.oracles.scratch import Scratch
from gradcheck.tolerances import BATCH_AGREEMENT_RTOL, IMPURITY_EPS_FACTOR, IMPURITY_RELATIVE


class NotAFunction(Exception):
    """The module's loss is not a function of its inputs (its output shapes changed between
    two evaluations, or two evaluations at the same point differ); ``cause`` says how."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


@dataclass(frozen=True)
class Target:
    """A tensor to check: a parameter (by name) or an input (by position)."""

    name: str
    kind: str
    key: str | int
    base: torch.Tensor  # float64 value on the device


@dataclass
class Gradients:
    """Autograd's gradient of each checked tensor (float64), the loss's rounding magnitude, and
    per tensor the largest difference between two runs of the same backward."""

    tensors: dict[str, torch.Tensor]
    magnitude: float
    reentrancy: dict[str, float] = field(default_factory=dict)


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
        _materialize_lazy(self.module, arguments, settings.device)
        self.settings = settings
        self.loss = loss
        self.evaluations = 0
        self.order: dict[str, int] = {}
        device = settings.device
        self.params64 = {
            n: p.detach().to(device, torch.float64, copy=True)
            for n, p in self.module.named_parameters()
        }
        self.buffer_snapshot = {
            n: b.detach().to(device, _float64_if_floating(b), copy=True)
            for n, b in self.module.named_buffers()
        }
        self.buffers = {n: b.clone() for n, b in self.buffer_snapshot.items()}
        self.args64 = tuple(
            a.detach().to(device, _float64_if_floating(a), copy=True) for a in arguments
        )
        # What the oracle evaluates: these tensors, or their channels-last copies (layout.py).
        self.oracle_params = self.params64
        self.oracle_args = self.args64
        # Batched convolutions with a large weight run as one product (wide_conv.py).
        self.wide: WideConvolutions | None = None
        if has_wide_weight(torch.device(device), self.params64.values()):
            self.wide = WideConvolutions()
        self.projections: list[torch.Tensor] | None = None
        self.owner = type(module).__name__
        self.rounding_scale = 0.0
        self.batching = True
        self.batch_verified = False
        self.unbatchable: set[str | int] = set()
        self.lifted: set[str] = set()
        self.scratch = Scratch(torch.device(settings.device))
        self.signature: list[tuple[int, ...]] | None = None
        self.first_use: dict[str, int] = {}
        self.lowest_eps = EPS64
        self.raised: dict[str | int, str] = {}
        self.reference_center: float | None = None
        self.center_gap = 0.0

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
        """The loss of one output: the caller's ``loss`` or the seeded projection. Raises
        :class:`NotAFunction` when the output's tensor shapes differ from the first output's."""
        signature = [tuple(leaf.shape) for leaf in tree_leaves(output) if _is_tensor(leaf)]
        if self.signature is None:
            self.signature = signature
        elif signature != self.signature:
            raise NotAFunction(messages.module_shape_change(self.signature, signature))
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
            return {**self.oracle_params, replace: point}, self.oracle_args
        args = tuple(point if i == replace else a for i, a in enumerate(self.oracle_args))
        return self.oracle_params, args

    def oracle_loss(self, replace: str | int, point: torch.Tensor) -> float:
        """``L`` in float64 with one parameter (by name) or input (by position) replaced; NaN
        where the module raises there (the exception is kept in ``raised[replace]``), so the
        step that led there is unusable rather than the check aborted."""
        params, args = self._replaced(replace, point)
        try:
            with torch.no_grad():
                return float(self._scalar(self._run(params, args, self.buffers)))
        except (NotAFunction, InvalidArgument):
            raise
        except Exception as exc:
            self.raised[replace] = messages.exception_text(exc)
            return math.nan

    def center_loss(self, stage: str, observe: bool = False) -> float:
        """``L`` in float64 at the unperturbed point. With ``observe`` the evaluation records
        where forward first uses each checked tensor and the lowest precision it computes in.
        An exception here is an :class:`~gradcheck.InvalidArgument` naming ``stage``."""
        params, args = self.oracle_params, self.oracle_args
        watched = {id(t): n for n, t in params.items()}
        watched.update({id(a): input_name(i, len(args)) for i, a in enumerate(args)})
        observer = Observer(watched)
        try:
            with torch.no_grad(), observer if observe else contextlib.nullcontext():
                output = self._run(params, args, self.buffers)
            value = float(self._scalar(output))
        except (NotAFunction, InvalidArgument):
            raise
        except Exception as exc:
            raise InvalidArgument(messages.module_raised(stage, exc)) from exc
        if not math.isfinite(value):
            raise InvalidArgument(
                f"The loss is {value} at the inputs given (float64) while check_module was "
                f"{stage}, so there is nothing to differentiate. Check the module's output "
                "for NaN/Inf at these inputs, or pass other inputs."
            )
        if observe:
            self.first_use = observer.first_use
            self.lowest_eps = observer.lowest_eps
        return value

    def adopt_oracle_layout(self, plain: float, stage: str) -> float:
        """Lay the oracle's copies out channels-last when that pays and the module gives
        ``plain`` (``L`` at the center in the caller's layout) in it too
        (:mod:`gradcheck.model.layout`); returns ``L`` at the center in the layout kept."""
        tensors = [*self.params64.values(), *self.args64]
        if not wants_channels_last(self.settings.device, tensors):
            return plain
        self.oracle_params = {n: channels_last(p) for n, p in self.params64.items()}
        self.oracle_args = tuple(channels_last(a) for a in self.args64)
        try:
            fast = self.center_loss(stage)
        except (NotAFunction, InvalidArgument):
            fast = math.nan
        if layouts_agree(fast, plain):
            return fast
        self.oracle_params, self.oracle_args = self.params64, self.args64
        return plain

    def confirm_center(self, value: float, when: str) -> None:
        """Check that ``value``, ``L`` at the unperturbed point again, is the first evaluation
        there (the first call sets it). A difference beyond
        :data:`~gradcheck.tolerances.IMPURITY_RELATIVE` of the rounding scale raises
        :class:`NotAFunction`; a smaller one is kept in ``center_gap`` as evaluation noise."""
        reference = self.reference_center
        if reference is None:
            self.reference_center = value
            return
        gap = abs(value - reference)
        share = max(IMPURITY_RELATIVE, IMPURITY_EPS_FACTOR * self.lowest_eps)
        if not gap <= share * max(self.rounding_scale, abs(reference)):
            raise NotAFunction(messages.module_center_gap(reference, value, when))
        self.center_gap = max(self.center_gap, gap)

    def oracle_losses(
        self, replace: str | int, points: torch.Tensor | Sequence[torch.Tensor]
    ) -> list[float]:
        """``L`` in float64 at each point for one parameter or input, in one vmapped batch
        (``points``: a list of tensors, or one tensor stacking them along its first dimension,
        as :func:`~gradcheck.model.batched.probe_points` builds it).

        Layers before the replaced tensor run once for the whole batch. When vmap fails for a
        tensor, the inputs of its enclosing modules are lifted into the batch, innermost first
        (:mod:`gradcheck.model.batched`: ResNet's ``out += identity`` below a replaced
        downsample); when that fails too (a custom autograd.Function without a vmap rule,
        ``.item()`` in a loss), that tensor's points run one by one. When the first batch
        disagrees with a plain evaluation at the center (randomness that vmap draws
        differently), batching is switched off for the whole check.
        """
        stacked = points if isinstance(points, torch.Tensor) else torch.stack(list(points))
        if self.batching and len(stacked) > 1 and replace not in self.unbatchable:
            values = self._lifted_batch(replace, stacked)
            if values is not None and (
                self.batch_verified or self._agrees_with_plain(replace, stacked[0], values[0])
            ):
                return values
        return [self.oracle_loss(replace, point) for point in stacked]

    def oracle_tensor(self, key: str | int) -> torch.Tensor:
        """The oracle's copy of a parameter (by name) or input (by position), in the layout the
        oracle evaluates in."""
        return self.oracle_params[key] if isinstance(key, str) else self.oracle_args[key]

    def points_for(
        self,
        target: Target,
        directions: Sequence[torch.Tensor],
        steps: Sequence[float],
        center: bool = True,
    ) -> torch.Tensor:
        """:func:`~gradcheck.model.batched.probe_points` along ``target``, laid out as the
        oracle's copy of it and written into one scratch buffer the workspace keeps (fresh
        memory for each batch of a 2.4M-element weight cost more than building it), so the
        points are valid until the next call."""
        base = target.base
        size = points_size(base, len(directions), len(steps), center)
        storage = self.scratch.take("points", (size,), base.dtype, base.device)
        like = self.oracle_tensor(target.key)
        return probe_points(base, directions, steps, center=center, like=like, storage=storage)

    def _lifted_batch(self, replace: str | int, points: torch.Tensor) -> list[float] | None:
        """The batch with the first lifting that runs (see :func:`lift_candidates`); None, and
        the tensor marked unbatchable, when none does."""
        attempts = [
            (path, self._lane_buffers(replace, path))
            for path in lift_candidates(replace, self.lifted)
        ]
        if self.settings.mode == "train" and (None, None) not in attempts:
            attempts.append((None, None))  # every buffer per lane, every layer batched
        for path, lane_buffers in attempts:
            try:
                values = self._batched_losses(replace, points, path, lane_buffers)
            except (NotAFunction, InvalidArgument):
                raise
            except Exception:
                continue
            if path is not None:
                self.lifted.add(path)
            return values
        self.unbatchable.add(replace)
        return None

    def _lane_buffers(self, replace: str | int, lift: str | None) -> frozenset[str] | None:
        """The buffers that get one copy per lane (None: all); none in eval mode, where they
        are read-only (see :func:`~gradcheck.model.batched.per_lane_buffers`)."""
        if self.settings.mode != "train":
            return frozenset()
        if lift is not None:
            first: str | None = lift
        else:
            first = None if isinstance(replace, int) else owner(replace)
        return per_lane_buffers(self.buffer_snapshot, self.order, first)

    def _agrees_with_plain(self, replace: str | int, point: torch.Tensor, value: float) -> bool:
        plain = self.oracle_loss(replace, point)
        # A mismatch means randomness or batch-dependent layers: no batching from here on.
        self.batch_verified = abs(plain - value) <= BATCH_AGREEMENT_RTOL * max(
            self.rounding_scale, abs(plain)
        )
        self.batching = self.batch_verified
        return self.batch_verified

    def _batched_losses(
        self,
        replace: str | int,
        points: torch.Tensor,
        lift: str | None = None,
        lane_buffers: frozenset[str] | None = frozenset(),
    ) -> list[float]:
        """``L`` at every point in one vmap call, the inputs of ``lift`` lifted into the batch
        and ``lane_buffers`` (None: all) with one copy per lane. Train mode updates buffers in
        place (running statistics), so there every buffer is a fresh copy; in eval mode the
        unbatched ones are read-only and shared."""
        count = points.shape[0]
        training = self.settings.mode == "train"
        buffers, buffer_dims = {}, {}
        for name, snapshot in self.buffer_snapshot.items():
            per_lane = lane_buffers is None or name in lane_buffers
            if per_lane:
                buffers[name] = snapshot.expand(count, *snapshot.shape).clone()
            else:
                buffers[name] = snapshot.clone() if training else snapshot
            buffer_dims[name] = 0 if per_lane else None
        lanes = torch.full((count,), -0.0, dtype=torch.float64, device=points.device)

        def loss_at(
            point: torch.Tensor, own_buffers: dict[str, torch.Tensor], lane_zero: torch.Tensor
        ) -> torch.Tensor:
            params, args = self._replaced(replace, point)
            with lifted_inputs(self.module, lift, lane_zero):
                output = functional_call(self.module, (params, own_buffers), args)
            return self._scalar(output)

        seed_rng(self.settings.seed, self.settings.device)
        wide = self.wide if self.wide is not None else contextlib.nullcontext()
        with torch.no_grad(), warnings.catch_warnings(), wide:
            # Ops without a batching rule (multi-head attention) run in a loop, correctly; torch's
            # warning about the lost speed would only confuse the caller, who never asked for vmap.
            warnings.filterwarnings("ignore", message="There is a performance drop")
            batched = vmap(loss_at, in_dims=(0, buffer_dims, 0), randomness="same")
            values = batched(points, buffers, lanes)
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
                grads = torch.autograd.grad(
                    loss, wanted + outputs, allow_unused=True, retain_graph=True
                )
                # torch's reentrancy check: the same backward again must give the same result.
                again = torch.autograd.grad(loss, wanted, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        labels = names + [input_name(i, len(args)) for i in positions]
        tensors = {
            label: (torch.zeros_like(w) if g is None else g).detach().to(torch.float64)
            for label, w, g in zip(labels, wanted, grads)
        }
        reentrancy = {
            label: _largest_gap(first, second) for label, first, second in zip(labels, grads, again)
        }
        magnitude = abs(float(loss.detach()))
        for leaf, g in zip(outputs, grads[len(wanted) :]):
            if g is not None:
                magnitude += float((g.double() * leaf.detach().double()).abs().sum())
        self.rounding_scale = magnitude
        return Gradients(tensors, magnitude, reentrancy)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, _args: object) -> None:
            self.order.setdefault(name, len(self.order))

        return record

    def targets(self, names: list[str], positions: list[int]) -> list[Target]:
        """The tensors to check in the order forward first uses them (recorded by
        :meth:`center_loss`), so each row's neighbours are its neighbours in the computation.
        A tensor forward was not seen to use goes by the old rule: inputs first, parameters
        last, in the order their modules were called."""
        found = [
            Target(input_name(i, len(self.args64)), "input", i, self.args64[i]) for i in positions
        ]
        found += [Target(n, "parameter", n, self.params64[n]) for n in names]
        unused = len(self.order)

        def called(name: str) -> int:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            return self.order.get(owner, unused)

        def key(index: int) -> tuple[int, int, int]:
            target = found[index]
            if target.name in self.first_use:
                return 1, self.first_use[target.name], index
            if target.kind == "input":
                return 0, index, index
            return 2, called(target.name), index

        return [found[i] for i in sorted(range(len(found)), key=key)]


def _materialize_lazy(
    module: torch.nn.Module, arguments: tuple[torch.Tensor, ...], device: torch.device
) -> None:
    """Give a lazy module's copy (``nn.LazyLinear``, ``nn.LazyConv2d``) its shapes by one forward
    at the inputs, as its first real call would; a module with no uninitialized tensor is left
    alone. The caller's module stays uninitialized."""
    lazy = torch.nn.parameter.is_lazy
    if not any(lazy(t) for t in [*module.parameters(), *module.buffers()]):
        return
    try:
        with torch.no_grad():
            module(*(a.detach().to(device) for a in arguments))
    except Exception as exc:
        raise InvalidArgument(
            messages.module_raised("initializing the lazy module's copy with one forward", exc)
        ) from exc


def _is_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor)


def _largest_gap(first: torch.Tensor | None, second: torch.Tensor | None) -> float:
    """The largest elementwise difference between two runs' gradients (NaN where both are NaN
    counts as equal; a gradient present in one run only is an infinite difference)."""
    if first is None or second is None:
        return 0.0 if first is None and second is None else math.inf
    a, b = first.detach().double(), second.detach().double()
    if a.numel() == 0 or torch.equal(a, b):
        return 0.0  # the common case, decided in one pass (NaN never compares equal here)
    same = (a == b) | (a.isnan() & b.isnan())
    gap = (a - b).abs().masked_fill(same, 0.0)
    return float(gap.nan_to_num(nan=math.inf).max())


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"of type {type(value).__name__}"


def _float64_if_floating(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.is_floating_point() else tensor.dtype


def output_tensors(output: object, owner: str) -> list[torch.Tensor]:
    """The floating-point tensors in a module's output (a tensor, or tuples/lists/dicts of
    them; None entries, such as MultiheadAttention's weights with ``need_weights=False``, are
    skipped)."""
    found: list[torch.Tensor] = []

    def walk(item: object, where: str) -> None:
        if item is None:
            return
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
