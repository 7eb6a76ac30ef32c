"""The notebooks' gradient computations as benchmark workloads, built from the scenario modules'
own functions (``gradcheck.scenarios.*``), so a benchmark times exactly what a scenario proves.

One :class:`Workload` per notebook scenario that calls ``backward``. The scenarios that never
reach a backward (``tracking/*`` proves no graph is built, ``errors/*`` that a mistake raises)
have nothing to time; ``neuron/zero_grad``'s step is ``neuron/relu_backward``'s (the gradients
set to None after each backward), and ``linear/manual_update_pitfall`` times nothing new (its
point is that the update turns ``w`` into a non-leaf). ResNet18's notebook step is
``test_bench_throughput``'s batch-1 row.

Each round of a benchmark is one notebook step: fresh output from the leaves, ``backward`` and
what the notebook does next (nothing, so gradients accumulate; ``zero_grad``; an SGD step; the
manual update under ``no_grad``). No graph, output or gradient is kept from one step to the next.
"""

from __future__ import annotations

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

    def cotangent_for(self, output: torch.Tensor) -> torch.Tensor | None:
        """The ``gradient=`` tensor for ``output`` (None for a scalar output)."""
        if self.cotangent is None:
            return None
        return torch.tensor(self.cotangent, dtype=output.dtype, device=output.device)

    def step(self, leaves: tuple[torch.Tensor, ...]) -> Callable[[], Callable[[], None]]:
        """A notebook step on ``leaves``: call it for the forward, which returns the backward
        (and the step's end) to call next, so the two can be timed apart."""
        optimizer = torch.optim.SGD(leaves, lr=self.lr) if self.after == "sgd" else None

        def forward() -> Callable[[], None]:
            output = self.function(*leaves)
            cotangent = self.cotangent_for(output)

            def backward() -> None:
                output.backward(cotangent)
                self._finish(leaves, optimizer)

            return backward

        return forward

    def _finish(
        self, leaves: tuple[torch.Tensor, ...], optimizer: torch.optim.Optimizer | None
    ) -> None:
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


def _linear_mse(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    x = NOTEBOOK_X.to(w.dtype)
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
"""One workload per notebook scenario that runs a backward, keyed by the scenario's id."""
