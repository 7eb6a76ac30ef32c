"""What a run ran on: Python, packages, torch's build and devices, Hypothesis, git.

Everything here is read when a report is written, never at import: a package that is not
installed reads ``"not installed"``; a fact that cannot be read says why.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

PACKAGES = ("gradcheck", "torch", "torchvision", "sympy", "hypothesis", "numpy", "pytest")


def package_versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def torch_facts() -> dict[str, Any]:
    """torch's CUDA build, the visible devices and the CPU thread count."""
    import torch

    cuda = torch.cuda.is_available()
    devices = ["cpu"]
    if cuda:
        devices += [
            f"cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
        ]
    return {
        "torch_cuda_build": torch.version.cuda or "none (CPU build)",
        "cuda_available": cuda,
        "devices": devices,
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def git_commit(folder: Path | None = None) -> str:
    """The commit checked out at ``folder`` (``+dirty`` when files changed), or why unknown."""
    folder = folder or Path.cwd()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return "unknown (not a git checkout)"
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown (git is not installed)"
    dirty = "+dirty" if status.stdout.strip() else ""
    return commit.stdout.strip() + dirty


def hypothesis_facts(seed: object = None) -> dict[str, Any]:
    """The Hypothesis profile in force and its seed policy (None when Hypothesis is absent)."""
    if "hypothesis" not in sys.modules:
        return {}
    from hypothesis import settings

    current = settings.default
    if current is None:
        return {}
    if seed is not None:
        policy = f"--hypothesis-seed={seed}"
    elif current.derandomize:
        policy = "derandomized (fixed per test)"
    else:
        policy = "random per run (printed with each failure)"
    return {
        "hypothesis_profile": settings.get_current_profile_name(),
        "hypothesis_max_examples": current.max_examples,
        "hypothesis_seed": policy,
    }


def describe_environment(*, hypothesis_seed: object = None) -> dict[str, Any]:
    """Every fact a report's environment section shows, as a flat JSON-ready dict."""
    facts: dict[str, Any] = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    facts.update(package_versions())
    if facts["torch"] != "not installed":
        facts.update(torch_facts())
    facts.update(hypothesis_facts(hypothesis_seed))
    facts["git_commit"] = git_commit()
    return facts
