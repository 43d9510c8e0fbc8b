"""The aggregation strategies a federation can use: Flower's own, by name.

Non-IID people: ``fedavg`` (weighted by each site's windows), ``fedprox`` (the sites'
training is pulled toward the round's weights), ``fedadam`` and ``fedyogi`` (adaptive
server-side steps). Poisoned sites: ``fedmedian`` (coordinate-wise median),
``fedtrimmedavg`` (the trimmed mean), ``krum`` and ``multikrum`` (the updates closest to
the others). Every strategy takes every site in every round.
"""

from __future__ import annotations

from typing import Any

from flwr.serverapp.strategy import (
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
)

from twinkit.core.errors import TwinkitError

#: name -> (Flower class, twinkit's default options for it)
STRATEGIES: dict[str, tuple[type[FedAvg], dict[str, Any]]] = {
    "fedavg": (FedAvg, {}),
    "fedprox": (FedProx, {"proximal_mu": 0.1}),
    "fedadam": (FedAdam, {"eta": 1e-2, "eta_l": 3e-3, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
    "fedyogi": (FedYogi, {"eta": 1e-2, "eta_l": 3e-3, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
    "fedmedian": (FedMedian, {}),
    "fedtrimmedavg": (FedTrimmedAvg, {"beta": 0.2}),
    "krum": (Krum, {"num_malicious_nodes": 1}),
    "multikrum": (MultiKrum, {"num_malicious_nodes": 1}),
}


def make_strategy(
    name: str, sites: int, options: dict[str, Any] | None = None
) -> tuple[FedAvg, dict[int, list[int]]]:
    """Flower's strategy ``name`` over ``sites`` sites (all of them in every round, each
    weighted by its windows where the strategy weighs), with ``options`` over twinkit's
    defaults; and the record it fills of the sites whose update each round aggregated."""
    if name not in STRATEGIES:
        raise TwinkitError(f"unknown strategy {name!r}; choose among {', '.join(STRATEGIES)}")
    cls, defaults = STRATEGIES[name]
    settings = {**defaults, **(options or {})}
    if name == "multikrum":
        settings.setdefault("num_nodes_to_select", max(1, sites - settings["num_malicious_nodes"]))
    joined: dict[int, list[int]] = {}

    class Recorded(cls):  # type: ignore[valid-type,misc]
        """The strategy, noting which sites each round's aggregate is made of."""

        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            joined[server_round] = sorted(
                int(m.content["metrics"]["site"]) for m in replies if not m.has_error()
            )
            return super().aggregate_train(server_round, replies)

    nodes = {"min_train_nodes": sites, "min_evaluate_nodes": sites, "min_available_nodes": sites}
    try:
        strategy = Recorded(**nodes, **settings)
    except TypeError as exc:
        raise TwinkitError(f"strategy {name!r}: {exc}") from None
    return strategy, joined
