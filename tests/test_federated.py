"""Federated population priors on Flower's simulation engine: the maths of one round, and
a prior registered, recorded in the ledger and personalised from like a pooled one."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.engine.population import Federation

pytest.importorskip("flwr")
from twinkit.federated import LocalTraining, federate, train_locally
from twinkit.federated.local import split_site
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

    # Execute
    result = federate(template, sites, rounds=1, local=step, seed=0)

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


def test_a_federated_prior_is_registered_recorded_and_personalised_from(
    tmp_path: Path,
) -> None:
    # Prepare: four twins of one owner
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    cohort = synthetic_cohort(n_twins=4, days=3, seed=0)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)

    # Execute
    result = engine.fit_population(
        "gru", params=TINY, federation=Federation(sites=2, rounds=2), seed=0
    )

    # Assert: registered like a pooled prior, the run in the ledger without twin ids
    assert result.federation is not None and len(result.twins) == 4
    entry = [e for e in engine.history() if e.event == "population_registered"][-1]
    record = entry.payload["federation"]
    assert entry.payload["training"] == "federated" and record["strategy"] == "fedavg"
    pseudonyms = [s["site"] for s in record["sites"]]
    assert len(set(pseudonyms)) == 2 and [s["twins"] for s in record["sites"]] == [2, 2]
    assert not any(t in p for t in result.twins for p in pseudonyms)
    assert {r: sorted(s) for r, s in record["joined"].items()} == {
        "1": sorted(pseudonyms),
        "2": sorted(pseudonyms),
    }
    assert len(record["aggregates"]) == 3 and len(set(record["aggregates"])) == 3
    assert set(record["held_loss"]) == {"1", "2"}
    # a twin's fit starts from it as from a pooled prior
    fitted = engine.fit("synth-001", candidates=["population"])
    assert fitted.promoted, fitted
    forecast = engine.forecast("synth-001", (30,)).forecast
    assert np.isfinite(forecast.mean).all()
