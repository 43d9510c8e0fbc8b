"""The aggregation strategies a federation can use: Flower's own, by name, optionally with
central differential privacy.

Non-IID people: ``fedavg`` (weighted by each site's windows), ``fedprox`` (the sites'
training is pulled toward the round's weights), ``fedadam`` and ``fedyogi`` (adaptive
server-side steps). Poisoned sites: ``fedmedian`` (coordinate-wise median),
``fedtrimmedavg`` (the trimmed mean), ``krum`` and ``multikrum`` (the updates closest to
the others). Every strategy takes every site in every round.

:class:`Privacy` wraps ``fedavg`` or ``fedprox`` in Flower's
``DifferentialPrivacyServerSideFixedClipping`` with its RDP accountant: each site's update
is clipped, Gaussian noise is added to their (unweighted) mean, and the budget spent is
counted. The unit it protects is a site, not a person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.serverapp import NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    FedYogi,
    Krum,
    MultiKrum,
    Strategy,
)

from twinkit.core.errors import TwinkitError

#: name -> (Flower class, twinkit's default options for it)
STRATEGIES: dict[str, tuple[type[FedAvg], dict[str, Any]]] = {
    "fedavg": (FedAvg, {}),
    "fedprox": (FedProx, {"proximal_mu": 0.1}),
    "fedadam": (FedAdam, {"eta": 1e-2, "eta_l": 3e-3, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
    "fedyogi": (FedYogi, {"eta": 1e-2, "eta_l": 3e-3, "beta_1": 0.9, "beta_2": 0.99, "tau": 1e-3}),
    "fedmedian": (FedMedian, {}),
    "fedtrimmedavg": (FedTrimmedAvg, {}),  # beta: see make_strategy
    "krum": (Krum, {"num_malicious_nodes": 1}),
    "multikrum": (MultiKrum, {"num_malicious_nodes": 1}),
}
#: the strategies the privacy accountant can follow: a plain mean of the sites' updates
PRIVATE_STRATEGIES = ("fedavg", "fedprox")
#: the metric that weighs every site the same (what the accountant's bound assumes)
UNIT_WEIGHT = "unit-weight"


@dataclass(frozen=True)
class Privacy:
    """Central differential privacy per site: every round each site's update is clipped to
    L2 norm ``clipping_norm`` and Gaussian noise of standard deviation ``noise_multiplier
    * clipping_norm / sites`` is added to their mean; the epsilon spent at ``delta`` comes
    from Flower's RDP accountant (every site in every round: no amplification by
    sampling)."""

    noise_multiplier: float = 1.0
    clipping_norm: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.noise_multiplier < 0 or self.clipping_norm <= 0 or not 0 < self.delta < 1:
            raise TwinkitError(
                "privacy needs noise_multiplier >= 0, clipping_norm > 0 and 0 < delta < 1"
            )


def noise_for_epsilon(epsilon: float, rounds: int, delta: float = 1e-5) -> float:
    """The smallest noise multiplier (to 0.1 %) whose ``rounds`` Gaussian releases spend at
    most ``epsilon`` at ``delta`` by the RDP accountant, every site in every round (what
    :class:`Privacy` counts).

    >>> round(noise_for_epsilon(7.077, 2), 2)
    1.0
    """
    if epsilon <= 0 or rounds < 1:
        raise TwinkitError("epsilon must be positive and rounds at least 1")
    from dp_accounting import GaussianDpEvent
    from dp_accounting.rdp import RdpAccountant as GoogleRdp

    def spent(z: float) -> float:
        accountant = GoogleRdp()
        accountant.compose(GaussianDpEvent(z), count=rounds)
        return float(accountant.get_epsilon(delta))

    low, high = 0.01, 1.0
    while spent(high) > epsilon:
        low, high = high, high * 2
    while high - low > 1e-3 * high:
        middle = (low + high) / 2
        low, high = (middle, high) if spent(middle) > epsilon else (low, middle)
    return high


def make_strategy(
    name: str,
    sites: int,
    options: dict[str, Any] | None = None,
    privacy: Privacy | None = None,
) -> tuple[Strategy, Tally]:
    """Flower's strategy ``name`` over ``sites`` sites (all of them in every round, each
    weighted by its windows where the strategy weighs, equally under ``privacy``), with
    ``options`` over twinkit's defaults; and the :class:`Tally` it fills of each round."""
    if name not in STRATEGIES:
        raise TwinkitError(f"unknown strategy {name!r}; choose among {', '.join(STRATEGIES)}")
    if privacy is not None and name not in PRIVATE_STRATEGIES:
        raise TwinkitError(
            f"differential privacy is accounted for {' and '.join(PRIVATE_STRATEGIES)} only "
            f"(a plain mean of the sites' updates), not {name!r}"
        )
    cls, defaults = STRATEGIES[name]
    settings = {**defaults, **(options or {})}
    if name == "fedtrimmedavg" and "beta" not in settings:
        # Flower trims int(beta * n) per side: at least one site each side where it can
        settings["beta"] = min(0.49, max(0.2, 1 / sites + 1e-9))
    if name == "multikrum":
        settings.setdefault("num_nodes_to_select", max(1, sites - settings["num_malicious_nodes"]))
    if privacy is not None:
        settings["weighted_by_key"] = UNIT_WEIGHT
    nodes: dict[str, Any] = {
        "min_train_nodes": sites,
        "min_evaluate_nodes": sites,
        "min_available_nodes": sites,
    }
    tally = Tally()
    try:
        if privacy is None:
            return _recorded(cls, tally)(**nodes, **settings), tally
        accountant = RdpAccountant(
            PrivacyConfig(
                target_delta=privacy.delta,
                population_size=sites,
                neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
                sampling_method=SamplingMethod.NO_AMPLIFICATION,
            )
        )
        private = _recorded(DifferentialPrivacyServerSideFixedClipping, tally)
        strategy = private(
            cls(**nodes, **settings),
            noise_multiplier=privacy.noise_multiplier,
            clipping_norm=privacy.clipping_norm,
            num_sampled_clients=sites,
            accountant=accountant,
        )
        return strategy, tally
    except (TypeError, ValueError) as exc:
        raise TwinkitError(f"strategy {name!r}: {exc}") from None


