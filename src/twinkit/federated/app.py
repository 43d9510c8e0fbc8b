"""The federation as Flower apps: what a site answers and what the server runs. One code
path for both ways to run: Flower's simulation engine (:func:`.simulation.federate`) and
its deployment runtime, a SuperLink and one SuperNode per site (the apps in
``twinkit.engine.federation``, which read each site's own store).

A run is a :class:`Plan`. The server waits for its sites, asks each to describe itself
(``query.describe``: a pseudonym, its sampling interval and channels, how many twins; no
data), lays out the network from the plan and those answers, then runs the plan's Flower
strategy for its rounds (``train``/``evaluate`` messages carry weights only), and last
may hand every site the result (``query.install``). A site is a :class:`Site`: the
histories of its twins, which never leave it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import pandas as pd
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.data.grid import detect_step_minutes
from twinkit.data.windows import Windows
from twinkit.federated.attackers import Attacker, SiteFailure
from twinkit.federated.local import LocalTraining, held_loss, split_site, train_locally
from twinkit.federated.secure import is_secure, run_secure, secure_mod, secure_reply
from twinkit.federated.strategies import (
    STRATEGIES,
    UNIT_WEIGHT,
    Privacy,
    make_strategy,
    weights_digest,
)
from twinkit.models.base import forecaster_class
from twinkit.models.neural import NeuralForecaster

#: the longest a round (or the sites' descriptions) may take, in seconds
ROUND_TIMEOUT_S = 3600.0


@dataclass(frozen=True)
class Plan:
    """What a federated run does: train ``model`` (a neural forecaster's name, built with
    ``params``) for ``rounds`` rounds of ``strategy`` over ``sites`` sites, each training
    as ``local`` says; ``options`` go to the strategy, ``privacy`` adds central
    differential privacy. The server waits up to ``wait_s`` seconds for the sites to
    connect; with ``install`` every site is handed the result to register in its store.
    Travels as JSON (:meth:`to_json`) in the run's configuration and every message."""

    model: str
    params: dict[str, Any]
    strategy: str = "fedavg"
    rounds: int = 20
    sites: int = 2
    local: LocalTraining = field(default_factory=LocalTraining)
    options: dict[str, Any] | None = None
    privacy: Privacy | None = None
    seed: int = 0
    holdout_frac: float = 0.2
    wait_s: float = 600.0
    install: bool = False
    #: SecAgg+: the server learns only the sum of the sites' updates (:mod:`.secure`)
    secure: bool = False

    def __post_init__(self) -> None:
        if self.sites < 2:
            raise TwinkitError("a federation needs at least two sites")
        if self.rounds < 1:
            raise TwinkitError(f"rounds must be at least 1, got {self.rounds}")
        if self.secure and self.privacy is not None:
            raise TwinkitError(
                "central DP clips each site's update, which secure aggregation hides from "
                "the server: choose one"
            )

    @classmethod
    def of(
        cls,
        template: NeuralForecaster,
        local: LocalTraining | None = None,
        epochs: int = 1,
        **settings: Any,
    ) -> Plan:
        """The plan that trains ``template`` (unfitted: its params and seed say what to
        build), each site by ``local`` (default: ``epochs`` of Adam at the template's
        learning rate and batch size); ``settings`` are the other fields (the seed by
        default the template's)."""
        if not isinstance(template, NeuralForecaster):
            raise TwinkitError(f"{template.name!r} cannot be federated; use a neural model (gru)")
        settings.setdefault("seed", template.seed)
        return cls(
            model=template.name,
            params=template.params(),
            local=local
            or LocalTraining(epochs=epochs, lr=template.lr, batch_size=template.batch_size),
            **settings,
        )

    @property
    def target(self) -> str:
        return str(self.params.get("target", "glucose"))

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            raw = json.loads(text)
            local = LocalTraining(**raw.pop("local"))
            privacy = raw.pop("privacy")
            return cls(local=local, privacy=None if privacy is None else Privacy(**privacy), **raw)
        except (ValueError, TypeError, KeyError) as exc:
            raise TwinkitError(f"not a federated plan: {exc}") from None

    def template(self) -> NeuralForecaster:
        """The unfitted model the plan trains."""
        model = forecaster_class(self.model)(**self.params)
        if not isinstance(model, NeuralForecaster):
            raise TwinkitError(f"{self.model!r} cannot be federated; use a neural model (gru)")
        return model


