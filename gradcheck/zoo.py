"""torchvision classification models by name, randomly initialised under a seed, with inputs.

Pretrained weights are never downloaded: models are built with ``weights=None`` under a forked,
seeded RNG (the caller's RNG is left as it was), and a local ``state_dict`` file can be loaded
instead. Vision transformers take the image size as an argument, so ``vit_b_16`` works at 64x64.
Weight matrices that torchvision initialises to zero (the ViT head) are redrawn with small random
values, so gradients reach every layer.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from pathlib import Path

import torch

from gradcheck.errors import InvalidArgument

INSTALL = "pip install -e '.[models]' -c constraints/ci.txt"


def model_names() -> list[str]:
    """The classification models torchvision offers (``resnet18``, ``vit_b_16``, ...)."""
    torchvision = _torchvision()
    return sorted(torchvision.models.list_models(module=torchvision.models))


def build_model(
    name: str,
    *,
    batch: int = 2,
    size: int = 64,
    seed: int = 0,
    weights: Path | None = None,
) -> tuple[torch.nn.Module, torch.Tensor]:
    """The model ``name`` and a seeded ``(batch, 3, size, size)`` float32 image batch in [0, 1).

    Raises :class:`~gradcheck.InvalidArgument` for an unknown name (listing close matches), a
    size or batch below 1, a missing weights file or weights that do not fit the model.
    """
    for label, value in (("batch", batch), ("size", size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgument(f"Got {label}={value!r}, but {label} must be an integer >= 1.")
    names = model_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f" Close matches: {', '.join(close)}." if close else ""
        raise InvalidArgument(
            f"Got model {name!r}, but torchvision has no classification model of that name."
            f"{hint} See torchvision.models.list_models()."
        )
    torchvision = _torchvision()
    options = {"image_size": size} if name.startswith("vit_") else {}
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torchvision.models.get_model(name, weights=None, **options)
        if weights is None:
            redraw_zero_weights(model)
    if weights is not None:
        _load(model, name, weights)
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed + 1))
    return model, images


def built_model(
    name: str,
    *,
    size: int = 64,
    seed: int = 0,
    weights: Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """:func:`build_model`'s model alone, in ``dtype``: a module-level factory, so that
    ``functools.partial(built_model, name, ...)`` can travel to spawned processes (the
    ``make_model`` of :func:`gradcheck.check_distributed`)."""
    model, _ = build_model(name, batch=1, size=size, seed=seed, weights=weights)
    return model.to(dtype)


def redraw_zero_weights(model: torch.nn.Module) -> list[str]:
    """Give weight matrices that were initialised to zero small random values (std 0.02).

    torchvision zero-initialises some output layers (the ViT head): then every gradient behind
    them is exactly 0 and a gradient check of those layers proves nothing. Returns the names.
    """
    redrawn = []
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() >= 2 and not bool(parameter.any()):
                parameter.normal_(0.0, 0.02)
                redrawn.append(name)
    return redrawn


def _load(model: torch.nn.Module, name: str, path: Path) -> None:
    if not path.is_file():
        raise InvalidArgument(
            f"Got weights={str(path)!r}, but no such file exists. Save one with "
            "torch.save(model.state_dict(), path)."
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle.UnpicklingError, RuntimeError (not a zip), EOFError
        raise InvalidArgument(
            f"Got weights={str(path)!r}, but torch.load cannot read it as a state_dict "
            f"({type(exc).__name__}: {_first_line(exc)}). Save one with "
            "torch.save(model.state_dict(), path)."
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise InvalidArgument(
            f"Got weights={str(path)!r}, which holds a {type(state).__name__}, not a state_dict "
            "(a mapping of parameter names to tensors). Save one with "
            "torch.save(model.state_dict(), path)."
        )
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as exc:
        raise InvalidArgument(
            f"Got weights={str(path)!r}, but they do not fit torchvision's {name}: "
            f"{str(exc).splitlines()[0]}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else repr(exc)


def _torchvision():  # type: ignore[no-untyped-def]
    if importlib.util.find_spec("torchvision") is None:
        raise InvalidArgument(f"torchvision is not installed; install it with {INSTALL}")
    import torchvision

    return torchvision
