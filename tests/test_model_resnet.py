"""check_module on torchvision's ResNet18 (float64, CPU, (2, 3, 64, 64)): every row passes in
eval and train mode, the caller's model and process state are untouched, and planted bugs fail
exactly the rows they should. CUDA tests are marked ``cuda`` and skip without a GPU.
"""

from __future__ import annotations

import os

import pytest
import torch
from model_fixtures import Snapshot, plant_wrong_conv, scale_grad_input
from test_resnet_scenario import torchvision_missing_reason

from gradcheck import check_device_parity, check_module

ROWS = 63  # 62 parameter tensors and the input


@pytest.fixture
def resnet18() -> torch.nn.Module:
    """A seeded, randomly initialised resnet18 (float32, as torchvision builds it)."""
    reason = torchvision_missing_reason(os.environ)
    if reason is not None:
        pytest.skip(reason)
    import torchvision

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return torchvision.models.resnet18()


def images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_resnet18_eval_mode_passes_every_row(resnet18):
    result = check_module(resnet18, images(), mode="eval")
    assert result.passed, result.message
    assert len(result.rows) == ROWS
    assert result.rows[0].name == "input" and result.rows[-1].name == "fc.bias"
    assert all(row.directions == 2 for row in result.rows)


def test_resnet18_train_mode_passes_and_leaves_everything_as_it_was(resnet18):
    resnet18.train()
    resnet18(images()).sum().backward()  # .grad fields and moved running statistics
    resnet18.layer4.requires_grad_(False)  # frozen: not checked by default
    resnet18.layer1.eval()
    before = Snapshot.take(resnet18)
    with torch.no_grad():
        result = check_module(resnet18, images(), mode="train")
    assert before.differences(resnet18) == []
    assert result.passed, result.message
    assert result.mode == "train"
    assert len(result.rows) == ROWS - 15  # layer4 holds 15 parameter tensors
    assert not any(row.name.startswith("layer4.") for row in result.rows)


def test_a_wrong_conv_weight_gradient_fails_exactly_that_row(resnet18):
    plant_wrong_conv(resnet18, "layer3.0.conv1")
    result = check_module(resnet18, images(), directions=1)
    assert [row.name for row in result.failed_rows] == ["layer3.0.conv1.weight"]
    assert result.likely_culprit == "layer3.0.conv1.weight"
    assert result.row("layer3.0.conv1.weight").relative_error == pytest.approx(1e-4, rel=0.05)
    assert sum(row.passed for row in result.rows) == ROWS - 1


def test_a_wrong_batchnorm_input_gradient_fails_the_rows_upstream(resnet18):
    # A full backward hook on layer2.0's downsample BatchNorm scales its grad_input by 1 + 1e-4.
    # (A hook on bn1/bn2 would make torch refuse the in-place ReLU / residual add that follow.)
    resnet18.layer2[0].downsample[1].register_full_backward_hook(scale_grad_input(1e-4))
    result = check_module(resnet18, images(), directions=1)
    names = [row.name for row in result.rows]
    upstream = [*names[: names.index("layer2.0.conv1.weight")], "layer2.0.downsample.0.weight"]
    assert [row.name for row in result.failed_rows] == upstream
    assert result.likely_culprit == "layer2.0.downsample.0.weight"
    assert "(layer2.0.downsample.1.weight)" in result.message
    assert all(result.row(n).passed for n in names if n not in upstream)


@pytest.mark.cuda
def test_resnet18_on_cuda_passes_and_matches_the_cpu(resnet18):
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available on this machine (torch.cuda.is_available() is False)")
    on_gpu = check_module(resnet18, images(), device="cuda")
    assert on_gpu.passed, on_gpu.message
    for dtype in (torch.float64, torch.float32):
        parity = check_device_parity(resnet18, images(), devices=("cpu", "cuda"), dtype=dtype)
        assert parity.passed, parity.message
        assert {row.device for row in parity.rows} == {"cuda"}
