"""torch's OpInfo database, loaded on demand, and the selection ``gradcheck ops`` checks.

``torch.testing._internal.common_methods_invocations.op_db`` is torch's own list of operators
with the sample inputs its test suite (``test/test_ops_gradients.py``, ``test_fn_grad``) feeds
to ``torch.autograd.gradcheck``. It needs the ``expecttest`` package and an installed torch that
ships ``torch.testing._internal``; either missing is an :class:`~gradcheck.errors.InvalidArgument`
that says what to install. Importing torch's test utilities changes the importing process
(``torch.backends.disable_global_flags()``, after which setting a cudnn flag raises, as
``check_module`` does; three warning filters): every import here goes through
:func:`torch_test_imports`, which undoes both.
"""

from __future__ import annotations

import contextlib
import fnmatch
import unittest
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gradcheck.errors import InvalidArgument

INSTALL = "pip install 'gradcheck[ops]'"
TEST_CLASS = "TestBwdGradients"
TEST_NAMES = {1: "test_fn_grad", 2: "test_fn_gradgrad"}
"""The torch test (by derivative order) whose skips and expected failures the selection
honours."""


@dataclass(frozen=True)
class Selected:
    """One OpInfo entry to check: ``key`` is ``name`` or ``name.variant``; ``skip`` is the reason
    torch's test skips it here (an empty string when it runs); ``expected_failure`` is True
    where torch's OpInfo marks ``test_fn_grad`` as an expected failure."""

    key: str
    name: str
    variant: str
    op: Any
    skip: str = ""
    expected_failure: bool = False


_FLAG = "__allow_nonbracketed_mutation_flag"


@contextlib.contextmanager
def torch_test_imports() -> Iterator[None]:
    """Import torch's test utilities inside this block: their global side effects (the
    ``torch.backends`` mutation flag, warning filters) are undone on exit."""
    import torch.backends

    home = torch.backends.flags_frozen.__globals__  # the module dict the flag lives in
    allowed = home.get(_FLAG, True)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        home[_FLAG] = allowed


def op_database() -> Sequence[Any]:
    """torch's ``op_db``; raises InvalidArgument naming the fix when it cannot be imported."""
    try:
        import expecttest  # noqa: F401  (torch's test utilities import it)
    except ImportError:
        raise InvalidArgument(
            "gradcheck ops needs the expecttest package to import torch's OpInfo database; "
            f"install it with {INSTALL}"
        ) from None
    try:
        with torch_test_imports():
            from torch.testing._internal.common_methods_invocations import op_db
    except ImportError as error:
        import torch

        raise InvalidArgument(
            f"this torch ({torch.__version__}) has no OpInfo database "
            f"(torch.testing._internal.common_methods_invocations: {error}); install a torch "
            "release that ships torch.testing._internal (every wheel from PyPI does)"
        ) from None
    return list(op_db)


def records_at(location: str) -> Sequence[Any]:
    """The OpInfo records at ``"module:attribute"`` (a list of OpInfo, or a callable returning
    one), for checking one's own records in place of torch's op_db."""
    import importlib

    module_name, _, attribute = location.partition(":")
    try:
        with torch_test_imports():
            found = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise InvalidArgument(
            f"Got database={location!r}, which cannot be loaded ({type(error).__name__}: "
            f"{error}); pass 'module:attribute' naming an importable list of OpInfo records, "
            "such as 'my_tests.ops:RECORDS'."
        ) from None
    return list(found() if callable(found) else found)


def op_key(op: Any) -> str:
    """``name`` or ``name.variant_test_name``: the key a row and ``--op`` use."""
    variant = getattr(op, "variant_test_name", "") or ""
    return f"{op.name}.{variant}" if variant else str(op.name)


def matches(op: Any, patterns: Sequence[str] | None) -> bool:
    """Whether ``op`` is selected: no pattern, or a glob matching its name or its key."""
    if not patterns:
        return True
    names = {str(op.name), op_key(op)}
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def _decorator_kind(decorator: Any) -> tuple[str, str]:
    """``("skip", reason)``, ``("xfail", "")`` or ``("", "")`` for one unittest decorator."""
    if decorator is unittest.expectedFailure:
        return "xfail", ""
    if getattr(decorator, "__qualname__", "").startswith("skip."):
        cells = getattr(decorator, "__closure__", None) or ()
        reasons = [c.cell_contents for c in cells if isinstance(c.cell_contents, str)]
        return "skip", reasons[0] if reasons else "skipped"
    return "", ""


def torch_test_marks(op: Any, device_type: str, dtype: Any, order: int = 1) -> tuple[str, bool]:
    """(skip reason, expected failure) of torch's ``TestBwdGradients.test_fn_grad`` (order 1)
    or ``test_fn_gradgrad`` (order 2) for ``op`` on ``device_type`` and ``dtype``, read from
    the OpInfo's DecorateInfo entries."""
    skip, expected_failure = "", False
    test_name = TEST_NAMES[order]
    if dtype not in op.supported_backward_dtypes(device_type):
        return f"{op_key(op)} has no backward for {dtype} on {device_type}", False
    if order == 2 and not getattr(op, "supports_gradgrad", True):
        return f"{op_key(op)} has no second derivative (OpInfo supports_gradgrad=False)", False
    for info in getattr(op, "decorators", ()) or ():
        is_active = getattr(info, "is_active", None)
        if is_active is None or not is_active(TEST_CLASS, test_name, device_type, dtype, {}):
            continue
        for decorator in info.decorators:
            kind, reason = _decorator_kind(decorator)
            if kind == "skip" and not skip:
                skip = f"torch's OpInfo skips {test_name} here ({reason})"
            expected_failure = expected_failure or kind == "xfail"
    return skip, expected_failure


def select(
    database: Sequence[Any],
    patterns: Sequence[str] | None,
    device_type: str,
    dtype: Any,
    order: int = 1,
) -> list[Selected]:
    """The differentiable entries of ``database`` matching ``patterns``, in database order,
    each with torch's skip reason or expected-failure mark for ``device_type``, ``dtype`` and
    the derivative ``order``."""
    chosen = []
    for op in database:
        if not getattr(op, "supports_autograd", False) or not matches(op, patterns):
            continue
        skip, expected_failure = torch_test_marks(op, device_type, dtype, order)
        chosen.append(
            Selected(
                op_key(op),
                str(op.name),
                getattr(op, "variant_test_name", "") or "",
                op,
                skip,
                expected_failure,
            )
        )
    return chosen
