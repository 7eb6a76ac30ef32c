"""Whole-model gradient checks: every parameter tensor of a module, attributed row by row.

:func:`check_module` differentiates a scalar loss of the module's output (by default a seeded
random projection, so every output element matters) with autograd, then checks each parameter
tensor and each input along ``directions`` seeded random directions ``u`` with the kink-aware
directional finite differences of :mod:`gradcheck.oracles.directional`, in float64:
``grad . u`` from autograd against ``d/dt L(theta + t*u)`` from the oracle. One row per tensor
says which layer owns a wrong gradient. A direction that crosses a ReLU switch point within the
smallest step is replaced by a fresh one; a row is reported ``kink-affected`` (not failed) only
when every direction did that and autograd's value lies between the one-sided derivatives.

Everything runs on a deep copy through ``torch.func.functional_call``. Buffers (BatchNorm running
statistics) are restored before every evaluation, so in ``mode="train"`` batch statistics are part
of the function while running statistics never drift; the RNG is reseeded with ``seed`` before
every evaluation, so Dropout draws the same mask each time. The caller's module, tensors, global
RNG states, grad mode and TF32 flags are left as they were.

:func:`check_device_parity` compares every parameter's full gradient on other devices (CUDA)
with the CPU float64 reference.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import difflib
import fnmatch
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.func import functional_call, vmap

from gradcheck.errors import InvalidArgument
from gradcheck.model_results import (
    FAILED,
    INCOMPLETE,
    INCONCLUSIVE,
    KINK_AFFECTED,
    PASSED,
    SKIPPED,
    DeviceParityResult,
    ModuleCheckResult,
    ModuleRow,
    ParityRow,
)
from gradcheck.oracles.base import EPS64, seed_rng
from gradcheck.oracles.directional import (
    DirectionalEstimate,
    directional_derivative,
    initial_steps,
)
from gradcheck.recording import recorded
from gradcheck.tolerances import Tolerance, resolve_tolerance

MODES = ("eval", "train")

PARITY_TOLERANCES: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-4,
    torch.float16: 1e-2,
    torch.bfloat16: 5e-2,
}
"""Normwise relative tolerance ``||g_device - g_cpu64|| / ||g_cpu64||`` per device dtype.

