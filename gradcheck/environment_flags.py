"""Facts read from environment variables, each rule written once. Standard library only."""

from __future__ import annotations

import os
from collections.abc import Mapping


def running_in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True under ``CI=true`` (any case): ``gradcheck run`` then defaults to the ``ci`` run
    profile and the property suite to the ``ci`` Hypothesis profile. ``environ`` defaults to
    ``os.environ``."""
    values = os.environ if environ is None else environ
    return values.get("CI", "").lower() == "true"
