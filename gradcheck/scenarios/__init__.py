"""The scenario catalog: every claim the notebooks in ``seeds/`` make about gradients, and the
suite's own tables (known derivatives, planted bugs), as small declarative records.

``CATALOG`` maps each id to its :class:`Scenario`; :func:`run_scenario` proves one and returns a
:class:`~gradcheck.results.ScenarioResult`. Ids name the topic (``neuron/relu_backward``), not
the notebook file.
"""

from __future__ import annotations

from gradcheck.scenarios import (
    basics,
    calculus,
    chain,
    distributed,
    errors,
    linear,
    neuron,
    optim,
    planted,
    resnet,
)
from gradcheck.scenarios.base import (
    KINK_AWARE_ORACLES,
    Scenario,
    missing_requirement,
    run_scenario,
)

_MODULES = (neuron, chain, basics, distributed, errors, linear, resnet, optim, calculus, planted)

CATALOG: dict[str, Scenario] = {
    scenario.id: scenario for module in _MODULES for scenario in module.SCENARIOS
}
"""Every scenario, keyed by id."""

__all__ = ["CATALOG", "KINK_AWARE_ORACLES", "Scenario", "missing_requirement", "run_scenario"]
