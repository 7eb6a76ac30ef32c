"""The notebooks' gradient computations as benchmark workloads, built from the scenario modules'
own functions (``gradcheck.scenarios.*``), so a benchmark times exactly what a scenario proves.

One :class:`Workload` per notebook scenario that calls ``backward``. The scenarios that never
reach a backward (``tracking/*`` proves no graph is built, ``errors/*`` that a mistake raises)
have nothing to time; ``neuron/zero_grad``'s step is ``neuron/relu_backward``'s (the gradients
set to None after each backward), and ``linear/manual_update_pitfall`` times nothing new (its
point is that the update turns ``w`` into a non-leaf); ``accumulation/ddp_no_sync`` runs in
spawned processes, where a round's time would be process start and gloo, not backward.
ResNet18 is timed in ``test_bench_throughput``: its batch-1 3x64x64 row has the notebooks'
shapes, but its loss is cross-entropy against class labels, not the notebooks' MSE (or sum)
against a random target.

Each round of a benchmark is one notebook step: fresh output from the leaves, ``backward``, and
then (untimed) what the notebook does next: nothing, so gradients accumulate; ``zero_grad``; an
SGD step; or the manual update under ``no_grad``. No graph, output or gradient is kept from one
step to the next. The update workloads move their leaves every step, as the notebooks' loops do,
so after the first step they run at other values than the notebook's (a step's cost does not
depend on them; the accumulation benchmark checks the summed gradient at the fixed values).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from gradcheck.scenarios import basics, chain, linear, neuron

NOTEBOOK_X = torch.tensor(linear.X)
Value = Sequence[float] | float


@dataclass(frozen=True)
class Workload:
    """``function(*leaves)`` at the notebook's values, ``backward(cotangent)`` and ``after``.

    ``values`` are the notebook's leaf values (a number or a sequence per leaf); ``cotangent``
    is the ``gradient=`` argument of a non-scalar backward; ``after`` names the step's end:
    ``"accumulate"``, ``"zero_grad"``, ``"sgd"`` or ``"no_grad_update"`` (``lr`` is its rate).
    """

    scenario_id: str
    function: Callable[..., torch.Tensor]
    values: tuple[Value, ...]
    cotangent: Value | None = None
    after: str = "zero_grad"
    lr: float = 0.0

    def leaves(self, dtype: torch.dtype, device: str = "cpu") -> tuple[torch.Tensor, ...]:
        """Fresh leaf tensors holding the notebook's values, requiring grad."""
        return tuple(
            torch.tensor(value, dtype=dtype, device=device, requires_grad=True)
            for value in self.values
        )

    def inputs(self) -> tuple[torch.Tensor, ...]:
        """The notebook's values in float64, not requiring grad: the verifiers' inputs."""
        return tuple(torch.tensor(value, dtype=torch.float64) for value in self.values)

    def cotangent_for(self, like: torch.Tensor) -> torch.Tensor | None:
        """The ``gradient=`` tensor, in ``like``'s dtype and device (None for a scalar output)."""
        if self.cotangent is None:
            return None
        return torch.tensor(self.cotangent, dtype=like.dtype, device=like.device)

    def step(
        self, leaves: tuple[torch.Tensor, ...]
    ) -> tuple[Callable[[], Callable[[], None]], Callable[[], None]]:
        """A notebook step on ``leaves`` as ``(forward, finish)``: ``forward()`` builds the output
        and returns its ``backward`` to call next (so the two can be timed apart); ``finish()``
        does what the notebook does after the backward (nothing, ``zero_grad``, an SGD step or
        the update under ``no_grad``). The cotangent is built once, outside both."""
        optimizer = torch.optim.SGD(leaves, lr=self.lr) if self.after == "sgd" else None
        cotangent = self.cotangent_for(leaves[0])

        def forward() -> Callable[[], None]:
            output = self.function(*leaves)
            return lambda: output.backward(cotangent)

        def finish() -> None:
            if optimizer is not None:
                optimizer.step()
                optimizer.zero_grad()
            elif self.after == "zero_grad":
                for leaf in leaves:
                    leaf.grad = None
            elif self.after == "no_grad_update":
                with torch.no_grad():
                    for leaf in leaves:
                        leaf -= self.lr * leaf.grad  # type: ignore[operator]
                        leaf.grad = None

        return forward, finish


@functools.cache
def _notebook_x(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return NOTEBOOK_X.to(device=device, dtype=dtype)


def _linear_mse(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = _notebook_x(w.dtype, w.device)
    return linear.mse(4 * x + 1, w * x + b)


_X3 = (1.3505, 0.9042, -0.7476)  # the x the basics notebook printed

WORKLOADS = (
    Workload("neuron/relu_backward", neuron.neuron, ([2.0], [1.0])),
    Workload("neuron/repeated_backward", neuron.neuron, ([2.0], [1.0]), after="accumulate"),
    Workload("neuron/sgd_step", neuron.neuron, ([2.0], [1.0]), after="sgd", lr=neuron.LR),
    Workload("chain/external_gradient", chain.times_three, (100.0,), cotangent=123.0),
    Workload("chain/squared_loss", chain.squared_loss, (100.0,)),
    Workload(
        "training/gradient_descent_loop",
        chain.squared_loss,
        (100.0,),
        after="no_grad_update",
        lr=0.01,
    ),
    Workload("mean/square_mean_backward", basics.mean_square, (_X3,)),
    Workload("vector/backward_vjp", basics.square, (_X3,), cotangent=basics.NOTEBOOK_V),
    Workload(
        "accumulation/repeated_backward",
        basics.times_three_sum,
        ([1.0] * 4,),
        after="accumulate",
    ),
    Workload("accumulation/zero_each_step", basics.times_three_sum, ([1.0] * 4,)),
    Workload(
        "polynomial/cubic_minus_square",
        linear.cubic_minus_square,
        ([2.0, 3.0], [6.0, 4.0]),
        cotangent=[1.0, 1.0],
    ),
    Workload("linear/mse_gradients", _linear_mse, ([2.0], [6.0])),
    Workload(
        "linear/update_under_no_grad",
        _linear_mse,
        ([2.0], [6.0]),
        after="no_grad_update",
        lr=linear.LR,
    ),
)
"""One workload per notebook scenario that runs a backward."""
BY_ID = {workload.scenario_id: workload for workload in WORKLOADS}
""":data:`WORKLOADS` by scenario id: benchmarks are parametrized by the ids (plain strings in
pytest-benchmark's JSON) and look their workload up here."""
