"""Forward+backward throughput of a small MLP and of torchvision's ResNet18 (random init, train
mode, cross-entropy against seeded labels), in float32 and float64, on CPU and on CUDA where
present: samples per second, and backward time over forward time.

A well-implemented backward costs about twice its forward (two matrix products per layer, one
for the input's gradient and one for the weight's, against one in the forward). The
``backward_over_forward`` figure in each benchmark's ``extra_info`` says where torch lands.
Each round is one step: gradients set to None (untimed), forward, loss, backward. Nothing is
kept between steps; one warm-up round per case (CUDA context, allocator, kernel selection).
"""

from __future__ import annotations

import importlib.util
import itertools

import pytest
import torch
import torch.nn.functional as F
from timing import DEVICES, DTYPES, StepTimer, dtype_name, require

SEED = 0
CLASSES = 1000
RESNET_CASES = (  # (batch, side): the notebooks' 64x64 at three batch sizes, and ImageNet's 224
    (1, 64),
    (8, 64),
    (32, 64),
    (8, 224),
)
MLP_BATCH, MLP_WIDTHS = 64, (784, 512, 512, 10)


def _step(model, inputs, labels, device):  # type: ignore[no-untyped-def]
    def forward():  # type: ignore[no-untyped-def]
        loss = F.cross_entropy(model(inputs), labels)
        return loss.backward

    return StepTimer(forward, device, prepare=lambda: model.zero_grad(set_to_none=True))


def _data(batch, shape, classes, dtype, device):  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(SEED + 1)
    inputs = torch.rand(batch, *shape, generator=generator, dtype=dtype)
    labels = torch.randint(classes, (batch,), generator=generator)
    return inputs.to(device), labels.to(device)


def _run(benchmark, model, inputs, labels, device, rounds, **facts):  # type: ignore[no-untyped-def]
    model.train()
    timer = _step(model, inputs, labels, device)
    timer.warm_up(1)
    benchmark.pedantic(timer.step, rounds=rounds, iterations=1)
    timer.record(benchmark, samples=len(inputs), seed=SEED, **facts)
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
def test_mlp_throughput(benchmark, dtype, device):  # type: ignore[no-untyped-def]
    require(device)
    benchmark.group = f"MLP {'-'.join(map(str, MLP_WIDTHS))} fwd+bwd, batch {MLP_BATCH}"
    layers: list[torch.nn.Module] = []
    with torch.random.fork_rng(devices=[]):  # seed the initialisation, leave the caller's RNG
        torch.manual_seed(SEED)
        for fan_in, fan_out in itertools.pairwise(MLP_WIDTHS):
            layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers[:-1]).to(device=device, dtype=dtype)
    inputs, labels = _data(MLP_BATCH, (MLP_WIDTHS[0],), MLP_WIDTHS[-1], dtype, device)
    _run(benchmark, model, inputs, labels, device, 30, batch=MLP_BATCH, dtype=dtype_name(dtype))


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="needs torchvision")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_name)
@pytest.mark.parametrize("batch,side", RESNET_CASES, ids=[f"b{b}-{s}px" for b, s in RESNET_CASES])
def test_resnet18_throughput(benchmark, batch, side, dtype, device):  # type: ignore[no-untyped-def]
    import torchvision

    require(device)
    benchmark.group = f"ResNet18 fwd+bwd, {dtype_name(dtype)}, {device}"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = torchvision.models.resnet18()
    model = model.to(device=device, dtype=dtype)
    inputs, labels = _data(batch, (3, side, side), CLASSES, dtype, device)
    work = batch * side * side
    rounds = 3 if work * (2 if dtype == torch.float64 else 1) > 400_000 else 5
    _run(
        benchmark,
        model,
        inputs,
        labels,
        device,
        rounds,
        batch=batch,
        image=f"3x{side}x{side}",
        dtype=dtype_name(dtype),
    )
