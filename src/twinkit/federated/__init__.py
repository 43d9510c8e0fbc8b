"""Federated learning: a population model trained across sites whose data never leave
them, on Flower (``twinkit[federated]``).

A site is a set of twins (a clinic's, a store's); it trains the population network on its
own windows (:mod:`.local`) and sends weights only. :func:`federate` runs a federation on
one machine with Flower's simulation engine; the strategies are Flower's
(:mod:`.strategies`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from twinkit.federated.attackers import Attacker
    from twinkit.federated.local import LocalTraining, train_locally
    from twinkit.federated.simulation import FederatedResult, federate, weights_digest
    from twinkit.federated.strategies import STRATEGIES, make_strategy

__getattr__ = lazy_exports(
    __name__,
    {
        "Attacker": "attackers",
        "LocalTraining": "local",
        "train_locally": "local",
        "FederatedResult": "simulation",
        "federate": "simulation",
        "weights_digest": "simulation",
        "STRATEGIES": "strategies",
        "make_strategy": "strategies",
    },
)

__all__ = [
    "STRATEGIES",
    "Attacker",
    "FederatedResult",
    "LocalTraining",
    "federate",
    "make_strategy",
    "train_locally",
    "weights_digest",
]