@dataclass
class Site:
    """One site as its ClientApp sees it: its pseudonym, its twins' histories (never sent)
    and a digest of its data; ``attacker`` makes it play unfair (a benchmark tool);
    ``install`` registers the federation's result in the site's own store."""

    name: str
    histories: Sequence[pd.DataFrame]
    data_hash: str = ""
    attacker: Attacker | None = None
    install: Callable[[NeuralForecaster, dict[str, Any]], None] | None = None


def histories_digest(histories: Sequence[pd.DataFrame]) -> str:
    """sha256 of the histories' values and times, in order."""
    digest = hashlib.sha256()
    for history in histories:
        digest.update(pd.util.hash_pandas_object(history, index=True).to_numpy().tobytes())
    return digest.hexdigest()


#: how a ClientApp finds its site: from the node's configuration and the run's plan
SiteSource = Callable[[Context, Plan], Site]


def describe(site: Site, target: str) -> dict[str, Any]:
    """What a site tells the server: its pseudonym, its histories' sampling interval and
    numeric channels, how many twins and a digest of its data (no readings)."""
    steps, channels = set(), set()
    for history in site.histories:
        if target not in history.columns:
            raise ForecastInputError(f"site {site.name}: a history has no {target!r} column")
        rows = history[target].dropna()
        steps.add(round(detect_step_minutes(pd.DatetimeIndex(rows.index)), 6))
        channels |= {
            str(c)
            for c in history.columns
            if c != target and pd.api.types.is_numeric_dtype(history[c].dtype)
        }
    if not site.histories:
        raise ForecastInputError(f"site {site.name} has no twin with {target!r} data")
    if len(steps) != 1:
        raise ForecastInputError(
            f"site {site.name}: its histories are sampled at different intervals "
            f"{sorted(steps)} min; resample them to one interval first"
        )
    return {
        "site": site.name,
        "step": steps.pop(),
        "channels": sorted(channels),
        "twins": len(site.histories),
        "data-hash": site.data_hash,
    }


