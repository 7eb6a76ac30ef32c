"""The oracle's batched float64 convolutions with a large weight, as one matrix product.

On the CPU torch's float64 convolution (there is no oneDNN kernel for float64) runs sample by
sample: an im2col and one matrix product per sample. A batch of probes folds its lanes into the
convolution's batch (ResNet18's 9 lanes of 2 images: 18 samples), and at a network's last stages
a sample has only a few output pixels (layer4 at 2x2 for 64x64 images), so each sample's product
streams the whole weight (512 x 4608 doubles, 19 MB) for four columns: the weight is read 18
times per call. :func:`convolution_as_one_product` forms the same im2col columns for every
sample at once (``F.unfold``) and multiplies them by the weight in one product, reading it once:
the same sums of the same products, in another blocking, so the values agree within rounding
(about 1e-15 relative). Measured on 2 cores (float64, 3x3, padding 1, 18 samples): 512 channels
at 2x2 in 0.45x the time, at 3x3 0.55x, at 4x4 0.72x; at 7x7 (1.45x), with 256 channels at 4x4
(1.0x) or with 4 samples (1.36x) the per-sample kernel is as fast or faster, hence
:func:`takes_one_product`'s bounds.

:class:`WideConvolutions` applies it under ``torch.func.vmap`` as a dispatch mode, so it sees
the convolution with the lanes folded into its batch (what the module's own code cannot see).
It is entered only for the oracle's batched evaluations of a module that has such a weight
(:func:`has_wide_weight`). Its first product in a check is compared with torch's convolution of
the same tensors (normwise, to :data:`~gradcheck.tolerances.WIDE_PRODUCT_RTOL`); if they
disagree, torch's convolution runs for the rest of the check. Every batch still carries the
unperturbed point, which must agree with the plain evaluation there, and each batch's quotients
are taken against its own center.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from gradcheck.tolerances import WIDE_PRODUCT_RTOL

WIDE_WEIGHT_ELEMENTS = 2**20
"""A weight of at least this many elements (8 MiB in float64: more than a core's cache) is
streamed from memory once per sample by the per-sample kernel."""

MAX_OUTPUT_PIXELS = 16
"""At most this many output pixels per sample: few enough columns that a per-sample product is
bound by reading the weight, not by arithmetic."""

MIN_SAMPLES = 16
"""At least this many samples, so that reading the weight once saves more than forming every
sample's columns at once costs."""

_CONVOLUTION = torch.ops.aten.convolution.default


def has_wide_weight(device: torch.device, tensors: Iterable[torch.Tensor]) -> bool:
    """Whether any of a module's oracle tensors is a 4-D float64 weight on the CPU of at least
    :data:`WIDE_WEIGHT_ELEMENTS` elements (so :class:`WideConvolutions` may pay)."""
    return device.type == "cpu" and any(
        t.dim() == 4 and t.dtype == torch.float64 and t.numel() >= WIDE_WEIGHT_ELEMENTS
        for t in tensors
    )


def takes_one_product(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    transposed: bool,
    groups: int,
) -> bool:
    """Whether a convolution runs faster as one product: a plain (not transposed, one group)
    2-D float64 convolution on the CPU with a weight of at least :data:`WIDE_WEIGHT_ELEMENTS`,
    at least :data:`MIN_SAMPLES` samples and at most :data:`MAX_OUTPUT_PIXELS` output pixels
    per sample."""
    if not (
        not transposed
        and groups == 1
        and x.dim() == 4
        and weight.dim() == 4
        and x.dtype == torch.float64
        and weight.dtype == torch.float64
        and x.device.type == "cpu"
        and weight.numel() >= WIDE_WEIGHT_ELEMENTS
        and x.shape[0] >= MIN_SAMPLES
    ):
        return False
    height = output_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    width = output_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    return 0 < height * width <= MAX_OUTPUT_PIXELS


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """A convolution's output length along one spatial dimension."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def convolution_as_one_product(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
) -> torch.Tensor:
    """``conv2d(x, weight, bias, stride, padding, dilation)`` as every sample's im2col columns
    times the weight in one matrix product, returned channels-last (as torch returns it for a
    channels-last weight)."""
    samples, outputs = x.shape[0], weight.shape[0]
    height = output_size(x.shape[2], weight.shape[2], stride[0], padding[0], dilation[0])
    width = output_size(x.shape[3], weight.shape[3], stride[1], padding[1], dilation[1])
    columns = F.unfold(
        x,
        tuple(weight.shape[2:]),
        dilation=tuple(dilation),
        padding=tuple(padding),
        stride=tuple(stride),
    )  # (samples, in_channels * kernel, pixels), each column ordered (channel, kernel position)
    pixels = height * width
    if weight.is_contiguous() or not weight.is_contiguous(memory_format=torch.channels_last):
        rows = columns.transpose(1, 2).reshape(samples * pixels, -1)
        matrix = weight.reshape(outputs, -1)  # a view when contiguous
    else:  # a channels-last weight is a (kernel position, channel) matrix as it lies in memory
        kernel = weight.shape[2] * weight.shape[3]
        rows = columns.view(samples, -1, kernel, pixels).permute(0, 3, 2, 1)
        rows = rows.reshape(samples * pixels, -1)  # the columns copied once, not the weight
        matrix = weight.permute(0, 2, 3, 1).reshape(outputs, -1)
    product = torch.mm(rows, matrix.t())
    if bias is not None:
        product.add_(bias)
    return product.view(samples, height, width, outputs).permute(0, 3, 1, 2)


class WideConvolutions(TorchDispatchMode):
    """Runs each convolution that :func:`takes_one_product` as
    :func:`convolution_as_one_product`, every other op as it is. One instance serves a whole
    check: ``agrees`` is None until its first product was compared with torch's convolution,
    then whether the two agreed (when not, no convolution is replaced from then on);
    ``replaced`` counts the convolutions it replaced."""

    def __init__(self) -> None:
        super().__init__()
        self.replaced = 0
        self.agrees: bool | None = None

    def __torch_dispatch__(  # type: ignore[override]
        self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None
    ) -> Any:
        if func is _CONVOLUTION and not kwargs and self.agrees is not False:
            x, weight, _, stride, padding, dilation, transposed, _, groups = args
            if takes_one_product(x, weight, stride, padding, dilation, transposed, groups):
                return self._one_product(func, args)
        return func(*args, **(kwargs or {}))

    def _one_product(self, func: Any, args: tuple) -> torch.Tensor:
        x, weight, bias, stride, padding, dilation = args[:6]
        product = convolution_as_one_product(x, weight, bias, stride, padding, dilation)
        if self.agrees is None:
            plain = func(*args)
            self.agrees = bool(
                torch.linalg.vector_norm(product - plain)
                <= WIDE_PRODUCT_RTOL * torch.linalg.vector_norm(plain)
            )
            if not self.agrees:
                return plain
        self.replaced += 1
        return product
