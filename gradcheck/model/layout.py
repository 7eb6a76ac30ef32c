"""The memory layout of the oracle's float64 copies of a module's parameters and inputs.

On the CPU torch's float64 convolution (there is no oneDNN kernel for float64) runs sample by
sample, an im2col and one matrix product each; a batch of probes pushes every sample through
every layer after the perturbed tensor, and at the small spatial sizes of a network's last
stages (ResNet18's layer4 at 2x2 for 64x64 images) those products stream the whole weight for a
handful of columns. In the channels-last layout the same kernels run about twice as fast there.
So on the CPU the oracle's copies of 4-D floating-point parameters and inputs are laid out
channels-last: the same module, the same torch ops and the same values; only the order in which
a convolution sums its products changes, within rounding. Autograd's copies keep the caller's
layout, and so do the tensors the probes are built from (the points are bit for bit the same).

The layout is kept only when the module gives, at the unperturbed point, the value it gives in
the caller's layout to :data:`~gradcheck.tolerances.BATCH_AGREEMENT_RTOL` (a module that
``.view()``s its activations raises in it, a kernel that assumes contiguous memory disagrees:
either keeps the caller's layout).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from gradcheck.tolerances import BATCH_AGREEMENT_RTOL


def _is_image_like(tensor: torch.Tensor) -> bool:
    return tensor.dim() == 4 and tensor.is_floating_point()


def wants_channels_last(device: torch.device, tensors: Iterable[torch.Tensor]) -> bool:
    """Whether the oracle's copies are worth laying out channels-last: on the CPU, when some
    parameter or input is a 4-D floating-point tensor (a convolution's weight or image)."""
    return device.type == "cpu" and any(_is_image_like(t) for t in tensors)


def channels_last(tensor: torch.Tensor) -> torch.Tensor:
    """A 4-D floating-point tensor in the channels-last layout (same values); any other tensor
    as it is."""
    if _is_image_like(tensor):
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


def layouts_agree(fast: float, plain: float) -> bool:
    """The loss in the oracle's layout reproduces the caller's layout's loss at the center."""
    return abs(fast - plain) <= BATCH_AGREEMENT_RTOL * abs(plain)
