"""Facts about torch that the notebooks' claims rely on and that a torch release may change: the
version range each is known for, and a claim that says so instead of failing outside it.

The gradients themselves are judged by oracles and hold on every torch. What can differ between
releases is torch's own surface: the name of an autograd node (``ReluBackward0``), the wording of
an error, a default (``zero_grad(set_to_none=True)``). Such a fact is known from the release it
appeared in (``since``: the release notes, or the oldest torch gradcheck supports when it is
older) to the newest release the tox matrix ran (:data:`VERIFIED`). Inside that range a
mismatch fails; outside it the claim is *skipped* with the range and what was observed, so a
new torch release shows what changed without turning the suite red.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.torch_version import TorchVersion

from gradcheck.results import Claim

OLDEST_SUPPORTED = "2.2"
"""The oldest torch gradcheck supports (``torch>=2.2`` in pyproject.toml)."""

VERIFIED = ("2.11.0", "2.15.0")
"""The oldest and newest torch releases the tox matrix (``tox -m versions``) ran the suite on."""


@dataclass(frozen=True)
class Behaviour:
    """A fact of torch's surface and the first release known to have it."""

    description: str
    since: str = OLDEST_SUPPORTED

    def expected_range(self) -> str:
        """``torch >= 2.0, verified on 2.11.0 to 2.15.0``."""
        return f"torch >= {self.since}, verified on {VERIFIED[0]} to {VERIFIED[1]}"

    def known_on(self, version: str) -> bool:
        """Whether ``version`` lies between ``since`` and the newest verified release."""
        release = TorchVersion(version.split("+")[0])
        return release >= self.since and release <= VERIFIED[1]


GRAD_FN_NAMES = Behaviour("autograd node names such as ReluBackward0, AddBackward0")
ERROR_WORDING = Behaviour("the wording of autograd's backward() errors")
ZERO_GRAD_SETS_NONE = Behaviour("optimizer.zero_grad() defaults to set_to_none=True", since="2.0")
INFERENCE_SAVE_ERROR = Behaviour(
    "inference tensors cannot be saved for backward (torch.inference_mode)", since="1.9"
)


def versioned_claim(
    statement: str,
    holds: bool,
    detail: str,
    behaviour: Behaviour,
    *,
    version: str | None = None,
) -> Claim:
    """A claim about a fact of torch that may differ between releases.

    It passes when the fact ``holds``; fails when it does not on a torch inside the fact's known
    range; and is skipped, naming the range and what was observed, on a torch outside it.
    """
    version = version or torch.__version__
    known = behaviour.expected_range()
    if holds or behaviour.known_on(version):
        return Claim(statement, bool(holds), f"{detail} (expected on {known})")
    return Claim(
        statement,
        False,
        detail,
        skipped=(
            f"not judged on torch {version}: {behaviour.description} is known for {known}, and "
            f"here it differs ({detail}); check the release notes and update "
            "gradcheck/torch_versions.py"
        ),
    )


def error_claim(statement: str, outcome: tuple[bool, str], error: type[BaseException]) -> Claim:
    """A claim that torch raised ``error`` with a known fragment of its message.

    ``outcome`` is :func:`gradcheck.semantics.raises`'s ``(matched, what happened)``. When torch
    raised ``error`` and only the wording differs, that is release-dependent
    (:data:`ERROR_WORDING`); raising nothing, or another error, always fails.
    """
    matched, what = outcome
    if what.startswith(f"raised {error.__name__}:"):
        return versioned_claim(statement, matched, what, ERROR_WORDING)
    return Claim(statement, matched, what)
