"""ResNet18 forward, backward and SGD with momentum, as seeds/003 and seeds/004 run it.

Both notebooks build ``torchvision.models.resnet18`` (pretrained), draw a random image
``torch.rand(1, 3, 64, 64)`` and random labels ``torch.rand(1, 1000)`` (float32), predict, take a
loss (seeds/004: ``mse(yhat, labels) = ((yhat - labels)**2).mean()``; seeds/003:
``(prediction - labels).sum``, written without the call, so its ``loss.backward()`` could never
have run: the suite uses ``.sum()`` here, and ``errors/missing_call_parentheses`` proves the
error), call ``backward()`` and take one ``torch.optim.SGD(lr=1e-2, momentum=0.9)`` step.

Pretrained weights cannot be downloaded here, so the model is randomly initialised, seeded: the
RNG is forked, seeded with the scenario's seed and the model, image and labels are drawn in the
notebooks' order; the caller's RNG state is left as it was. When the environment variable
``GRADCHECK_RESNET18_WEIGHTS`` names a local ``state_dict`` file (for example the torchvision
download ``resnet18-f37072fd.pth``), those weights are loaded instead; the claims record which
weights were used, with the file's sha256. The model stays in train mode, as in the notebooks
(BatchNorm uses batch statistics; at 64x64 the last BatchNorm still sees 2x2 values per
channel, so batch size 1 works).

The SGD claims compare torch's float32 update of all 62 parameter tensors with the float64
reference of :mod:`gradcheck.optimizers` fed with the gradients torch saw, allowing float32
rounding only (no table tolerance): step 1 is ``p - lr*grad`` and step 2, after ``zero_grad``
and a new forward and backward, follows ``buf = 0.9*buf + grad; p = p - lr*buf``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from gradcheck.errors import InvalidArgument
from gradcheck.optimizers import judge_steps, record_steps
from gradcheck.results import Claim
from gradcheck.scenarios.base import Scenario, fact, notebook_scenario, reproduce_line

WEIGHTS_ENV = "GRADCHECK_RESNET18_WEIGHTS"
"""Environment variable naming a local resnet18 ``state_dict`` file to load instead of the
seeded random initialisation."""

IMAGE_SHAPE = (1, 3, 64, 64)
CLASSES = 1000
PARAMETER_TENSORS = 62
"""torchvision's resnet18 has 62 parameter tensors (11,689,512 values)."""

LR = 1e-2
MOMENTUM = 0.9
TOPIC = "ResNet18: prediction, loss, backward and an SGD step with momentum"


@dataclass(frozen=True)
class NotebookRun:
    """The notebooks' objects: the model (train mode), image and labels, and where the
    model's weights came from (``weights``, in words)."""

    model: torch.nn.Module
    data: torch.Tensor
    labels: torch.Tensor
    weights: str


def weights_file() -> Path | None:
    """The file ``GRADCHECK_RESNET18_WEIGHTS`` names, or None when it is unset or empty.

    Raises :class:`~gradcheck.errors.InvalidArgument` when it names no readable file.
    """
    value = os.environ.get(WEIGHTS_ENV, "").strip()
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise InvalidArgument(
            f"Got {WEIGHTS_ENV}={value!r}, but no such file exists. Point it at a resnet18 "
            "state_dict saved with torch.save(model.state_dict(), path) (for example "
            f"torchvision's resnet18-f37072fd.pth), or unset {WEIGHTS_ENV} to use a seeded "
            "random initialisation."
        )
    return path


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_weights(model: torch.nn.Module, path: Path) -> str:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise InvalidArgument(
            f"Got {WEIGHTS_ENV}={str(path)!r}, but it could not be read as a state_dict "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "Save one with torch.save(model.state_dict(), path)."
        ) from error
    if not isinstance(state, dict):
        raise InvalidArgument(
            f"Got {WEIGHTS_ENV}={str(path)!r}, but the file holds a {type(state).__name__}, "
            "not a state_dict. Save one with torch.save(model.state_dict(), path)."
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).splitlines()
        raise InvalidArgument(
            f"Got {WEIGHTS_ENV}={str(path)!r}, but it is not a resnet18 state_dict: "
            f"{' '.join(line.strip() for line in first[:3])}"
        ) from error
    return f"loaded from {path} (sha256 {file_sha256(path)})"


def notebook_run(seed: int) -> NotebookRun:
    """Build the notebooks' resnet18, image and labels under a forked RNG seeded with ``seed``.

    The weights come from ``GRADCHECK_RESNET18_WEIGHTS`` when set, else from torchvision's own
    random initialisation under that seed.
    """
    from torchvision.models import resnet18  # lazy: torchvision is an optional dependency

    path = weights_file()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = resnet18(weights=None)
        data = torch.rand(IMAGE_SHAPE)
        labels = torch.rand(1, CLASSES)
    if path is None:
        weights = f"random initialisation (torchvision's init under torch.manual_seed({seed}))"
    else:
        weights = _load_weights(model, path)
    model.train()
    return NotebookRun(model, data, labels, weights)


def mse(y: torch.Tensor, yhat: torch.Tensor) -> torch.Tensor:
    """seeds/004's loss: ``((y - yhat)**2).mean()``."""
    return ((y - yhat) ** 2).mean()