def client_app(source: SiteSource) -> ClientApp:
    """The ClientApp of a site that ``source`` finds: it describes the site, trains the
    round's weights on the site's windows and scores them on windows it holds back."""
    app = ClientApp()
    cache: dict[tuple[Any, ...], tuple[list[Windows], list[Windows]]] = {}

    def site_and_plan(msg: Message, context: Context) -> tuple[Site, Plan, dict[str, Any]]:
        config = dict(msg.content.config_records["config"])
        plan = Plan.from_json(str(config["plan"]))
        return source(context, plan), plan, config

    def site_model(
        plan: Plan, config: Mapping[str, Any], weights: Mapping[str, Any] | Sequence[Any]
    ) -> NeuralForecaster:
        """The plan's network laid out as the server says, with ``weights`` (a state dict,
        or its arrays in the network's own order)."""
        step = float(cast(float, config["step"]))
        covariates = [str(c) for c in cast(list[str], config["covariates"])]
        model = plan.template().initialise(step, covariates)
        assert model.network is not None
        if not isinstance(weights, Mapping):
            names = list(model.network.state_dict())
            weights = dict(zip(names, weights, strict=True))
        model.network.load_state_dict({k: torch.as_tensor(v) for k, v in weights.items()})
        return model

    def site_split(
        site: Site, plan: Plan, model: NeuralForecaster
    ) -> tuple[list[Windows], list[Windows]]:
        """The site's training and held-back windows (cut once per run and layout)."""
        key = (site.name, plan.to_json(), model.step_min or 0.0, model.covariate_names)
        if key not in cache:
            train, held = split_site(model.site_windows(site.histories), model.n_steps)
            if sum(len(w) for w in train) == 0:
                raise ForecastInputError(f"site {site.name} has no gap-free windows to train on")
            cache[key] = train, held
        return cache[key]

    @app.query("describe")
    def describe_site(msg: Message, context: Context) -> Message:
        site, plan, _ = site_and_plan(msg, context)
        reply = ConfigRecord(describe(site, plan.target))
        return Message(content=RecordDict({"site": reply}), reply_to=msg)

    def train_site(
        site: Site,
        plan: Plan,
        config: Mapping[str, Any],
        weights: Mapping[str, Any] | Sequence[Any],
    ) -> tuple[dict[str, Any], float, int]:
        """One round of the site: the weights it sends, its training loss, its windows."""
        server_round = int(cast(int, config["server-round"]))
        attacker = site.attacker
        if attacker is not None and not attacker.active(server_round):
            attacker = None
        if attacker is not None and attacker.kind == "fail":
            raise SiteFailure(f"site {site.name} cannot take part in round {server_round}")
        model = site_model(plan, config, weights)
        train, _ = site_split(site, plan, model)
        network = model.network
        assert network is not None
        # FedProx sends its pull; the other strategies none
        settings = replace(
            plan.local, proximal_mu=float(cast(float, config.get("proximal-mu", 0.0)))
        )
        windows = train if attacker is None else attacker.windows(train)
        start = {k: v.detach().clone() for k, v in network.state_dict().items()}
        # the site's seed comes from its data, so a site trains alike on either runtime
        salt = int(histories_digest(site.histories)[:8], 16)
        round_seed = plan.seed * 1_000_003 + server_round * 1009 + salt
        loss, n = train_locally(network, windows, settings, round_seed)
        state = dict(network.state_dict())
        if attacker is not None:
            state = attacker.sent(start, state)
        return state, loss, n

    @app.train(mods=[secure_mod])
    def fit_site(msg: Message, context: Context) -> Message:
        if is_secure(msg):  # a SecAgg+ run's message, in Flower's legacy layout
            plan = Plan.from_json(str(msg.content.config_records["fitins.config"]["plan"]))
            site = source(context, plan)

            def train(config: Mapping[str, Any], arrays: list[Any]) -> tuple[list[Any], float, int]:
                state, loss, n = train_site(site, plan, config, arrays)
                return [v.detach().numpy() for v in state.values()], loss, n

            return secure_reply(msg, train)
        site, plan, config = site_and_plan(msg, context)
        weights = msg.content.array_records["arrays"].to_torch_state_dict()
        state, loss, n = train_site(site, plan, config, weights)
        metrics = MetricRecord({"train_loss": loss, "num-examples": n, UNIT_WEIGHT: 1})
        return Message(
            content=RecordDict({"arrays": ArrayRecord(state), "metrics": metrics}), reply_to=msg
        )

    @app.evaluate()
    def score_site(msg: Message, context: Context) -> Message:
        site, plan, config = site_and_plan(msg, context)
        model = site_model(plan, config, msg.content.array_records["arrays"].to_torch_state_dict())
        _, held = site_split(site, plan, model)
        assert model.network is not None
        loss, n = held_loss(model.network, held)
        metrics = MetricRecord({"held_loss": loss, "num-examples": n, UNIT_WEIGHT: 1})
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    @app.query("install")
    def install(msg: Message, context: Context) -> Message:
        site, plan, config = site_and_plan(msg, context)
        installed = 0
        if site.install is not None:
            arrays = msg.content.array_records["arrays"].to_torch_state_dict()
            site.install(site_model(plan, config, arrays), json.loads(str(config["record"])))
            installed = 1
        return Message(
            content=RecordDict({"metrics": MetricRecord({"installed": installed})}), reply_to=msg
        )

    return app


