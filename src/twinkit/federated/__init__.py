"""Federated learning: a population model trained across sites whose data never leave
them, on Flower (``twinkit[federated]``).

A site is a set of twins (a clinic's, a store's); it trains the population network on its
own windows (:mod:`.local`) and sends weights only. :mod:`.app` holds the Flower apps (a
site's ClientApp, the server's run of a :class:`~.app.Plan`); :func:`federate` runs them
on one machine with Flower's simulation engine, ``twinkit.engine.federation`` on Flower's
deployment runtime. The strategies are Flower's (:mod:`.strategies`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinkit.core.lazy import lazy_exports

if TYPE_CHECKING:
    from twinkit.federated.app import Plan, Site
    from twinkit.federated.attackers import Attacker
    from twinkit.federated.local import LocalTraining, train_locally
    from twinkit.federated.server import FederatedResult
    from twinkit.federated.simulation import federate
    from twinkit.federated.strategies import STRATEGIES, Privacy, make_strategy, weights_digest

__getattr__ = lazy_exports(
    __name__,
    {
        "Attacker": "attackers",
        "LocalTraining": "local",
        "train_locally": "local",
        "FederatedResult": "server",
        "Plan": "app",
        "Site": "app",
        "federate": "simulation",
        "weights_digest": "strategies",
        "STRATEGIES": "strategies",
        "Privacy": "strategies",
        "make_strategy": "strategies",
    },
)

__all__ = [
    "STRATEGIES",
    "Attacker",
    "FederatedResult",
    "LocalTraining",
    "Plan",
    "Privacy",
    "Site",
    "federate",
    "make_strategy",
    "train_locally",
    "weights_digest",
]