def sum_loss(prediction: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """seeds/003's loss, with the call its cell forgot: ``(prediction - labels).sum()``."""
    return (prediction - labels).sum()


# -- claims ------------------------------------------------------------------------------------


def model_claim(run: NotebookRun) -> Claim:
    """The model is torchvision's resnet18 (62 parameter tensors); the detail says which
    weights it carries."""
    params = list(run.model.parameters())
    values = sum(p.numel() for p in params)
    return fact(
        f"the model is torchvision resnet18 with {PARAMETER_TENSORS} parameter tensors",
        len(params) == PARAMETER_TENSORS,
        f"{len(params)} parameter tensors, {values:,} values (float32); weights: {run.weights}",
    )


def shape_claim(prediction: torch.Tensor) -> Claim:
    """``model(data).shape == (1, 1000)``: one score per ImageNet class."""
    return fact(
        f"model(data) has shape (1, {CLASSES}): one score per class",
        tuple(prediction.shape) == (1, CLASSES),
        f"prediction.shape = {tuple(prediction.shape)}, dtype {prediction.dtype}",
    )


def gradients_claim(model: torch.nn.Module, loss_text: str) -> Claim:
    """After ``loss.backward()`` every parameter has a ``.grad`` of its shape, all finite."""
    missing, non_finite, values, largest, largest_at = [], [], 0, 0.0, ""
    named = list(model.named_parameters())
    for name, param in named:
        if param.grad is None or param.grad.shape != param.shape:
            missing.append(name)
            continue
        if not bool(torch.isfinite(param.grad).all()):
            non_finite.append(name)
            continue
        values += param.grad.numel()
        peak = float(param.grad.abs().max())
        if peak >= largest:
            largest, largest_at = peak, name
    good = len(named) - len(missing) - len(non_finite)
    detail = (
        f"{good} of {len(named)} parameter tensors have a finite .grad ({values:,} values); "
        f"largest |grad| {largest:.3e} in {largest_at}"
    )
    if missing:
        detail += f"; no .grad: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
    if non_finite:
        detail += f"; non-finite: {', '.join(non_finite[:5])}"
    return fact(
        f"{loss_text}.backward() gives every one of the {len(named)} parameters a finite .grad",
        good == len(named) == PARAMETER_TENSORS,
        detail,
    )


def _forward_backward(
    seed: int, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], loss_text: str
) -> list[Claim]:
    run = notebook_run(seed)
    prediction = run.model(run.data)
    loss(prediction, run.labels).backward()
    return [model_claim(run), shape_claim(prediction), gradients_claim(run.model, loss_text)]


def verify_forward_backward_mse(seed: int) -> list[Claim]:
    """seeds/004: ``yhat = model(data)`` is (1, 1000); ``mse(yhat, labels).backward()`` fills
    every parameter's ``.grad`` with finite values."""
    return _forward_backward(seed, mse, "mse(yhat, labels)")


def verify_forward_backward_sum(seed: int) -> list[Claim]:
    """seeds/003: ``prediction = model(data)`` is (1, 1000); ``(prediction - labels).sum()``
    backward fills every parameter's ``.grad`` (the notebook's call-less ``.sum`` is the
    scenario ``errors/missing_call_parentheses``)."""
    return _forward_backward(seed, sum_loss, "(prediction - labels).sum()")


def verify_sgd_momentum_steps(seed: int) -> list[Claim]:
    """seeds/004 (and 003): ``SGD(model.parameters(), lr=1e-2, momentum=0.9).step()`` after
    ``mse(yhat, labels).backward()`` moves every parameter by exactly ``-lr*grad``; a second
    step (after ``zero_grad`` and a new forward and backward) follows the momentum formula.
    Judged against the float64 reference with float32 rounding as the only allowance."""
    scenario_id = "resnet18/sgd_momentum_steps"
    run = notebook_run(seed)
    hyper = {"lr": LR, "momentum": MOMENTUM}
    recording = record_steps(
        torch.optim.SGD,
        hyper,
        list(run.model.named_parameters()),
        lambda: mse(run.model(run.data), run.labels),
        steps=2,
    )
    first, second = judge_steps(
        torch.optim.SGD,
        hyper,
        recording,
        atol=0.0,
        rtol=0.0,
        seed=seed,
        reproduce=reproduce_line(scenario_id, seed),
    )
    return [
        model_claim(run),
        dataclasses.replace(
            first,
            statement=(
                f"one SGD(lr={LR}, momentum={MOMENTUM}) step moves every parameter by exactly "
                "-lr*grad (float32 rounding only)"
            ),
        ),
        dataclasses.replace(
            second,
            statement=(
                "after zero_grad and a new forward/backward, step 2 follows "
                f"buf = {MOMENTUM}*buf + grad; p -= lr*buf (float32 rounding only)"
            ),
        ),
    ]


def _scenario(
    name: str,
    verify: Callable[[int], list[Claim]],
    source: str,
    oracles: tuple[str, ...],
    tags: tuple[str, ...],
) -> Scenario:
    return notebook_scenario(
        f"resnet18/{name}",
        verify,
        oracles,
        "model",
        *tags,
        topic=TOPIC,
        source=source,
        requires=("torchvision",),
    )


SCENARIOS = (
    _scenario(
        "forward_backward_mse",
        verify_forward_backward_mse,
        "linear",
        ("observed",),
        ("backward", "mse"),
    ),
    _scenario(
        "forward_backward_sum",
        verify_forward_backward_sum,
        "torch_autograd",
        ("observed",),
        ("backward", "sum-loss"),
    ),
    _scenario(
        "sgd_momentum_steps",
        verify_sgd_momentum_steps,
        "linear",
        ("formula", "observed"),
        ("optimizer", "sgd", "momentum", "float32"),
    ),
)