@dataclass
class FederatedResult:
    """A federated population model and its record."""

    model: NeuralForecaster
    plan: Plan
    #: the sites by pseudonym, in the order they described themselves, with their twins,
    #: training windows and data digests
    sites: list[dict[str, Any]]
    #: sha256 of the global weights: the initial ones, then after each round
    aggregates: list[str]
    #: round -> the sites whose update it aggregated
    joined: dict[int, list[str]]
    #: round -> site -> why its update is missing from that round (round 0: why a site
    #: could not describe itself)
    failures: dict[int, dict[str, str]] = field(default_factory=dict)
    #: with differential privacy: its settings and the budget spent (epsilon at delta)
    privacy: dict[str, Any] | None = None
    #: round -> mean training loss over the sites, and the global model's held-out loss
    train_loss: dict[int, float] = field(default_factory=dict)
    held_loss: dict[int, float] = field(default_factory=dict)
    #: the sites that registered the result in their stores (with ``plan.install``)
    installed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    engine: str = "flower-simulation"

    @property
    def windows(self) -> list[int]:
        return [int(s["windows"]) for s in self.sites]

    def record(self) -> dict[str, Any]:
        """What the ledger keeps of the run: settings, sites by pseudonym, who joined each
        round, why anyone was missing, the hash of every aggregate, the privacy spent."""
        return {
            "engine": self.engine,
            "strategy": self.plan.strategy,
            "rounds": self.plan.rounds,
            "local_epochs": self.plan.local.epochs,
            "sites": self.sites,
            "joined": {str(r): s for r, s in self.joined.items()},
            "failures": {str(r): f for r, f in self.failures.items()},
            "aggregates": self.aggregates,
            "held_loss": {str(r): round(v, 6) for r, v in self.held_loss.items()},
            "privacy": self.privacy,
            "secure_aggregation": "secagg+" if self.plan.secure else None,
            "seconds": self.seconds,
        }


def _ask(grid: Grid, nodes: Iterable[int], kind: str, content: RecordDict) -> list[Message]:
    messages = [
        grid.create_message(copy.deepcopy(content), kind, node, group_id=kind) for node in nodes
    ]
    return list(grid.send_and_receive(messages, timeout=ROUND_TIMEOUT_S))


def _wait_for_sites(grid: Grid, plan: Plan) -> list[int]:
    deadline = time.monotonic() + plan.wait_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= plan.sites:
            return nodes
        if time.monotonic() > deadline:
            raise TwinkitError(
                f"only {len(nodes)} of {plan.sites} sites connected within {plan.wait_s:g} s"
            )
        time.sleep(0.5)


