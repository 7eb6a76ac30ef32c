"""What check_module and check_device_parity take: the validated settings, the module's inputs
and which tensors to check, and the global state they keep as they found it."""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from gradcheck import validation
from gradcheck.errors import InvalidArgument

MODES = ("eval", "train")


@dataclass(frozen=True)
class Settings:
    """The validated settings of one module check: autograd's dtype, the device, the mode,
    directions per tensor and the seed."""

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
    ) -> Settings:
        """Check every argument (the module first) and resolve the device."""
        if not isinstance(module, torch.nn.Module):
            raise InvalidArgument(
                f"Got module of type {type(module).__name__}, but check_module needs a "
                "torch.nn.Module. For a plain function use gradcheck.check_function(fn, *inputs)."
            )
        return cls(
            dtype=validation.floating_dtype(dtype),
            device=resolve_device(device, module),
            mode=validation.one_of(
                "mode",
                mode,
                MODES,
                "running statistics, or batch statistics and dropout with a fixed mask",
            ),
            directions=validation.positive_int("directions", directions, "2"),
            seed=validation.seed(seed),
        )

    @property
    def dtype_name(self) -> str:
        """``float64``, ``float32``, ..."""
        return str(self.dtype).removeprefix("torch.")


def resolve_device(device: object, module: torch.nn.Module) -> torch.device:
    """``device``, or where the module's first tensor lives (the CPU for a meta module)."""
    if device is None:
        for tensor in (*module.parameters(), *module.buffers()):
            return tensor.device if tensor.device.type != "meta" else torch.device("cpu")
        return torch.device("cpu")
    return validation.available_device(device)


def module_inputs(inputs: object) -> tuple[torch.Tensor, ...]:
    """The module's positional forward arguments as a tuple of tensors (floating ones finite)."""
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
        if item.is_floating_point():
            validation.finite_tensor(item, f"inputs[{i}]")
    return arguments  # type: ignore[return-value]


def input_positions(arguments: tuple[torch.Tensor, ...]) -> list[int]:
    """The inputs that get a row: floating point and non-empty."""
    return [i for i, a in enumerate(arguments) if a.is_floating_point() and a.numel() > 0]


def input_name(position: int, count: int) -> str:
    """A row's name for an input: ``input``, or ``input[1]`` when there are several."""
    return "input" if count == 1 else f"input[{position}]"


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


@contextlib.contextmanager
def preserved_global_state(device: torch.device) -> Iterator[None]:
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