@dataclass
class Tally:
    """What a strategy's rounds were made of, by node id: whose update each round
    aggregated, how many windows each site trained on, and why a site's reply was an
    error (a site that failed is left out of that round's aggregate)."""

    joined: dict[int, list[int]] = field(default_factory=dict)
    failed: dict[int, dict[int, str]] = field(default_factory=dict)
    windows: dict[int, int] = field(default_factory=dict)

    def note(self, server_round: int, replies: list[Any]) -> None:
        good = [m for m in replies if not m.has_error()]
        self.joined[server_round] = sorted(m.metadata.src_node_id for m in good)
        for m in good:
            self.windows[m.metadata.src_node_id] = int(m.content["metrics"]["num-examples"])
        bad = {m.metadata.src_node_id: str(m.error.reason) for m in replies if m.has_error()}
        if bad:
            self.failed[server_round] = bad


def _recorded(cls: type[Any], tally: Tally) -> type[Any]:
    """``cls``, noting in ``tally`` what each round's aggregate is made of."""

    class Recorded(cls):  # type: ignore[misc]
        def aggregate_train(self, server_round: int, replies: Any) -> Any:
            replies = list(replies)
            tally.note(server_round, replies)
            return super().aggregate_train(server_round, replies)

    Recorded.__name__ = Recorded.__qualname__ = f"Recorded{cls.__name__}"
    return Recorded


def weights_digest(state: Mapping[str, Any]) -> str:
    """sha256 of a network's weights (names, shapes and float32 values, in name order)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        value = np.ascontiguousarray(np.asarray(state[name], dtype=np.float32))
        digest.update(f"{name}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()
