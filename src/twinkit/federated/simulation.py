"""A federation on one machine: Flower's simulation engine runs the ServerApp and one
ClientApp per site of :mod:`.app` (the code path of a deployed federation too); each site
trains the population network on its own twins' windows and only weights travel.

:func:`federate` is the entry point: sites are named lists of twin histories (each site's
data stays in its ClientApp), the strategy one of :data:`~.strategies.STRATEGIES`. The
result is the population model, with what a ledger needs: the sites' window counts, which
sites each round aggregated, and the sha256 of the global weights after every round.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from flwr.app import Context
from flwr.serverapp import Grid, ServerApp
from flwr.simulation import run_simulation

from twinkit.core.errors import TwinkitError
from twinkit.federated.app import Plan, Site, client_app, histories_digest
from twinkit.federated.attackers import Attacker
from twinkit.federated.local import LocalTraining
from twinkit.federated.server import FederatedResult, run_federation
from twinkit.federated.strategies import Privacy
from twinkit.models.neural import NeuralForecaster

__all__ = ["FederatedResult", "federate"]


def federate(
    template: NeuralForecaster,
    sites: Mapping[str, Sequence[pd.DataFrame]],
    *,
    strategy: str = "fedavg",
    rounds: int = 20,
    local: LocalTraining | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
    cpus: int | None = None,
    attackers: Mapping[str, Attacker] | None = None,
    privacy: Privacy | None = None,
    initial: Mapping[str, Any] | None = None,
    secure: bool = False,
) -> FederatedResult:
    """Train ``template``'s network (unfitted: its params and seed say what to build)
    across ``sites`` (name -> the histories of that site's twins) with Flower's
    simulation engine: ``rounds`` rounds of ``strategy``, each site training as ``local``
    says (default: one epoch of Adam at the template's learning rate and batch size).
    Each site holds back its twins' most recent windows and scores every round's global
    model on them. ``cpus`` caps the sites trained at once (default: every core).
    ``attackers`` (site name -> :class:`~.attackers.Attacker`) make sites play unfair, to
    measure a strategy; a failing site is left out of that round's aggregate. ``privacy``
    adds central differential privacy per site (:class:`~.strategies.Privacy`); the
    epsilon spent is in the result. ``initial`` weights (a checkpoint: the state dict of
    an earlier federated network of the same layout) are where training goes on from;
    by default the template's seed draws them. ``secure`` aggregates with SecAgg+
    (:mod:`.secure`): the server sees only the sum of the sites' updates.
    """
    if len(sites) < 2:
        raise TwinkitError("a federation needs at least two sites")
    unknown = sorted(set(attackers or {}) - set(sites))
    if unknown:
        raise TwinkitError(f"attackers name unknown sites {unknown}; the sites are {list(sites)}")
    plan = Plan.of(
        template,
        local,
        strategy=strategy,
        rounds=rounds,
        sites=len(sites),
        options=options,
        privacy=privacy,
        seed=seed,
        secure=secure,
    )
    members = [
        Site(name, list(histories), histories_digest(histories), (attackers or {}).get(name))
        for name, histories in sites.items()
    ]

    def site_of(context: Context, _plan: Plan) -> Site:
        return members[int(context.node_config["partition-id"])]

    server = ServerApp()
    outcome: dict[str, FederatedResult | TwinkitError] = {}

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        try:
            outcome["result"] = run_federation(grid, plan, initial=initial, context=context)
        except TwinkitError as exc:  # Flower logs and swallows the ServerApp's errors
            outcome["error"] = exc

    parallel = max(1, min(cpus or os.cpu_count() or 1, len(sites)))
    backend = {
        "init_args": {
            "num_cpus": parallel,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": logging.ERROR,
            "log_to_driver": False,
        },
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
    }
    # Flower 1.42 warns that run_simulation is deprecated for `flwr run`, which needs an
    # app project and a SuperLink (docs/flower.md): a library's caller cannot act on it.
    flower_log = logging.getLogger("flwr")
    level = flower_log.level
    flower_log.setLevel(logging.ERROR)
    # Ray writes to this process's environment (PYTHONPATH with its own paths and this
    # interpreter's site-packages, PYTHONBREAKPOINT, ...); put it back afterwards, or every
    # later subprocess of the caller would inherit them.
    environment = dict(os.environ)
    # No GPUs are used: Ray need not touch the devices' environment variable (and says so).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    try:
        run_simulation(
            server_app=server,
            client_app=client_app(site_of),
            num_supernodes=len(sites),
            backend_config=backend,  # type: ignore[arg-type]
        )
    finally:
        flower_log.setLevel(level)
        os.environ.clear()
        os.environ.update(environment)
    result = outcome.get("result", outcome.get("error"))
    if isinstance(result, TwinkitError):
        raise result
    if result is None:
        raise TwinkitError("the federation did not finish; see Flower's log")
    # the sites in the order they were given, not as they connected
    order = {name: i for i, name in enumerate(sites)}
    result.sites.sort(key=lambda s: order.get(s["site"], len(order)))
    return result
