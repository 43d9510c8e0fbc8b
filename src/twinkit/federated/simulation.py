"""A federation on one machine: Flower's simulation engine runs a ServerApp and one
ClientApp per site; each site trains the population network on its own twins' windows and
only weights travel.

:func:`federate` is the entry point: sites are named lists of twin histories (each site's
data stays in its ClientApp), the strategy one of :data:`~.strategies.STRATEGIES`. The
result is the population model, with what a ledger needs: the sites' window counts, which
sites each round aggregated, and the sha256 of the global weights after every round.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
import pandas as pd
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping
from flwr.simulation import run_simulation

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.data.grid import detect_step_minutes
from twinkit.data.windows import Windows
from twinkit.federated.attackers import Attacker, SiteFailure
from twinkit.federated.local import LocalTraining, held_loss, split_site, train_locally
from twinkit.federated.strategies import UNIT_WEIGHT, Privacy, make_strategy
from twinkit.models.neural import NeuralForecaster

#: the longest a round waits for its sites, in seconds
ROUND_TIMEOUT_S = 3600.0


@dataclass
class FederatedResult:
    """A federated population model and its record."""

    model: NeuralForecaster
    strategy: str
    rounds: int
    #: the sites, in the order of their index, and each one's training windows
    sites: list[str]
    windows: list[int]
    #: sha256 of the global weights: the initial ones, then after each round
    aggregates: list[str]
    #: round -> the sites whose update it aggregated
    joined: dict[int, list[str]]
    #: with differential privacy: its settings and the budget spent (epsilon at delta)
    privacy: dict[str, Any] | None = None
    #: round -> mean training loss over the sites, and the global model's held-out loss
    train_loss: dict[int, float] = field(default_factory=dict)
    held_loss: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a network's weights (names, shapes and float32 values, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = np.ascontiguousarray(np.asarray(state[name], dtype=np.float32))
        digest.update(f"{name}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _step_and_channels(
    template: NeuralForecaster, sites: Mapping[str, Sequence[pd.DataFrame]]
) -> tuple[float, list[str]]:
    """The sampling interval every history shares, and the covariates: the template's, or
    every numeric channel but the target that some history has (a missing event channel
    reads as no events, as in a pooled fit)."""
    steps, channels = set(), set()
    for histories in sites.values():
        for history in histories:
            rows = history[template.target].dropna()
            steps.add(round(detect_step_minutes(pd.DatetimeIndex(rows.index)), 6))
            channels |= {
                str(c)
                for c in history.columns
                if c != template.target and pd.api.types.is_numeric_dtype(history[c].dtype)
            }
    if len(steps) != 1:
        raise ForecastInputError(
            f"the sites' histories are sampled at different intervals {sorted(steps)} min; "
            "resample them to one interval first"
        )
    covariates = template.covariates if template.covariates is not None else sorted(channels)
    return steps.pop(), list(covariates)


def _client_app(
    template: NeuralForecaster,
    train: list[list[Windows]],
    held: list[list[Windows]],
    local: LocalTraining,
    seed: int,
    attackers: Mapping[int, Attacker],
) -> ClientApp:
    app = ClientApp()

    def network_from(msg: Message) -> torch.nn.Module:
        network = copy.deepcopy(template.network)
        assert network is not None
        network.load_state_dict(msg.content.array_records["arrays"].to_torch_state_dict())
        return network

    @app.train()
    def fit_site(msg: Message, context: Context) -> Message:
        site = int(context.node_config["partition-id"])
        config = msg.content.config_records["config"]
        network = network_from(msg)
        # FedProx sends its pull; the other strategies none
        settings = replace(local, proximal_mu=float(cast(float, config.get("proximal-mu", 0.0))))
        server_round = int(cast(int, config["server-round"]))
        attacker = attackers.get(site)
        if attacker is not None and not attacker.active(server_round):
            attacker = None
        if attacker is not None and attacker.kind == "fail":
            raise SiteFailure(f"site {site} cannot take part in round {server_round}")
        windows = train[site] if attacker is None else attacker.windows(train[site])
        start = {k: v.detach().clone() for k, v in network.state_dict().items()}
        round_seed = seed * 1_000_003 + server_round * 1009 + site
        loss, n = train_locally(network, windows, settings, round_seed)
        state = network.state_dict()
        if attacker is not None:
            state = attacker.sent(start, state)
        metrics = MetricRecord(
            {"train_loss": loss, "num-examples": n, UNIT_WEIGHT: 1, "site": site}
        )
        content = RecordDict({"arrays": ArrayRecord(state), "metrics": metrics})
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def score_site(msg: Message, context: Context) -> Message:
        site = int(context.node_config["partition-id"])
        loss, n = held_loss(network_from(msg), held[site])
        metrics = MetricRecord({"held_loss": loss, "num-examples": n, UNIT_WEIGHT: 1, "site": site})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app


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
    epsilon spent is in the result.
    """
    if len(sites) < 2:
        raise TwinkitError("a federation needs at least two sites")
    if rounds < 1:
        raise TwinkitError(f"rounds must be at least 1, got {rounds}")
    started = time.perf_counter()
    local = local or LocalTraining(lr=template.lr, batch_size=template.batch_size)
    step, covariates = _step_and_channels(template, sites)
    model = copy.deepcopy(template).initialise(step, covariates)
    names = list(sites)
    train, held = [], []
    for name in names:
        site_train, site_held = split_site(model.site_windows(sites[name]), model.n_steps)
        if sum(len(w) for w in site_train) == 0:
            raise ForecastInputError(f"site {name!r} has no gap-free windows to train on")
        train.append(site_train)
        held.append(site_held)
    unknown = sorted(set(attackers or {}) - set(names))
    if unknown:
        raise TwinkitError(f"attackers name unknown sites {unknown}; the sites are {names}")
    bad = {names.index(name): attacker for name, attacker in (attackers or {}).items()}
    chosen, joined = make_strategy(strategy, len(names), options, privacy)
    aggregates: list[str] = []

    def record(_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        aggregates.append(weights_digest(arrays.to_torch_state_dict()))
        return None

    server = ServerApp()
    outcome: dict[str, Any] = {}

    @server.main()
    def run(grid: Grid, context: Context) -> None:
        assert model.network is not None
        outcome["result"] = chosen.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.network.state_dict()),
            num_rounds=rounds,
            timeout=ROUND_TIMEOUT_S,
            train_config=ConfigRecord({"lr": local.lr}),
            evaluate_fn=record,
        )

    parallel = max(1, min(cpus or os.cpu_count() or 1, len(names)))
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
    # No GPUs are used: Ray need not touch the devices' environment variable (and says so).
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    try:
        run_simulation(
            server_app=server,
            client_app=_client_app(model, train, held, local, seed, bad),
            num_supernodes=len(names),
            backend_config=backend,  # type: ignore[arg-type]
        )
    finally:
        flower_log.setLevel(level)
    result = outcome.get("result")
    if result is None:
        raise TwinkitError("the federation did not finish; see Flower's log")
    assert model.network is not None
    model.network.load_state_dict(result.arrays.to_torch_state_dict())
    model.network.eval()
    spent = None
    if privacy is not None:
        used = cast(DifferentialPrivacyServerSideFixedClipping, chosen).privacy_spent()
        spent = {
            "mechanism": "central, server-side fixed clipping, per site",
            "noise_multiplier": privacy.noise_multiplier,
            "clipping_norm": privacy.clipping_norm,
            "epsilon": None if used is None else float(used.epsilon),
            "delta": privacy.delta,
            "accounting": "rdp",
        }
    return FederatedResult(
        model=model,
        strategy=strategy,
        rounds=rounds,
        sites=names,
        windows=[sum(len(w) for w in site) for site in train],
        aggregates=aggregates,
        joined={r: [names[i] for i in ids] for r, ids in joined.items()},
        privacy=spent,
        train_loss={r: float(m["train_loss"]) for r, m in result.train_metrics_clientapp.items()},
        held_loss={r: float(m["held_loss"]) for r, m in result.evaluate_metrics_clientapp.items()},
        seconds=round(time.perf_counter() - started, 2),
    )
