"""Secure aggregation with Flower's SecAgg+: the server learns only the sum of the sites'
masked updates, never one site's weights.

In Flower 1.42 SecAgg+ exists only in its legacy API (``SecAggPlusWorkflow`` inside a
``DefaultWorkflow`` with a legacy strategy on the server, ``secaggplus_mod`` on the
client), so a secure run drives the same ClientApp (:mod:`.app`) with legacy-shaped
``train`` messages: :func:`secure_mod` hands a message carrying SecAgg+'s stage to
``secaggplus_mod``, and the site's training answers it in the legacy layout.

What it cannot combine with, and why (docs/flower.md section 6): the robust strategies
(FedMedian, FedTrimmedAvg, Krum, MultiKrum) need every site's update, which is exactly
what secure aggregation hides (Flower would silently return the mean); central DP with
server-side clipping needs each update too. FedAvg, FedProx, FedAdam and FedYogi work on
the mean and are supported. Sites are weighted equally: the protocol scales each update
by its weight over ``max_weight`` before quantising it to 2^22 levels over
[-``CLIPPING_RANGE``, ``CLIPPING_RANGE``], so weights in the thousands of windows would
cost the aggregate its precision; the mean's quantisation error is then about 4e-6 per
weight.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Message
from flwr.client.mod import secaggplus_mod
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common.recorddict_compat import fitres_to_recorddict, recorddict_to_fitins
from flwr.server import LegacyContext, ServerConfig
from flwr.server import strategy as legacy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.serverapp import Grid

from twinkit.core.errors import TwinkitError

#: the strategies secure aggregation can run: those that only need the sites' mean
SECURE_STRATEGIES = {
    "fedavg": legacy.FedAvg,
    "fedprox": legacy.FedProx,
    "fedadam": legacy.FedAdam,
    "fedyogi": legacy.FedYogi,
}
#: weights are clipped to +-this before quantisation (the network's stay well inside)
CLIPPING_RANGE = 8.0
#: the record SecAgg+'s messages carry its stage in
_STAGE_RECORD = "secaggplus_configs"
_FIT_CONFIG = "fitins.config"

#: trains a site from a config and the weights in the network's order: (the weights it
#: sends in that order, its training loss, its windows)
SiteTrainer = Callable[[Mapping[str, Any], list[Any]], tuple[list[Any], float, int]]


def secure_mod(msg: Message, context: Context, call_next: Any) -> Message:
    """Hand a SecAgg+ message to Flower's ``secaggplus_mod``; any other to the app."""
    if _STAGE_RECORD in msg.content.config_records:
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)  # type: ignore[no-any-return]


def is_secure(msg: Message) -> bool:
    """Whether a train message is a secure run's (legacy layout)."""
    return _FIT_CONFIG in msg.content.config_records


def secure_reply(msg: Message, train: SiteTrainer) -> Message:
    """Answer a secure run's train message: the weights arrive as legacy parameters in
    the network's state-dict order, the site trains, and the reply carries its weights
    with a weight of 1 (see the module) for ``secaggplus_mod`` to mask."""
    fitins = recorddict_to_fitins(msg.content, keep_input=True)
    config = dict(fitins.config)
    config["covariates"] = json.loads(str(config["covariates"]))
    config.setdefault("proximal-mu", config.get("proximal_mu", 0.0))
    sent, loss, _ = train(config, [np.array(a) for a in parameters_to_ndarrays(fitins.parameters)])
    fitres = FitRes(
        status=Status(Code.OK, ""),
        parameters=ndarrays_to_parameters([np.asarray(a) for a in sent]),
        num_examples=1,
        metrics={"train_loss": loss},
    )
    return Message(content=fitres_to_recorddict(fitres, keep_input=True), reply_to=msg)


def run_secure(
    grid: Grid,
    context: Context,
    strategy: str,
    options: Mapping[str, Any],
    nodes: int,
    rounds: int,
    initial: ArrayRecord,
    fit_config: Mapping[str, Any],
    record: Callable[[int, ArrayRecord], Any],
    joined: dict[int, list[int]],
) -> ArrayRecord:
    """``rounds`` rounds of ``strategy`` over ``nodes`` sites with SecAgg+, from
    ``initial``; ``record`` hears of every global model (round 0 the initial one), and
    ``joined`` gets the node ids whose update each round's sum holds. Returns the final
    weights."""
    if strategy not in SECURE_STRATEGIES:
        raise TwinkitError(
            f"secure aggregation runs {', '.join(SECURE_STRATEGIES)} only: {strategy!r} needs "
            "every site's update, which secure aggregation hides from the server"
        )
    names = list(initial.to_torch_state_dict())
    config = {**fit_config, "covariates": json.dumps(list(fit_config["covariates"]))}

    def evaluate(server_round: int, arrays: Any, _config: Any) -> tuple[float, dict[str, Any]]:
        state = {n: torch.from_numpy(np.array(a)) for n, a in zip(names, arrays, strict=True)}
        record(server_round, ArrayRecord(state))
        return 0.0, {}

    class Joined(SECURE_STRATEGIES[strategy]):  # type: ignore[misc,valid-type]
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            joined[server_round] = sorted(int(proxy.node_id) for proxy, _ in results)
            return super().aggregate_fit(server_round, results, failures)

    chosen = Joined(
        fraction_fit=1.0,
        fraction_evaluate=0.0,
        min_fit_clients=nodes,
        min_available_clients=nodes,
        initial_parameters=ndarrays_to_parameters(initial.to_numpy_ndarrays()),
        on_fit_config_fn=lambda server_round: {**config, "server-round": server_round},
        evaluate_fn=evaluate,
        **options,
    )
    legacy_context = LegacyContext(context, config=ServerConfig(num_rounds=rounds), strategy=chosen)
    workflow = DefaultWorkflow(
        fit_workflow=SecAggPlusWorkflow(
            num_shares=nodes,
            reconstruction_threshold=max(2, nodes - 1),
            max_weight=1.0,
            clipping_range=CLIPPING_RANGE,
        )
    )
    workflow(grid, legacy_context)
    final = legacy_context.state.array_records["parameters"].to_numpy_ndarrays()
    return ArrayRecord(
        {n: torch.from_numpy(np.array(a)) for n, a in zip(names, final, strict=True)}
    )
