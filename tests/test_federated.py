"""Federated population priors on Flower's simulation engine: the maths of one round, and
a prior registered, recorded in the ledger and personalised from like a pooled one."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.engine.population import Federation

pytest.importorskip("flwr")
from twinkit.federated import Attacker, LocalTraining, federate, train_locally
from twinkit.federated.local import split_site
from twinkit.federated.strategies import Privacy, make_strategy
from twinkit.models.gru import GRUAttention

pytestmark = pytest.mark.slow

TINY: dict[str, Any] = {"hidden": 4, "context_min": 60, "max_horizon_min": 30, "batch_size": 64}


def _histories(n: int, days: int = 2) -> list[pd.DataFrame]:
    cohort = synthetic_cohort(n_twins=n, days=days, seed=0)
    return [
        rows.pivot_table(index="time", columns="channel", values="value")
        for _, rows in cohort.groupby("twin_id")
    ]


def test_one_fedavg_round_of_one_sgd_step_is_the_pooled_gradient_step() -> None:
    """FedAvg weighs each site by its windows; one full-batch SGD step per site averages
    to one full-batch step on all windows pooled, since the pooled mean loss is the
    window-weighted mean of the sites' mean losses."""
    # Prepare: three sites of unequal size
    histories = _histories(4)
    sites = {"a": histories[:2], "b": histories[2:3], "c": histories[3:]}
    step = LocalTraining(epochs=1, lr=0.5, batch_size=10**6, optimizer="sgd", clip=None)
    template = GRUAttention(**TINY, seed=3)

    environment = dict(os.environ)

    # Execute
    result = federate(template, sites, rounds=1, local=step, seed=0)

    # Assert: Ray's changes to the environment (PYTHONPATH, ...) do not outlive the run
    assert dict(os.environ) == environment

    # Assert: the same step taken on every site's training windows pooled
    channels = sorted(c for c in histories[0].columns if c != "glucose")
    pooled = copy.deepcopy(template).initialise(5.0, channels)
    assert pooled.network is not None and result.model.network is not None
    windows = []
    for site in sites.values():
        windows += split_site(pooled.site_windows(site), pooled.n_steps)[0]
    start = {k: v.clone() for k, v in pooled.network.state_dict().items()}
    train_locally(pooled.network, windows, step, seed=0)
    moved = 0.0
    for name, value in result.model.network.state_dict().items():
        expected = pooled.network.state_dict()[name]
        torch.testing.assert_close(value, expected, atol=2e-6, rtol=1e-5)
        moved = max(moved, float((expected - start[name]).abs().max()))
    assert moved > 1e-3  # the step moved the weights: the equality is not trivial
    per_site = [split_site(pooled.site_windows(s), pooled.n_steps)[0] for s in sites.values()]
    assert result.windows == [sum(len(w) for w in site) for site in per_site]
    assert result.joined == {1: ["a", "b", "c"]} and len(result.aggregates) == 2


def test_a_federated_prior_is_registered_recorded_and_personalised_from_despite_a_failure(
    tmp_path: Path,
) -> None:
    # Prepare: four twins of one owner, two sites
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    cohort = synthetic_cohort(n_twins=4, days=3, seed=0)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    failing = {1: Attacker("fail", rounds=frozenset({1}))}  # site 2 misses round 1

    # Execute
    result = engine.fit_population(
        "gru", params=TINY, federation=Federation(sites=2, rounds=2, attackers=failing), seed=0
    )

    # Assert: registered like a pooled prior, the run in the ledger without twin ids
    assert result.federation is not None and len(result.twins) == 4
    entry = [e for e in engine.history() if e.event == "population_registered"][-1]
    record = entry.payload["federation"]
    assert entry.payload["training"] == "federated" and record["strategy"] == "fedavg"
    pseudonyms = [s["site"] for s in record["sites"]]
    assert len(set(pseudonyms)) == 2 and [s["twins"] for s in record["sites"]] == [2, 2]
    assert not any(t in p for t in result.twins for p in pseudonyms)
    # the failing site left out of round 1 only, and the run completed
    assert {r: sorted(s) for r, s in record["joined"].items()} == {
        "1": [pseudonyms[0]],
        "2": sorted(pseudonyms),
    }
    assert record["attackers"] == {pseudonyms[1]: "fail"}
    assert list(record["failures"]) == ["1"] and list(record["failures"]["1"]) == [pseudonyms[1]]
    assert "cannot take part in round 1" in record["failures"]["1"][pseudonyms[1]]
    assert len(record["aggregates"]) == 3 and len(set(record["aggregates"])) == 3
    assert set(record["held_loss"]) == {"1", "2"}
    # a twin's fit starts from it as from a pooled prior
    fitted = engine.fit("synth-001", candidates=["population"])
    assert fitted.promoted, fitted
    forecast = engine.forecast("synth-001", (30,)).forecast
    assert np.isfinite(forecast.mean).all()