float64 devices differ from the CPU only in summation order (cuDNN and cuBLAS pick other
algorithms), which moves a ResNet18 gradient by about 1e-13 normwise; 1e-9 leaves room for
ill-conditioned layers and still catches any real bug. float32 (with TF32 off) rounds at 6e-8
per operation, and a ResNet18 gradient on the CPU in float32 sits about 1e-6 from float64; 1e-4
allows deep accumulation. A kernel bug moves gradients by far more than either.
"""

ZERO_GRADIENT_NOTE = (
    "autograd's gradient is exactly 0 for every element and the oracle agrees: nothing reaches "
    "this tensor here (a zero-initialised layer downstream, dead units), so the row proves little"
)

_MAX_ATTEMPTS_PER_DIRECTION = 3
"""A direction that crossed a switch point is replaced; each row tries at most this many
directions per requested direction."""

ProgressCallback = Callable[[ModuleRow, int, int], None]
"""Called after each row with the row, the number of rows done and the total."""


# -- public API --------------------------------------------------------------------------------


@recorded
def check_module(
    module: torch.nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    *,
    loss: Callable[[Any], torch.Tensor] | None = None,
    dtype: torch.dtype = torch.float64,
    device: str | torch.device | None = None,
    parameters: str | Sequence[str] | None = None,
    include_inputs: bool = True,
    mode: str = "eval",
    directions: int = 2,
    seed: int = 0,
    atol: float | None = None,
    rtol: float | None = None,
    progress: ProgressCallback | None = None,
) -> ModuleCheckResult:
    """Check autograd's gradient of a scalar loss with respect to every parameter tensor.

    ``loss(output) -> scalar tensor`` defaults to a fixed random projection of the outputs
    (seeded by ``seed``). ``dtype`` is the dtype autograd runs in; the oracle always runs in
    float64. ``parameters`` picks tensors by name or glob pattern (``"layer1.*"``); by default
    every parameter with ``requires_grad``. ``include_inputs`` adds a row per floating-point
    input. ``mode`` is ``"eval"`` (running statistics) or ``"train"`` (batch statistics,
    dropout with a fixed mask). Each row is checked along ``directions`` random directions;
    ``atol``/``rtol`` override the float64 finite-difference table row. ``progress`` is called
    after every row.

    Returns a :class:`~gradcheck.ModuleCheckResult`; call ``.raise_for_failure()`` to turn a
    failed row into :class:`~gradcheck.GradientMismatch`.
    """
    start = time.perf_counter()
    settings = _Settings.validated(
        module, dtype=dtype, device=device, mode=mode, directions=directions, seed=seed
    )
    arguments = _module_inputs(inputs)
    names = select_parameters(module, parameters)
    positions = _input_positions(arguments) if include_inputs else []
    if not names and not positions:
        raise InvalidArgument(
            f"Got a {type(module).__name__} with no parameters to check and no floating-point "
            "input to differentiate (parameters selected: none; include_inputs="
            f"{include_inputs}). Pass a module with parameters, parameters=None to check all of "
            "them, or a floating-point input with include_inputs=True."
        )
    tolerance = resolve_tolerance(settings.dtype, "finite_difference", atol=atol, rtol=rtol)
    with _preserved_global_state(settings.device):
        workspace = _Workspace(module, arguments, settings, loss)
        gradients = workspace.autograd(names, positions)
        targets = workspace.targets(names, positions)
        magnitude = _rounding_magnitude(workspace, targets[0], gradients)
        rows: list[ModuleRow] = []
        for index, target in enumerate(targets):
            row = _check_target(
                target,
                gradients.tensors[target.name],
                workspace,
                magnitude,
                tolerance,
            )
            rows.append(row)
            if progress is not None:
                progress(row, index + 1, len(targets))
    return _module_result(module, settings, tolerance, tuple(rows), workspace, parameters, start)


@recorded
def check_device_parity(
    module: torch.nn.Module,
    inputs: torch.Tensor | Sequence[torch.Tensor],
    devices: Sequence[str] = ("cpu", "cuda"),
    *,
    dtype: torch.dtype = torch.float64,
    loss: Callable[[Any], torch.Tensor] | None = None,
    mode: str = "eval",
    parameters: str | Sequence[str] | None = None,
    include_inputs: bool = True,
    seed: int = 0,
) -> DeviceParityResult:
    """Compare every parameter's gradient on each device (in ``dtype``) with CPU float64.

    The same copy of the module, inputs, loss and RNG seed run on each device with TF32 off;
    each tensor's gradient must be within the normwise tolerance of :data:`PARITY_TOLERANCES`
    for the dtype, or, below float64, within 4x the CPU's own error in that dtype (so the
    dtype's rounding is not blamed on the device). A device that is not available (CUDA on a
    machine without a GPU) is skipped with the reason; when every device is skipped the
    result's status is ``"skipped"``. In ``mode="train"`` modules with Dropout draw different
    masks on different devices, so use ``mode="eval"`` for those.
    """
    start = time.perf_counter()
    if isinstance(devices, str) or not devices:
        raise InvalidArgument(
            f"Got devices={devices!r}, but devices must be a non-empty sequence of device "
            "names such as ('cpu', 'cuda')."
        )
    reference = _Settings.validated(
        module, dtype=torch.float64, device="cpu", mode=mode, directions=1, seed=seed
    )
    arguments = _module_inputs(inputs)
    names = select_parameters(module, parameters)
    positions = _input_positions(arguments) if include_inputs else []
    allowed = PARITY_TOLERANCES.get(dtype)
    if allowed is None:
        raise InvalidArgument(
            f"Got dtype={dtype}, but device parity supports "
            f"{', '.join(str(d) for d in PARITY_TOLERANCES)}."
        )
    truth = _gradients_on(
        module,
        arguments,
        names,
        positions,
        loss,
        reference.mode,
        seed,
        torch.float64,
        reference.device,
    )
    rows: list[ParityRow] = []
    skipped: list[tuple[str, str]] = []
    baseline: _Gradients | None = None  # the CPU in ``dtype``: what the dtype alone costs
    for requested in devices:
        reason = _unavailable(requested)
        if reason:
            skipped.append((str(requested), reason))
            continue
        target = torch.device(requested)
        if target.type == "cpu" and dtype == torch.float64:
            continue  # The reference itself.
        measured = _gradients_on(
            module, arguments, names, positions, loss, mode, seed, dtype, target
        )
        if target.type == "cpu":
            baseline = measured
        elif dtype != torch.float64 and baseline is None:
            cpu = torch.device("cpu")
            baseline = _gradients_on(
                module, arguments, names, positions, loss, mode, seed, dtype, cpu
            )
        floor = None if target.type == "cpu" else baseline
        rows.extend(_parity_rows(truth, measured, str(target), allowed, floor))
    compared = sorted({row.device for row in rows})
    failed = [row for row in rows if not row.passed]
    status = FAILED if failed else PASSED if rows else SKIPPED
    return DeviceParityResult(
        passed=status == PASSED,
        status=status,
        module=type(module).__name__,
        dtype=str(dtype).removeprefix("torch."),
        mode=reference.mode,
        reference="cpu float64",
        devices=tuple(compared),
        rows=tuple(rows),
        skipped=tuple(skipped),
        message=_parity_message(module, rows, failed, skipped, dtype),
        seed=seed,
        duration_s=time.perf_counter() - start,
    )


def select_parameters(module: torch.nn.Module, parameters: str | Sequence[str] | None) -> list[str]:
    """Names of the parameter tensors to check, in registration order.

    ``None`` selects every parameter with ``requires_grad``; otherwise each entry is an exact
    name or a glob pattern (``"layer1.*.weight"``). An entry that matches nothing raises
    :class:`~gradcheck.InvalidArgument` listing the closest names.
    """
    all_names = [name for name, _ in module.named_parameters()]
    if parameters is None:
        return [name for name, p in module.named_parameters() if p.requires_grad]
    patterns = [parameters] if isinstance(parameters, str) else list(parameters)
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str):
            raise InvalidArgument(
                f"Got parameters entry {pattern!r} of type {type(pattern).__name__}, but each "
                "entry must be a parameter name or a glob pattern such as 'layer1.*'."
            )
        matches = [name for name in all_names if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            close = difflib.get_close_matches(pattern, all_names, n=5, cutoff=0.5)
            hint = f" Close matches: {', '.join(close)}." if close else ""
            raise InvalidArgument(
                f"Got parameters entry {pattern!r}, but no parameter of the "
                f"{type(module).__name__} matches it.{hint} List the names with "
                "[n for n, _ in module.named_parameters()]; glob patterns such as "
                "'layer1.*' work too."
            )
        chosen.update(matches)
    return [name for name in all_names if name in chosen]


# -- settings and inputs -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    dtype: torch.dtype
    device: torch.device
    mode: str
    directions: int
    seed: int

    @classmethod
    def validated(
        cls,
        module: object,
        *,
        dtype: object,
        device: object,
        mode: object,
        directions: object,
        seed: object,
    ) -> _Settings:
        if not isinstance(module, torch.nn.Module):
            raise InvalidArgument(
                f"Got module of type {type(module).__name__}, but check_module needs a "
                "torch.nn.Module. For a plain function use gradcheck.check_function(fn, *inputs)."
            )
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise InvalidArgument(
                f"Got dtype={dtype!r}, but dtype must be a floating-point torch.dtype such as "
                "torch.float64 (the dtype of truth) or torch.float32."
            )
        if mode not in MODES:
            raise InvalidArgument(
                f"Got mode={mode!r}, but mode must be 'eval' (running statistics) or 'train' "
                "(batch statistics, dropout with a fixed mask)."
            )
        for label, value, low in (("directions", directions, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgument(
                    f"Got {label}={value!r}, but {label} must be an integer >= {low}."
                )
        return cls(
            dtype=dtype,
            device=_resolve_device(device, module),
            mode=str(mode),
            directions=int(directions),  # type: ignore[call-overload]
            seed=int(seed),  # type: ignore[call-overload]
        )


def _unavailable(device: object) -> str:
    """Why ``device`` cannot run here, or "" when it can."""
    try:
        parsed = torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgument(
            f"Got device={device!r}, which torch does not understand ({exc}). Use 'cpu', "
            "'cuda' or 'cuda:N'."
        ) from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            return (
                f"CUDA is not available here (torch {torch.__version__}, "
                f"torch.version.cuda={torch.version.cuda}, torch.cuda.is_available() is False)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            return f"{parsed} does not exist: this machine has {torch.cuda.device_count()} GPU(s)"
    elif parsed.type not in ("cpu", "cuda"):
        return f"device type {parsed.type!r} is not supported by gradcheck (use cpu or cuda)"
    return ""


def _resolve_device(device: object, module: torch.nn.Module) -> torch.device:
    if device is None:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device if tensor.device.type != "meta" else torch.device("cpu")
        return torch.device("cpu")
    reason = _unavailable(device)
    if reason:
        raise InvalidArgument(
            f"Got device={device!r}, but {reason}. Use device='cpu', or run where a GPU is visible."
        )
    return torch.device(device)  # type: ignore[call-overload]


def _module_inputs(inputs: object) -> tuple[torch.Tensor, ...]:
    arguments = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not arguments:
        raise InvalidArgument(
            "Got inputs=(), but the module needs its forward arguments, for example "
            "torch.rand(2, 3, 64, 64, dtype=torch.float64)."
        )
    for i, item in enumerate(arguments):
        if not isinstance(item, torch.Tensor):
            raise InvalidArgument(
                f"Got inputs[{i}] of type {type(item).__name__}, but every input must be a "
                "torch.Tensor (the module's positional forward arguments). Bind other arguments "
                "in a small wrapper module."
            )
        if item.is_floating_point() and not bool(torch.isfinite(item).all()):
            raise InvalidArgument(
                f"Got inputs[{i}] with NaN/Inf values: a gradient at a non-finite point is "
                "meaningless. Pass finite values."
            )
    return arguments  # type: ignore[return-value]


def _input_positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    return [i for i, a in enumerate(arguments) if a.is_floating_point() and a.numel() > 0]


def _input_name(position: int, count: int) -> str:
    return "input" if count == 1 else f"input[{position}]"


@contextlib.contextmanager
def _preserved_global_state(device: torch.device) -> Iterator[None]:
    """Fork the RNG, keep grad mode, and turn TF32 off, restoring all three afterwards."""
    devices = [device.index or 0] if device.type == "cuda" else []
    matmul_tf32 = torch.backends.cuda.matmul.allow_tf32
    cudnn_tf32 = torch.backends.cudnn.allow_tf32
    grad_enabled = torch.is_grad_enabled()
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
        torch.backends.cudnn.allow_tf32 = cudnn_tf32
        torch.set_grad_enabled(grad_enabled)


# -- the copy the check runs on ----------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """A tensor to check: a parameter (by name) or an input (by position)."""

    name: str
    kind: str
    key: str | int
    base: torch.Tensor  # float64 value on the device


@dataclass
class _Gradients:
    tensors: dict[str, torch.Tensor]
    magnitude: float


class _Workspace:
    """A deep copy of the module with float64 (oracle) and ``dtype`` (autograd) tensors."""

    def __init__(
        self,
        module: torch.nn.Module,
        arguments: tuple[torch.Tensor, ...],
        settings: _Settings,
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
            return self._projection_loss(_output_tensors(output, self.owner))
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
        self.batch_verified = abs(plain - value) <= 1e-10 * max(self.rounding_scale, abs(plain))
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

    def autograd(self, names: list[str], positions: list[int]) -> _Gradients:
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
                leaves = _output_tensors(output, self.owner)
                wanted = [params[n] for n in names] + [args[i] for i in positions]
                outputs = [leaf for leaf in leaves if leaf.requires_grad]
                grads = torch.autograd.grad(loss, wanted + outputs, allow_unused=True)
        finally:
            for handle in handles:
                handle.remove()
        labels = names + [_input_name(i, len(args)) for i in positions]
        tensors = {
            label: (torch.zeros_like(w) if g is None else g).detach().to(torch.float64)
            for label, w, g in zip(labels, wanted, grads)
        }
        magnitude = abs(float(loss.detach()))
        for leaf, g in zip(outputs, grads[len(wanted) :]):
            if g is not None:
                magnitude += float((g.double() * leaf.detach().double()).abs().sum())
        self.rounding_scale = magnitude
        return _Gradients(tensors, magnitude)

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(_module: torch.nn.Module, _args: object) -> None:
            self.order.setdefault(name, len(self.order))

        return record

    def targets(self, names: list[str], positions: list[int]) -> list[_Target]:
        """The tensors to check, inputs first, then parameters in forward execution order."""
        found = [
            _Target(_input_name(i, len(self.args64)), "input", i, self.args64[i]) for i in positions
        ]
        unused = len(self.order)

        def called(name: str) -> int:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            return self.order.get(owner, unused)

        ordered = sorted(names, key=lambda n: (called(n), names.index(n)))
        return found + [_Target(n, "parameter", n, self.params64[n]) for n in ordered]


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"of type {type(value).__name__}"


def _float64_if_floating(tensor: torch.Tensor) -> torch.dtype:
    return torch.float64 if tensor.is_floating_point() else tensor.dtype


def _output_tensors(output: object, owner: str) -> list[torch.Tensor]:
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


# -- one row -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    status: str
    autograd: float
    estimate: DirectionalEstimate
    allowed: float

    @property
    def excess(self) -> float:
        if not self.estimate.decided:
            return -math.inf
        return abs(self.autograd - self.estimate.value) / max(self.allowed, 1e-300)


def _direction(base: torch.Tensor, seed: int, index: int, attempt: int) -> torch.Tensor:
    """A seeded Gaussian direction scaled like the tensor (unit rms when the tensor is 0)."""
    generator = torch.Generator().manual_seed((seed * 1_000_003 + index) * 1009 + attempt)
    u = torch.randn(base.shape, generator=generator, dtype=torch.float64).to(base.device)
    norm = float(base.norm())
    target = norm if norm > 0 else math.sqrt(base.numel())
    return u * (target / float(u.norm()))


def _check_target(
    target: _Target,
    gradient: torch.Tensor,
    workspace: _Workspace,
    magnitude: float,
    tolerance: Tolerance,
) -> ModuleRow:
    settings = workspace.settings
    autograd_eps = float(torch.finfo(settings.dtype).eps)
    index = _stable_index(target.name)
    verdicts: list[_Verdict] = []
    attempts = 0
    first = initial_steps()
    while attempts < _MAX_ATTEMPTS_PER_DIRECTION * settings.directions:
        missing = settings.directions - sum(v.estimate.decided for v in verdicts)
        if missing <= 0 or any(v.status == FAILED for v in verdicts):
            break
        # One batch: the first two levels of every missing direction, and the center.
        batch = [
            _direction(target.base, settings.seed, index, attempts + k) for k in range(missing)
        ]
        attempts += missing
        points = [target.base] + [target.base + t * u for u in batch for t in first]
        values = workspace.oracle_losses(target.key, points)
        for k, u in enumerate(batch):
            prefetched = values[1 + k * len(first) : 1 + (k + 1) * len(first)]

            def phi(steps: Sequence[float], u: torch.Tensor = u, ready: list = prefetched) -> list:
                if list(steps) == first:
                    return ready
                return workspace.oracle_losses(target.key, [target.base + t * u for t in steps])

            terms = gradient * u
            estimate = directional_derivative(phi, center=values[0], magnitude=magnitude)
            autograd_rounding = 4.0 * autograd_eps * float(terms.abs().sum())
            verdicts.append(_judge(float(terms.sum()), autograd_rounding, estimate, tolerance))
    row = _row(target, verdicts, attempts, settings.directions)
    if row.passed and not bool(gradient.any()):
        row = dataclasses.replace(row, note=ZERO_GRADIENT_NOTE)
    return row


_NOISE_STEPS = (1e-12, -1e-12, 2e-12, -2e-12, 3e-12, -3e-12)


def _rounding_magnitude(workspace: _Workspace, target: _Target, gradients: _Gradients) -> float:
    """The size ``m`` with ``eps * m`` = the rounding noise of one evaluation of ``L``.

    ``|L| + sum |dL/dout * out|`` is the noise when the outputs carry it, but a network whose
    outputs are tiny next to its activations (MobileNetV3 at random init: logits about 1e-10)
    is noisier than that. So the noise is also measured: ``L`` at steps of 1e-12 along one
    direction deviates from the tangent line by rounding alone (the curvature and any gradient
    bug are far below it there). The larger of the two, times a safety factor of 2, is used.
    """
    u = _direction(target.base, workspace.settings.seed, _stable_index(target.name), 10_000)
    slope = float((gradients.tensors[target.name] * u).sum())
    points = [target.base] + [target.base + t * u for t in _NOISE_STEPS]
    values = workspace.oracle_losses(target.key, points)
    residuals = [abs(v - values[0] - t * slope) for t, v in zip(_NOISE_STEPS, values[1:])]
    return max(gradients.magnitude, 2.0 * max(residuals) / EPS64)


def _stable_index(name: str) -> int:
    """A per-tensor number for seeding its directions, the same in every Python process."""
    return sum((i + 1) * ord(c) for i, c in enumerate(name)) % 1_000_003


def _judge(
    autograd: float, autograd_rounding: float, estimate: DirectionalEstimate, tolerance: Tolerance
) -> _Verdict:
    if estimate.decided:
        allowed = tolerance.allowed(estimate.value, estimate.error + autograd_rounding)
        ok = abs(autograd - estimate.value) <= allowed
        return _Verdict(PASSED if ok else FAILED, autograd, estimate, allowed)
    if estimate.kink and estimate.lower is not None and estimate.upper is not None:
        # A switch point at the point itself. With one switch point autograd's value is one of
        # the one-sided derivatives; with several at once (ReLUs of exact zeros) it can be any
        # mix of them, so a value outside the interval is undecided, never a failure.
        scale = max(abs(estimate.lower), abs(estimate.upper))
        allowed = tolerance.allowed(scale, autograd_rounding)
        if estimate.lower - allowed <= autograd <= estimate.upper + allowed:
            return _Verdict(KINK_AFFECTED, autograd, estimate, allowed)
    return _Verdict(INCONCLUSIVE, autograd, estimate, math.nan)


def _row(target: _Target, verdicts: list[_Verdict], attempts: int, wanted: int) -> ModuleRow:
    failed = [v for v in verdicts if v.status == FAILED]
    decided = [v for v in verdicts if v.estimate.decided]
    if failed:
        status, shown = FAILED, failed[0]
    elif len(decided) >= wanted:
        status, shown = PASSED, max(decided, key=lambda v: v.excess)
    elif any(v.status == KINK_AFFECTED for v in verdicts):
        status, shown = KINK_AFFECTED, next(v for v in verdicts if v.status == KINK_AFFECTED)
    else:
        status, shown = INCONCLUSIVE, verdicts[-1]
    estimate = shown.estimate
    note = ""
    if status in (KINK_AFFECTED, INCONCLUSIVE):
        note = (
            f"{len(decided)} of {wanted} directions decided in {attempts} attempts; last: "
            f"{estimate.reason}"
        )
    oracle = estimate.value
    relative = abs(shown.autograd - oracle) / abs(oracle) if oracle else abs(shown.autograd)
    return ModuleRow(
        name=target.name,
        kind=target.kind,
        shape=tuple(target.base.shape),
        numel=target.base.numel(),
        status=status,
        autograd=shown.autograd,
        oracle=oracle,
        relative_error=relative if estimate.decided else math.nan,
        error_estimate=estimate.error,
        allowed=shown.allowed,
        rule=estimate.rule,
        step=estimate.step,
        directions=len(decided),
        attempts=attempts,
        note=note,
    )


# -- results -----------------------------------------------------------------------------------


def _module_result(
    module: torch.nn.Module,
    settings: _Settings,
    tolerance: Tolerance,
    rows: tuple[ModuleRow, ...],
    workspace: _Workspace,
    parameters: object,
    start: float,
) -> ModuleCheckResult:
    failed = [row for row in rows if row.status == FAILED]
    status = FAILED if failed else PASSED if all(r.passed for r in rows) else INCOMPLETE
    culprit = failed[-1].name if failed else None
    selection = "" if parameters is None else f", parameters={parameters!r}"
    reproduce = (
        f"gradcheck.check_module(module, inputs, dtype=torch.{str(settings.dtype)[6:]}, "
        f"device={str(settings.device)!r}, mode={settings.mode!r}, "
        f"directions={settings.directions}, seed={settings.seed}{selection})"
    )
    label = (
        f"check_module {type(module).__name__!r} ({str(settings.dtype)[6:]}, "
        f"{settings.device}, {settings.mode} mode)"
    )
    lines: list[str]
    if failed:
        lines = [f"Gradient mismatch: {label}: {len(failed)} of {len(rows)} rows fail"]
        lines += [_failure_line(row) for row in failed[:8]]
        if len(failed) > 8:
            lines.append(f"  ... and {len(failed) - 8} more")
        lines.append(_culprit_line(rows, failed[-1]))
    else:
        passed = sum(r.passed for r in rows)
        lines = [f"{label}: {passed} of {len(rows)} rows pass"]
        decided = [r for r in rows if r.passed]
        if decided:
            worst = max(decided, key=lambda r: r.tolerance_used)
            lines[0] += (
                f"; closest to its tolerance: {worst.name} ({worst.tolerance_used:.0%} used, "
                f"relative error {worst.relative_error:.1e})"
            )
        lines += [f"  {row.status}: {row.name}: {row.note}" for row in rows if not row.passed]
    zero = [row.name for row in rows if row.note == ZERO_GRADIENT_NOTE]
    if zero:
        lines.append(
            f"  note: {len(zero)} of {len(rows)} rows have an all-zero gradient, so they prove "
            f"little (first: {', '.join(zero[:3])}); a zero-initialised layer downstream blocks "
            "every gradient: give it random weights to check the layers behind it"
        )
    lines.append(f"  reproduce: {reproduce}")
    return ModuleCheckResult(
        passed=status == PASSED,
        status=status,
        module=type(module).__name__,
        dtype=str(settings.dtype).removeprefix("torch."),
        device=str(settings.device),
        mode=settings.mode,
        loss="seeded random projection of the outputs"
        if workspace.loss is None
        else getattr(workspace.loss, "__name__", type(workspace.loss).__name__),
        seed=settings.seed,
        directions=settings.directions,
        tolerance=tolerance,
        rows=rows,
        likely_culprit=culprit,
        message="\n".join(lines),
        reproduce=reproduce,
        evaluations=workspace.evaluations,
        duration_s=time.perf_counter() - start,
    )


def _failure_line(row: ModuleRow) -> str:
    shape = "x".join(str(s) for s in row.shape) or "scalar"
    if row.note:
        return f"  {row.name} [{shape}]: {row.note}"
    return (
        f"  {row.name} [{shape}]: autograd {row.autograd:.9g} vs finite_difference "
        f"{row.oracle:.9g} (+/- {row.error_estimate:.1g}) along a random direction; relative "
        f"error {row.relative_error:.1e}, |diff| {abs(row.autograd - row.oracle):.2g} > allowed "
        f"{row.allowed:.2g}"
    )


def _culprit_line(rows: tuple[ModuleRow, ...], culprit: ModuleRow) -> str:
    after = rows[rows.index(culprit) + 1 :]
    downstream = next((row.name for row in after if row.passed), None)
    where = f" ({downstream})" if downstream else ""
    return (
        f"  likely culprit: {culprit.name}, the failing row closest to the output: the rows "
        f"downstream of it pass, so the wrong gradient enters in its own backward or in an "
        f"operation between it and the next row{where}"
    )


def _gradients_on(
    module: torch.nn.Module,
    arguments: tuple[torch.Tensor, ...],
    names: list[str],
    positions: list[int],
    loss: Callable[[Any], torch.Tensor] | None,
    mode: str,
    seed: int,
    dtype: torch.dtype,
    device: torch.device,
) -> _Gradients:
    settings = _Settings.validated(
        module, dtype=dtype, device=device, mode=mode, directions=1, seed=seed
    )
    with _preserved_global_state(settings.device):
        return _Workspace(module, arguments, settings, loss).autograd(names, positions)


def _normwise(value: torch.Tensor, reference: torch.Tensor) -> float:
    scale = float(reference.norm())
    error = float((value.cpu() - reference).norm())
    return error / scale if scale > 0 else error


def _parity_rows(
    truth: _Gradients,
    measured: _Gradients,
    device: str,
    allowed: float,
    baseline: _Gradients | None,
) -> list[ParityRow]:
    """One row per tensor. With a ``baseline`` (the CPU in the same dtype) a device may also be
    up to 4x as far from float64 as the CPU is: float32 rounding alone can reach 1e-2 (ResNet18
    in train mode at batch 2), and that is the dtype's error, not the device's."""
    rows = []
    for name, reference in truth.tensors.items():
        difference = measured.tensors[name].cpu() - reference
        relative = _normwise(measured.tensors[name], reference)
        limit = allowed
        if baseline is not None:
            limit = max(allowed, 4.0 * _normwise(baseline.tensors[name], reference))
        rows.append(
            ParityRow(
                name=name,
                device=device,
                shape=tuple(reference.shape),
                max_abs_error=float(difference.abs().max()) if difference.numel() else 0.0,
                relative_error=relative,
                allowed=limit,
                passed=relative <= limit,
            )
        )
    return rows


def _parity_message(
    module: torch.nn.Module,
    rows: list[ParityRow],
    failed: list[ParityRow],
    skipped: list[tuple[str, str]],
    dtype: torch.dtype,
) -> str:
    label = f"check_device_parity {type(module).__name__!r} ({str(dtype)[6:]} vs cpu float64)"
    lines = []
    if failed:
        lines.append(
            f"Gradient mismatch across devices: {label}: {len(failed)} of {len(rows)} "
            "tensors differ by more than allowed (normwise relative)"
        )
        lines += [
            f"  {r.name} on {r.device}: relative error {r.relative_error:.2e} > allowed "
            f"{r.allowed:.1e}, max |diff| "
            f"{r.max_abs_error:.2e}"
            for r in failed[:8]
        ]
    elif rows:
        worst = max(rows, key=lambda r: r.relative_error)
        lines.append(
            f"{label}: {len(rows)} tensors agree; worst relative error "
            f"{worst.relative_error:.1e} at {worst.name} on {worst.device}"
        )
    else:
        lines.append(f"{label}: skipped, no device besides the reference could run")
    lines += [f"  skipped {device}: {reason}" for device, reason in skipped]
    return "\n".join(lines)
