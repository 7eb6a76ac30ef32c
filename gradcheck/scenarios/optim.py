"""torch.optim.SGD and torch.optim.Adam against their documented update formulas.

Each scenario runs the real optimizer for three steps on seeded random parameters (shapes (3,)
and (2, 2)) with the loss ``sum_i <w_i, sin(p_i)>``, whose gradient changes every step, and
proves one claim per step: the parameters equal the float64 reference of
:mod:`gradcheck.optimizers`, written from the documentation and fed with the gradients torch saw
(see :func:`gradcheck.optimizers.check_optimizer_steps`). The hyper-parameters cover each branch
of the documented algorithms: momentum (whose buffer starts as the gradient, so dampening only
acts from step 2), dampening, Nesterov, weight decay, maximize; Adam with and without AMSGrad and
weight decay, and AdamW's decoupled weight decay; float64 and float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

import torch

from gradcheck.optimizers import check_optimizer_steps
from gradcheck.results import Claim
from gradcheck.scenarios.base import SOURCES, Scenario, reproduce_line

STEPS = 3
TOPIC = "Optimizer updates against the documented algorithms"


def verify_optimizer_steps(
    scenario_id: str,
    optimizer_cls: type[torch.optim.Optimizer],
    hyper: Mapping[str, Any],
    dtype: torch.dtype,
    seed: int,
) -> list[Claim]:
    """``STEPS`` steps of ``optimizer_cls(**hyper)`` in ``dtype``, each against the reference."""
    return check_optimizer_steps(
        optimizer_cls,
        hyper,
        steps=STEPS,
        seed=seed,
        dtype=dtype,
        reproduce=reproduce_line(scenario_id, seed),
    )


def _optim(
    name: str,
    optimizer_cls: type[torch.optim.Optimizer],
    hyper: Mapping[str, Any],
    tags: tuple[str, ...],
    dtype: torch.dtype = torch.float64,
) -> Scenario:
    scenario_id = f"optim/{name}"
    return Scenario(
        id=scenario_id,
        topic=TOPIC,
        source=SOURCES["gradcheck"],
        verify=partial(verify_optimizer_steps, scenario_id, optimizer_cls, dict(hyper), dtype),
        oracles=("formula",),
        tags=("optimizer", optimizer_cls.__name__.lower(), *tags),
    )


SGD, ADAM, ADAMW = torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW

SCENARIOS = (
    _optim("sgd", SGD, {"lr": 0.1}, ()),
    _optim("sgd_momentum", SGD, {"lr": 0.1, "momentum": 0.9}, ("momentum",)),
    _optim(
        "sgd_momentum_dampening",
        SGD,
        {"lr": 0.1, "momentum": 0.9, "dampening": 0.5},
        ("momentum", "dampening"),
    ),
    _optim(
        "sgd_nesterov_weight_decay",
        SGD,
        {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
        ("momentum", "nesterov", "weight-decay"),
    ),
    _optim(
        "sgd_momentum_weight_decay_maximize",
        SGD,
        {"lr": 0.05, "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.1, "maximize": True},
        ("momentum", "dampening", "weight-decay", "maximize"),
    ),
    _optim(
        "sgd_momentum_float32",
        SGD,
        {"lr": 0.01, "momentum": 0.9},
        ("momentum", "float32"),
        dtype=torch.float32,
    ),
    _optim("adam", ADAM, {"lr": 0.1}, ()),
    _optim("adam_weight_decay", ADAM, {"lr": 0.1, "weight_decay": 0.01}, ("weight-decay",)),
    _optim("adam_amsgrad", ADAM, {"lr": 0.1, "betas": (0.8, 0.99), "amsgrad": True}, ("amsgrad",)),
    _optim(
        "adam_amsgrad_weight_decay",
        ADAM,
        {"lr": 0.1, "amsgrad": True, "weight_decay": 0.01},
        ("amsgrad", "weight-decay"),
    ),
    _optim(
        "adam_maximize_eps",
        ADAM,
        {"lr": 0.05, "eps": 1e-3, "maximize": True},
        ("maximize",),
    ),
    _optim("adamw", ADAMW, {"lr": 0.1, "weight_decay": 0.1}, ("weight-decay", "decoupled")),
    _optim("adam_float32", ADAM, {"lr": 1e-3}, ("float32",), dtype=torch.float32),
)