def test_a_sign_flipping_site_breaks_fedavg_and_not_the_median() -> None:
    """One site of four sends its update negated and scaled by 10 every round: FedAvg's
    global model loses its accuracy on the sites' held-out windows, the coordinate-wise
    median keeps it."""
    # Prepare
    sites = {f"s{i}": [h] for i, h in enumerate(_histories(4))}
    bad = {"s0": Attacker("sign_flip", factor=10.0)}

    def held(strategy: str, attackers: dict[str, Attacker] | None) -> float:
        result = federate(
            GRUAttention(**TINY, seed=0), sites, strategy=strategy, rounds=2, attackers=attackers
        )
        return result.held_loss[2]

    # Execute
    clean = held("fedavg", None)
    poisoned_mean = held("fedavg", bad)
    poisoned_median = held("fedmedian", bad)

    # Assert
    assert poisoned_mean > 1.3 * clean, (clean, poisoned_mean)
    assert poisoned_median < 1.05 * clean, (clean, poisoned_median)


def test_differential_privacy_spends_the_epsilon_the_accountant_library_computes() -> None:
    """Every site clipped and Gaussian noise on their mean, every round: the epsilon
    reported is Google's dp-accounting RDP figure for that many Gaussian releases of that
    noise multiplier (no amplification: every site takes part in every round)."""
    dp_accounting = pytest.importorskip("dp_accounting")
    # Prepare
    sites = {f"s{i}": [h] for i, h in enumerate(_histories(3))}
    privacy = Privacy(noise_multiplier=1.0, clipping_norm=0.5, delta=1e-5)

    # Execute
    result = federate(GRUAttention(**TINY, seed=0), sites, rounds=2, privacy=privacy)

    # Assert
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(1.0), count=2)
    assert result.privacy is not None
    assert result.privacy["epsilon"] == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-6)
    assert result.privacy["delta"] == 1e-5 and result.joined == {1: list(sites), 2: list(sites)}
    # a median's sensitivity is not a mean's: no accounted privacy for it
    with pytest.raises(TwinkitError, match="accounted for fedavg and fedprox only"):
        make_strategy("fedmedian", 3, privacy=privacy)


def test_secure_aggregation_gives_the_plain_mean_and_refuses_what_needs_each_update() -> None:
    """SecAgg+ masks each site's update; the server's sum, unmasked, is the sites' equally
    weighted mean up to the protocol's quantisation (about 4e-6 per weight)."""
    # Prepare: one full-batch SGD step per site, so nothing amplifies the rounding
    sites = {"a": _histories(3)[:1], "b": _histories(3)[1:2], "c": _histories(3)[2:]}
    step = LocalTraining(epochs=1, lr=0.5, batch_size=10**6, optimizer="sgd", clip=None)
    template = GRUAttention(**TINY, seed=3)
    equal = {"weighted_by_key": "unit-weight"}

    # Execute
    secure = federate(template, sites, rounds=1, local=step, seed=0, secure=True)
    plain = federate(template, sites, rounds=1, local=step, seed=0, options=equal)

    # Assert
    assert secure.model.network is not None and plain.model.network is not None
    moved = 0.0
    channels = sorted(c for c in sites["a"][0].columns if c != "glucose")
    start = copy.deepcopy(template).initialise(5.0, channels).network
    assert start is not None
    for name, value in plain.model.network.state_dict().items():
        torch.testing.assert_close(
            secure.model.network.state_dict()[name], value, atol=5e-5, rtol=0
        )
        moved = max(moved, float((value - start.state_dict()[name]).abs().max()))
    assert moved > 1e-3  # the step moved the weights far beyond the tolerance
    assert secure.joined == {1: ["a", "b", "c"]} and len(secure.aggregates) == 2
    with pytest.raises(TwinkitError, match="needs every site's update"):
        federate(template, sites, strategy="fedmedian", rounds=1, secure=True)
    with pytest.raises(TwinkitError, match="choose one"):
        federate(template, sites, rounds=1, secure=True, privacy=Privacy())
