"""The server's side of a federated run: wait for the sites, have them describe
themselves, lay out the network, run the plan's strategy (plainly or under SecAgg+), hand
the result out. The ServerApps of the simulation and of the deployment runtime both call
:func:`run_federation`."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import DifferentialPrivacyServerSideFixedClipping

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.federated.app import ROUND_TIMEOUT_S, Plan
from twinkit.federated.secure import run_secure
from twinkit.federated.strategies import STRATEGIES, make_strategy, weights_digest
from twinkit.models.neural import NeuralForecaster


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
