"""Facts about torch that the notebooks' claims rely on and that a torch release may change: the
version range each is known for, and a claim that says so instead of failing outside it.

The gradients themselves are judged by oracles and hold on every torch. What can differ between
releases is torch's own surface: the name of an autograd node (``ReluBackward0``), the wording of
an error, a default (``zero_grad(set_to_none=True)``). Such a fact is known from the release it
appeared in (``since``, from the release notes; :data:`OLDEST_SUPPORTED` where nothing older is
supported anyway) to the newest minor release the tox matrix ran (:data:`VERIFIED`; its patch
releases count as verified). Inside that range a mismatch fails; outside it the claim is
*skipped* with the range and what was observed, so a new torch release shows what changed
without turning the suite red. Only the change a release may bring is skipped: a missing error,
an error of another type, or ``.grad`` neither None nor zeros after ``zero_grad()`` always fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch

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
        """Whether ``version``'s major.minor lies between ``since``'s and the newest verified
        release's (so ``2.15.1`` and ``2.15.0rc1`` count as verified, ``2.16.0a0`` does not)."""
        return minor_release(self.since) <= minor_release(version) <= minor_release(VERIFIED[1])


def minor_release(version: str) -> tuple[int, int]:
    """``(2, 15)`` for ``"2.15.1+cu130"``, ``"2.15"`` or ``"2.15.0rc1"``."""
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(
            f"cannot read a torch version from {version!r}: expected MAJOR.MINOR[.PATCH], "
            "as in torch.__version__"
        )
    return int(match.group(1)), int(match.group(2))


GRAD_FN_NAMES = Behaviour("autograd node names such as ReluBackward0, AddBackward0")
ERROR_WORDING = Behaviour("the wording of autograd's backward() errors")
ZERO_GRAD_SETS_NONE = Behaviour("optimizer.zero_grad() defaults to set_to_none=True", since="2.0")


def versioned_claim(
    statement: str,
    holds: bool,
    detail: str,
    behaviour: Behaviour,
    *,
    version: str | None = None,
    release_change: bool = True,
) -> Claim:
    """A claim about a fact of torch that may differ between releases.

    It passes when the fact ``holds``; fails when it does not on a torch inside the fact's known
    range; and is skipped, naming the range and what was observed, on a torch outside it. Pass
    ``release_change=False`` when what was observed is not the change a release could bring
    (a default that is neither the old nor the new one): then a mismatch fails on every torch.
    """
    version = version or torch.__version__
    known = behaviour.expected_range()
    if holds or not release_change or behaviour.known_on(version):
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


class Raised(NamedTuple):
    """What :func:`raises` saw: whether the expected error came with the expected fragment,
    what happened (for a claim's detail), and whether the error was of the expected type."""

    matched: bool
    what: str
    expected_type: bool


def raises(action: Callable[[], object], error: type[BaseException], fragment: str) -> Raised:
    """Whether ``action()`` raises ``error`` with ``fragment`` in its message, and what happened."""
    try:
        action()
    except error as caught:
        first = str(caught).strip().splitlines()[0] if str(caught).strip() else ""
        return Raised(fragment in str(caught), f"raised {type(caught).__name__}: {first}", True)
    except Exception as other:
        return Raised(
            False, f"raised {type(other).__name__} instead of {error.__name__}: {other}", False
        )
    return Raised(
        False, f"did not raise (expected {error.__name__} mentioning {fragment!r})", False
    )


def error_claim(statement: str, outcome: Raised, *, version: str | None = None) -> Claim:
    """A claim that torch raised an error of the expected type with a known fragment.

    ``outcome`` is :func:`raises`'s. When torch raised the expected type and only the wording
    differs, that is release-dependent (:data:`ERROR_WORDING`); raising nothing, or an error of
    another type, fails on every torch.
    """
    return versioned_claim(
        statement,
        outcome.matched,
        outcome.what,
        ERROR_WORDING,
        version=version,
        release_change=outcome.expected_type,
    )
