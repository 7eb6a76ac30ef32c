"""What every oracle sees: the scalarised problem, the probe directions, and the estimate shape.

A check turns ``fn(*inputs)`` into one scalar ``L(x) = sum_j <v_j, out_j(x)>`` with seeded random
cotangents ``v_j``; autograd's gradient of ``L`` is the full vector-Jacobian product ``v^T J``.
Each oracle estimates the derivative of ``L`` along a set of probe directions (the unit vectors of
every input element, or random directions for large inputs) in float64, and reports an error
estimate per probe, kink intervals where ``L`` is not differentiable, and reasons where it could
not decide.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

EPS64 = float(torch.finfo(torch.float64).eps)
"""Machine epsilon of float64, the dtype every oracle computes in."""

FULL_JACOBIAN_MAX_ELEMENTS = 256
"""Inputs with up to this many differentiable elements are probed element by element (the full
Jacobian, contracted with the cotangent); larger ones along random directions. 256 keeps a
full finite-difference check of a cheap function under a second on a laptop core."""

DEFAULT_DIRECTIONS = 8
"""Number of seeded random directions for inputs larger than ``FULL_JACOBIAN_MAX_ELEMENTS``."""


RNG_LOCK = threading.RLock()
"""Held by every section that saves, seeds and restores torch's process-wide generators
(:func:`frozen_rng`, check_module's fork): two threads interleaving their save and restore
would leave one thread's seeded state behind as the caller's. Re-entrant, since checks nest."""


@contextlib.contextmanager
def frozen_rng(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with the RNG seeded to ``seed``, restoring the caller's RNG state after.

    Every evaluation of the checked function runs under this, so functions that draw random
    numbers (dropout) see the same numbers each time and the caller's RNG is left untouched.
    The generators saved are those :func:`seed_rng` seeds (the CPU one and, for a CUDA
    ``device``, that device's), as ``torch.random.fork_rng(devices=[index])`` would save them;
    done by hand it costs a third of the fork's ~9 us, paid on every evaluation. The block runs
    under :data:`RNG_LOCK`, so checks on several threads take turns here and each sees its own
    seeded numbers.
    """
    with RNG_LOCK:
        cpu_state = torch.default_generator.get_state()
        cuda_index = device.index or 0
        cuda_state = torch.cuda.get_rng_state(cuda_index) if device.type == "cuda" else None
        try:
            seed_rng(seed, device)
            yield
        finally:
            torch.default_generator.set_state(cpu_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state(cuda_state, cuda_index)


def seed_rng(seed: int, device: torch.device) -> None:
    """Seed the CPU generator and, for a CUDA ``device``, that device's generator: exactly the
    generators ``torch.random.fork_rng(devices=[index])`` saves and restores.

    ``torch.manual_seed`` would also reseed every other CUDA device, which the fork does not
    restore, so the caller's CUDA RNG would change; and before CUDA is initialised it queues
    each call with a formatted stack trace, about 1.5 ms, most of a small check's time.
    """
    torch.default_generator.manual_seed(seed)
    if device.type == "cuda":
        with torch.cuda.device(device.index or 0):
            torch.cuda.manual_seed(seed)


def unravel(flat_index: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The multi-index of element ``flat_index`` of a row-major tensor of ``shape``."""
    index = []
    for size in reversed(shape):
        index.append(flat_index % size)
        flat_index //= size
    return tuple(reversed(index))


def shares_a_larger_storage(tensor: torch.Tensor) -> bool:
    """A view into more storage than its own elements (an offset, a slice of a larger base, a
    transpose), without overlapping elements: ``as_strided`` and friends read that layout."""
    if any(stride == 0 for stride, size in zip(tensor.stride(), tensor.shape) if size > 1):
        return False  # expanded: several elements share one memory cell
    compact = tensor.storage_offset() == 0 and tensor.is_contiguous()
    if compact and tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size():
        return False
    return not _overlaps_itself(tensor)


def _overlaps_itself(tensor: torch.Tensor) -> bool:
    """Whether two elements of ``tensor`` share a memory cell (``as_strided((3, 3), (1, 1))``):
    such a view cannot be perturbed one element at a time in its own storage."""
    cells = tensor.untyped_storage().nbytes() // tensor.element_size()
    index = torch.arange(cells).as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())
    return int(index.unique().numel()) < tensor.numel()


def storage_copy(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A copy of ``tensor`` that keeps its layout: its whole storage copied (into ``dtype``) and
    viewed with the same size, strides and offset; a plain clone for a compact tensor."""
    dtype = dtype or tensor.dtype
    if not shares_a_larger_storage(tensor):
        return tensor.detach().to(dtype, copy=True)
    return whole_storage_copy(tensor, dtype)


def whole_storage_copy(tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor``'s whole storage copied (into ``dtype``) and viewed with its size, strides and
    offset, for a tensor already known to share a larger storage."""
    dtype = dtype or tensor.dtype
    whole = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    whole.set_(tensor.untyped_storage())
    copy = whole.to(dtype, copy=True)
    return copy.as_strided(tensor.shape, tensor.stride(), tensor.storage_offset())


@dataclass(frozen=True)
class InputSpec:
    """A differentiable input: its name, argument position, shape and slice of the flat vector."""

    name: str
    position: int
    shape: tuple[int, ...]
    offset: int
    complex_parts: bool = False
    """The input is complex, checked as its ``view_as_real`` pairs (``shape`` ends in 2)."""

    @property
    def numel(self) -> int:
        """Number of elements."""
        return math.prod(self.shape)

    def unravel(self, flat_index: int) -> tuple[int, ...]:
        """The multi-index of element ``flat_index`` (relative to this input)."""
        return unravel(flat_index, self.shape)

    def element(self, flat_index: int) -> tuple[str, tuple[int, ...]]:
        """The name and index of element ``flat_index`` as a user reads it: ``("x", (1, 2))``,
        or for a complex input ``("z.imag", (3,))``, its part and the complex element."""
        index = self.unravel(flat_index)
        if not self.complex_parts:
            return self.name, index
        return f"{self.name}.{COMPLEX_PARTS[index[-1]]}", index[:-1]

    def flat_index(self, name: str, index: tuple[int, ...]) -> int | None:
        """The inverse of :meth:`element`: the flat index (relative to this input) of the
        element named ``name`` at ``index``, or None when it is not this input's."""
        if self.complex_parts:
            stem, _, part = name.rpartition(".")
            if stem != self.name or part not in COMPLEX_PARTS:
                return None
            index = (*index, COMPLEX_PARTS.index(part))
        elif name != self.name:
            return None
        flat = 0
        for i, size in zip(index, self.shape):
            flat = flat * size + i
        return flat


COMPLEX_PARTS = ("real", "imag")
"""The names of a complex element's two real coordinates, in ``view_as_real`` order."""


@dataclass
class Problem:
    """The scalarised function ``L(x) = sum_j <v_j, out_j(x)>`` over the flat differentiable inputs.

    ``arguments`` are float64 copies of every argument (integer ones unchanged); ``specs`` name the
    differentiable ones; ``cotangents`` hold one float64 tensor per output (None for outputs that
    are not floating point). ``point`` is the flat float64 vector where gradients are taken.
    """

    fn: Callable[..., object]
    arguments: tuple[torch.Tensor, ...]
    names: tuple[str, ...]
    specs: tuple[InputSpec, ...]
    cotangents: tuple[torch.Tensor | None, ...]
    seed: int
    point: torch.Tensor = field(init=False)
    laid_out: frozenset[int] = field(init=False)
    _at_point: tuple[torch.Tensor, ...] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.point = torch.cat([self.arguments[s.position].reshape(-1) for s in self.specs])
        # The arguments whose layout fn may read (views into a larger storage), found once.
        self.laid_out = frozenset(
            i for i, a in enumerate(self.arguments) if shares_a_larger_storage(a)
        )

    @property
    def size(self) -> int:
        """Total number of differentiable elements."""
        return int(self.point.numel())

    @property
    def device(self) -> torch.device:
        """Where the function is evaluated."""
        return self.point.device

    def arguments_at(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The argument tuple with the differentiable inputs taken from ``flat``."""
        # Fresh copies of the constant arguments, so a function that writes into its
        # arguments cannot leak state from one evaluation into the next (the differentiable
        # ones are views of ``flat``, fresh on every evaluation).
        differentiable = {spec.position for spec in self.specs}
        arguments = [
            a if i in differentiable else whole_storage_copy(a) if i in self.laid_out else a.clone()
            for i, a in enumerate(self.arguments)
        ]
        for spec in self.specs:
            values = flat[spec.offset : spec.offset + spec.numel].view(spec.shape)
            if spec.position in self.laid_out:
                # Keep the layout fn may read (as_strided on a partial view): the perturbed
                # values written into a fresh copy of the whole storage.
                values = whole_storage_copy(self.arguments[spec.position]).copy_(values)
            arguments[spec.position] = values
        return tuple(arguments)

    def outputs_at(self, flat: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``fn`` evaluated at ``flat`` with the check's frozen RNG, as a tuple of tensors."""
        with frozen_rng(self.seed, self.device):
            out = self.fn(*self.arguments_at(flat))
        return out if isinstance(out, tuple) else tuple(out) if isinstance(out, list) else (out,)

    def outputs_at_point(self) -> tuple[torch.Tensor, ...]:
        """``fn`` at the problem's own point: evaluated on the first call, then remembered (the
        check that fn runs there, the purity check and every oracle's center share it)."""
        if self._at_point is None:
            self._at_point = self.outputs_at(self.point)
        return self._at_point

    def floating_outputs_at(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """The floating-point outputs at ``flat`` as float64, in cotangent order (no graph)."""
        return self.floating(self.outputs_at(flat))

    def floating(self, outputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
        """The floating-point ones of fn's ``outputs`` as float64, in cotangent order."""
        return [out.to(torch.float64) for out, v in zip(outputs, self.cotangents) if v is not None]

    @property
    def used_cotangents(self) -> list[torch.Tensor]:
        """The cotangents of the floating-point outputs (same order as ``floating_outputs_at``)."""
        return [v for v in self.cotangents if v is not None]


@dataclass(frozen=True)
class Probes:
    """Directions in the flat input space along which oracles and autograd are compared.

    ``basis`` probes are the unit vectors of every element. Random probes are either given as a
    ``(count, size)`` float64 matrix (``directions``) or drawn on demand from ``seed``
    (:func:`random_direction`: one seeded generator per direction, so a check of a 1e7-element
    input never holds more than the directions it is working on), without moving the flat
    elements in ``excluded``; every row has max-norm 1.
    """

    count: int
    directions: torch.Tensor | None = None
    seed: int | None = None
    excluded: tuple[int, ...] = ()

    @property
    def is_basis(self) -> bool:
        """True when probe ``p`` is the ``p``-th input element."""
        return self.directions is None and self.seed is None

    def direction(self, p: int, size: int, device: torch.device) -> torch.Tensor:
        """Probe ``p`` as a float64 vector of length ``size``."""
        if self.directions is not None:
            return self.directions[p].to(device)
        if self.seed is not None:
            return random_direction(self.seed, p, size, self.excluded).to(device)
        unit = torch.zeros(size, dtype=torch.float64, device=device)
        unit[p] = 1.0
        return unit


def random_direction(seed: int, p: int, size: int, excluded: tuple[int, ...] = ()) -> torch.Tensor:
    """Random direction ``p`` of a check seeded ``seed``: standard normal entries from a
    generator seeded with ``(seed + 1 + p * 1000003) mod 2**63``, 0 at the ``excluded`` flat
    elements, scaled to max-norm 1."""
    generator = torch.Generator().manual_seed((seed + 1 + p * 1_000_003) % 2**63)
    direction = torch.randn(size, generator=generator, dtype=torch.float64)
    if excluded:
        direction[list(excluded)] = 0.0
    # max |d| as max(max d, -min d) and the division in place: the same digits, without two
    # full-size temporaries (each a fresh mapping the kernel zeroes at 1e7 elements).
    scale = max(float(direction.max()), -float(direction.min())) if size else 0.0
    return direction.div_(scale) if scale > 0 else direction


@dataclass
class Estimate:
    """An oracle's answer: one derivative per probe with its error estimate.

    ``lower``/``upper`` are set (not None) for probes on a kink: the one-sided derivatives bound
    the valid subgradients. ``reasons`` holds a reason for each probe the oracle could not decide.
    """

    values: list[float]
    errors: list[float]
    lower: list[float | None]
    upper: list[float | None]
    reasons: list[str | None]

    @classmethod
    def empty(cls, count: int) -> Estimate:
        """An estimate of ``count`` undecided probes, filled in by the oracle."""
        return cls(
            values=[math.nan] * count,
            errors=[math.inf] * count,
            lower=[None] * count,
            upper=[None] * count,
            reasons=[None] * count,
        )

    @classmethod
    def undecided(cls, count: int, reason: str) -> Estimate:
        """An estimate of ``count`` probes, none decided, all for ``reason``."""
        estimate = cls.empty(count)
        estimate.reasons = [reason] * count
        return estimate


class Oracle:
    """An independent judge of autograd: estimates ``dL/d(probe)`` for every probe.

    Subclasses set ``name`` (the string used in ``check_function(oracle=...)``), and implement
    :meth:`estimate`. ``prefers_basis`` says whether the oracle wants per-element probes even for
    large inputs (the symbolic oracle computes the whole gradient at once); ``full_max`` and
    ``directions`` set when and how random directions replace per-element probes.
    """

    name: str = "oracle"
    prefers_basis: bool = False
    full_max: int = FULL_JACOBIAN_MAX_ELEMENTS
    directions: int = DEFAULT_DIRECTIONS

    def input_names(self, default: tuple[str, ...]) -> tuple[str, ...]:
        """The names this oracle uses for the function's arguments (``default``: from ``fn``)."""
        return default

    def estimate(self, problem: Problem, probes: Probes) -> Estimate:
        """The derivative of ``problem``'s scalar along each probe, with error estimates."""
        raise NotImplementedError

    def describe(self) -> str:
        """A short constructor-like text, used in reproduction lines."""
        return repr(self.name)
