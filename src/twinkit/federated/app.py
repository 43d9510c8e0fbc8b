"""The federation as Flower apps: what a run is (:class:`Plan`) and what a site answers
(:func:`client_app`); the server's side is :mod:`.server`. One code path for both ways
to run: Flower's simulation engine (:func:`.simulation.federate`) and its deployment
runtime, a SuperLink and one SuperNode per site (the apps in
``twinkit.engine.federation``, which read each site's own store).

A run is a :class:`Plan`. The server waits for its sites, asks each to describe itself
(``query.describe``: a pseudonym, its sampling interval and channels, how many twins; no
data), lays out the network from the plan and those answers, then runs the plan's Flower
strategy for its rounds (``train``/``evaluate`` messages carry weights only), and last
may hand every site the result (``query.install``). A site is a :class:`Site`: the
histories of its twins, which never leave it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import pandas as pd
import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.data.grid import detect_step_minutes
from twinkit.data.windows import Windows
from twinkit.federated.attackers import Attacker, SiteFailure
from twinkit.federated.local import LocalTraining, held_loss, split_site, train_locally
from twinkit.federated.secure import is_secure, secure_mod, secure_reply
from twinkit.federated.strategies import UNIT_WEIGHT, Privacy
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
