"""The oracle's batched float64 convolutions with a large weight run as one matrix product
(``gradcheck.model.wide_conv``): the values of torch's convolution within rounding, only where
the bounds say it pays, and never able to change a verdict (a wrong product is caught by the
batch's agreement with the plain evaluation)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradcheck.model.wide_conv as wide_conv
from gradcheck import check_module
from gradcheck.model.wide_conv import (
    WIDE_WEIGHT_ELEMENTS,
    WideConvolutions,
    convolution_as_one_product,
    has_wide_weight,
)
from gradcheck.status import FAILED, PASSED


def _tensors(samples: int, channels: int, outputs: int, size: int, kernel: int = 3):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(samples, channels, size, size, generator=generator, dtype=torch.float64)
    shape = (outputs, channels, kernel, kernel)
    weight = torch.randn(shape, generator=generator, dtype=torch.float64)
    bias = torch.randn(outputs, generator=generator, dtype=torch.float64)
    return x, weight, bias


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "dilation", "with_bias"),
    [
        (3, 1, 1, 1, True),
        (3, 2, 1, 1, False),
        (1, 1, 0, 1, True),
        (3, 1, 2, 2, True),
        (3, 2, 0, 1, True),
    ],
)
def test_one_product_gives_torchs_convolution_within_rounding(
    kernel: int, stride: int, padding: int, dilation: int, with_bias: bool
) -> None:
    x, weight, bias = _tensors(5, 6, 7, 6, kernel)
    bias_or_none = bias if with_bias else None
    expected = F.conv2d(x, weight, bias_or_none, stride, padding, dilation)
    got = convolution_as_one_product(
        x, weight, bias_or_none, [stride] * 2, [padding] * 2, [dilation] * 2
    )
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-12)
    channels_last = weight.contiguous(memory_format=torch.channels_last)
    got = convolution_as_one_product(
        x, channels_last, bias_or_none, [stride] * 2, [padding] * 2, [dilation] * 2
    )
    torch.testing.assert_close(got, expected, rtol=1e-13, atol=1e-12)


def test_only_large_weights_on_many_samples_with_few_pixels_take_one_product() -> None:
    x, weight, _ = _tensors(18, 256, 512, 2)  # 1.18M-element weight, 4 output pixels
    assert weight.numel() >= WIDE_WEIGHT_ELEMENTS
    with WideConvolutions() as mode:
        wide = F.conv2d(x, weight, padding=1)
    assert mode.replaced == 1
    torch.testing.assert_close(wide, F.conv2d(x, weight, padding=1), rtol=1e-13, atol=1e-11)
    small_x, small_weight, _ = _tensors(18, 8, 8, 2)
    few_samples = x[:4]
    big_image = torch.randn(18, 256, 8, 8, dtype=torch.float64)
    with WideConvolutions() as mode:
        plain = [
            F.conv2d(small_x, small_weight, padding=1),  # small weight
            F.conv2d(few_samples, weight, padding=1),  # 4 samples
            F.conv2d(big_image, weight, padding=1),  # 64 output pixels
            F.conv2d(x.float(), weight.float(), padding=1),  # float32
        ]
    assert mode.replaced == 0
    assert torch.equal(plain[0], F.conv2d(small_x, small_weight, padding=1))
    assert torch.equal(plain[1], F.conv2d(few_samples, weight, padding=1))
    assert not has_wide_weight(torch.device("cpu"), [small_weight])
    assert has_wide_weight(torch.device("cpu"), [small_weight, weight])
    assert not has_wide_weight(torch.device("cpu"), [weight.float()])


def test_under_vmap_it_sees_the_lanes_folded_into_the_batch() -> None:
    x, weight, _ = _tensors(2, 256, 512, 2)
    lanes = torch.stack([x * (1 + k * 1e-3) for k in range(9)])
    with WideConvolutions() as mode:
        batched = torch.func.vmap(lambda point: F.conv2d(point, weight, padding=1))(lanes)
    assert mode.replaced == 1  # one call on 18 samples, not nine on two
    looped = torch.stack([F.conv2d(point, weight, padding=1) for point in lanes])
    torch.testing.assert_close(batched, looped, rtol=1e-13, atol=1e-11)


class _WideNet(nn.Module):
    """A 1x1 convolution, then a 256 -> 512 3x3 one (1.18M weights) on 2x2 images: the first
    layer's probes reach the wide one with 9 lanes x 2 images folded into its batch."""

    def __init__(self, wrong: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.first = nn.Conv2d(256, 256, 1)
        self.wide = nn.Conv2d(256, 512, 3, padding=1)
        self.wrong = wrong

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.first(x)
        if self.wrong:  # the gradient through this layer 1e-4 too large, forward unchanged
            hidden = hidden + 1e-4 * (hidden - hidden.detach())
        return torch.tanh(self.wide(torch.relu(hidden)))


def _images() -> torch.Tensor:
    return torch.rand(2, 256, 2, 2, generator=torch.Generator().manual_seed(1))


def _status(result, name: str) -> str:  # type: ignore[no-untyped-def]
    return next(row.status for row in result.rows if row.name == name)


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counts: list[int] = []
    original = wide_conv.convolution_as_one_product

    def counted(*args):  # type: ignore[no-untyped-def]
        counts.append(1)
        return original(*args)

    monkeypatch.setattr(wide_conv, "convolution_as_one_product", counted)
    return counts


def test_check_module_takes_one_product_and_keeps_its_verdicts(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    counts = _counting(monkeypatch)
    result = check_module(_WideNet(), _images(), dtype=torch.float64)
    assert counts, "the wide convolution never ran as one product"
    assert result.passed, result.message
    assert {row.status for row in result.rows} == {PASSED}
    planted = check_module(_WideNet(wrong=True), _images(), dtype=torch.float64)
    assert _status(planted, "first.weight") == FAILED, planted.message


def test_a_wrong_product_is_refused_and_torchs_convolution_runs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A product off by 1e-9 disagrees with torch's convolution at its first use: torch's runs
    from then on, the correct module passes and the planted bug still fails."""
    original = wide_conv.convolution_as_one_product
    modes: list[WideConvolutions] = []
    original_init = WideConvolutions.__init__

    def off(*args):  # type: ignore[no-untyped-def]
        return original(*args) * (1 + 1e-9)

    def recorded_init(self) -> None:  # type: ignore[no-untyped-def]
        original_init(self)
        modes.append(self)

    monkeypatch.setattr(wide_conv, "convolution_as_one_product", off)
    monkeypatch.setattr(WideConvolutions, "__init__", recorded_init)
    result = check_module(_WideNet(), _images(), dtype=torch.float64)
    assert result.passed, result.message
    assert [(mode.agrees, mode.replaced) for mode in modes] == [(False, 0)]
    planted = check_module(_WideNet(wrong=True), _images(), dtype=torch.float64)
    assert _status(planted, "first.weight") == FAILED, planted.message


def test_the_first_product_is_compared_with_torchs() -> None:
    x, weight, _ = _tensors(18, 256, 512, 2)
    mode = WideConvolutions()
    for _ in range(2):
        with mode:
            F.conv2d(x, weight, padding=1)
    assert (mode.agrees, mode.replaced) == (True, 2)