def run_federation(
    grid: Grid,
    plan: Plan,
    engine: str = "flower-simulation",
    initial: Mapping[str, Any] | None = None,
    context: Context | None = None,
) -> FederatedResult:
    """The server's side of a run on ``grid``: wait for the sites, have them describe
    themselves, lay out the network (with ``initial`` weights: a checkpoint to go on
    from), run the strategy (with ``plan.secure``, under SecAgg+ in the ServerApp's
    ``context``: :mod:`.secure`), hand the result out if the plan says so. Raises
    :class:`TwinkitError` if no site could train."""
    started = time.perf_counter()
    nodes = _wait_for_sites(grid, plan)
    ask = RecordDict({"config": ConfigRecord({"plan": plan.to_json()})})
    names: dict[int, str] = {}
    described: dict[int, dict[str, Any]] = {}
    unable: dict[int, str] = {}  # the nodes that could not describe their site, and why
    for reply in _ask(grid, nodes, "query.describe", ask):
        node = reply.metadata.src_node_id
        if reply.has_error():
            unable[node] = str(reply.error.reason)
            continue
        info = dict(reply.content.config_records["site"])
        name = str(info["site"])
        while name in names.values():  # two sites with one pseudonym: tell them apart
            name += "'"
        names[node], described[node] = name, info
    if len(described) < 2:
        why = "; ".join(sorted(set(unable.values()))) or "no reply"
        raise TwinkitError(f"fewer than two sites could describe themselves: {why}")
    for i, node in enumerate(sorted(unable), start=1):
        names[node] = f"unknown-site-{i}"  # it is asked each round and fails or joins
    steps = {float(cast(float, d["step"])) for d in described.values()}
    if len(steps) != 1:
        raise ForecastInputError(
            f"the sites' histories are sampled at different intervals {sorted(steps)} min; "
            "resample them to one interval first"
        )
    template = plan.template()
    covariates = template.covariates
    if covariates is None:
        # every numeric channel but the target that some site has (a missing event
        # channel reads as no events, as in a pooled fit)
        covariates = sorted({str(c) for d in described.values() for c in d["channels"]})
    step = steps.pop()
    model = template.initialise(step, covariates)
    assert model.network is not None
    if initial is not None:
        try:
            model.network.load_state_dict({k: torch.as_tensor(v) for k, v in initial.items()})
        except RuntimeError as exc:
            raise TwinkitError(
                f"the checkpoint does not fit the network the sites' data lay out: {exc}"
            ) from None
    chosen, tally = make_strategy(plan.strategy, len(nodes), plan.options, plan.privacy)
    aggregates: list[str] = []

    def record(_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        aggregates.append(weights_digest(arrays.to_torch_state_dict()))
        return None

    config = ConfigRecord(
        {"plan": plan.to_json(), "step": step, "covariates": list(covariates), "lr": plan.local.lr}
    )
    assert model.network is not None
    start = ArrayRecord(model.network.state_dict())
    train_loss: dict[int, float] = {}
    held: dict[int, float] = {}
    if plan.secure:
        if context is None:
            raise TwinkitError("a secure run needs the ServerApp's context")
        options = {**STRATEGIES[plan.strategy][1], **(plan.options or {})}
        final = run_secure(
            grid, context, plan.strategy, options, len(nodes), plan.rounds, start, dict(config),
            record, tally.joined,
        )  # fmt: skip
    else:
        outcome = chosen.start(
            grid=grid,
            initial_arrays=start,
            num_rounds=plan.rounds,
            timeout=ROUND_TIMEOUT_S,
            train_config=config,
            evaluate_config=config,
            evaluate_fn=record,
        )
        final = outcome.arrays
        for r, m in outcome.train_metrics_clientapp.items():
            train_loss[r] = float(cast(float, m["train_loss"]))
        for r, m in outcome.evaluate_metrics_clientapp.items():
            held[r] = float(cast(float, m["held_loss"]))
    if not any(tally.joined.values()):
        why = "; ".join(sorted({r for f in tally.failed.values() for r in f.values()}))
        raise TwinkitError(f"no site could train in any round: {why}")
    model.network.load_state_dict(final.to_torch_state_dict())
    model.network.eval()
    spent = None
    if plan.privacy is not None:
        used = cast(DifferentialPrivacyServerSideFixedClipping, chosen).privacy_spent()
        spent = {
            "mechanism": "central, server-side fixed clipping, per site",
            "noise_multiplier": plan.privacy.noise_multiplier,
            "clipping_norm": plan.privacy.clipping_norm,
            "epsilon": None if used is None else float(used.epsilon),
            "delta": plan.privacy.delta,
            "accounting": "rdp",
        }
    failures = {r: {names[n]: why for n, why in f.items()} for r, f in tally.failed.items()}
    if unable:
        failures[0] = {names[n]: why for n, why in unable.items()}
    result = FederatedResult(
        model=model,
        plan=plan,
        sites=[
            {
                "site": names[n],
                "twins": int(cast(int, described[n]["twins"])),
                "windows": int(tally.windows.get(n, 0)),
                "data_hash": str(described[n]["data-hash"]),
            }
            for n in nodes
            if n in described
        ],
        aggregates=aggregates,
        joined={r: sorted(names[n] for n in ids) for r, ids in tally.joined.items()},
        failures=dict(sorted(failures.items())),
        privacy=spent,
        train_loss=train_loss,
        held_loss=held,
        engine=engine,
    )
    result.seconds = round(time.perf_counter() - started, 2)
    if plan.install:
        handout = RecordDict(
            {
                "arrays": ArrayRecord(model.network.state_dict()),
                "config": ConfigRecord({**dict(config), "record": json.dumps(result.record())}),
            }
        )
        for reply in _ask(grid, sorted(described), "query.install", handout):
            if not reply.has_error() and reply.content.metric_records["metrics"]["installed"]:
                result.installed.append(names[reply.metadata.src_node_id])
        result.installed.sort()
    return result
