"""Forgetting a person in the population priors: retrained without them from the last
checkpoint before they joined, the old priors withdrawn and their weights deleted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest
import torch

from twinkit.cli.testing import run
from twinkit.core.errors import NotFoundError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.engine.population import Federation
from twinkit.models.neural import NeuralForecaster

pytest.importorskip("flwr")

pytestmark = pytest.mark.slow

TINY: dict[str, Any] = {"hidden": 4, "context_min": 60, "max_horizon_min": 30, "batch_size": 64}


def _engine(path: Path, twins: int) -> TwinEngine:
    engine = TwinEngine(f"sqlite:///{path}")
    cohort = synthetic_cohort(n_twins=twins, days=2, seed=0)
    for twin in sorted(cohort["twin_id"].unique()):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    return engine


def _weights(engine: TwinEngine, version: int) -> dict[str, torch.Tensor]:
    loaded = engine.population(version)
    assert loaded is not None
    network = cast(NeuralForecaster, loaded[1]).network
    assert network is not None
    return dict(network.state_dict())


def test_forgetting_a_twin_that_joined_later_retrains_only_since_and_is_exact(
    tmp_path: Path,
) -> None:
    # Prepare: v1 federated over four twins; v2 goes on from it with two more twins
    engine = _engine(tmp_path / "t.db", 6)
    first = [f"synth-00{i}" for i in range(1, 5)]
    rounds = Federation(sites=2, rounds=2)
    v1 = engine.fit_population("gru", first, params=TINY, federation=rounds)
    later = Federation(sites=2, rounds=2, start_from=v1.version)
    v2 = engine.fit_population("gru", params=TINY, federation=later)
    assert len(v2.twins) == 6 and v2.federation is not None
    assert v2.federation["continues"] == v1.version
    old_sha = engine.populations()[-1].sha256

    # Execute
    forgotten = engine.forget("synth-006")

    # Assert: only v2 retrained (half the rounds of the whole chain), from v1's weights
    assert forgotten.replaced == {v2.version: v2.version + 1}
    assert (forgotten.rounds_retrained, forgotten.rounds_full, forgotten.cost) == (2, 4, 0.5)
    live = {p.version: p for p in engine.populations()}
    assert v2.version not in live and "local/synth-006" not in live[v2.version + 1].twins
    with pytest.raises(NotFoundError):
        engine.population(v2.version)
    assert not engine.artifacts.path(old_sha).exists()  # the weights are gone
    withdrawn = [e for e in engine.history() if e.event == "population_withdrawn"]
    assert [e.payload["replaced_by"] for e in withdrawn] == [v2.version + 1]
    assert withdrawn[0].payload["same_data"] is True
    assert "synth-006" not in str(withdrawn[0].payload)
    # exact: the prior a run without the twin gives, from the same checkpoint
    without = engine.fit_population("gru", [*first, "synth-005"], params=TINY, federation=later)
    replacement, fresh = _weights(engine, v2.version + 1), _weights(engine, without.version)
    for name, value in fresh.items():
        torch.testing.assert_close(replacement[name], value, atol=1e-5, rtol=0)
    # and the personal models start from the replacement
    assert engine.fit("synth-001", candidates=["population"]).promoted


def test_deleting_a_twin_offers_to_forget_it_in_a_pooled_prior(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a pooled prior of three twins
    db = str(tmp_path / "t.db")
    engine = _engine(Path(db), 3)
    prior = engine.fit_population("gru", params={**TINY, "epochs": 2})
    engine.store.dispose()

    # Execute
    code, out, _ = run(capsys, "twin", "delete", "synth-002", "--yes", "--forget", "--db", db)

    # Assert: the prior retrained without the deleted twin, the old one withdrawn
    assert code == 0, out
    assert f"population v{prior.version} withdrawn" in out and "100% of a full retrain" in out
    code, out, _ = run(capsys, "population", "list", "--json", "--db", db)
    listed = {p["version"]: p for p in json.loads(out)}
    assert list(listed) == [prior.version + 1]
    assert listed[prior.version + 1]["twins"] == ["local/synth-001", "local/synth-003"]
    # with --yes alone the priors are kept, and the command says how to forget
    code, out, _ = run(capsys, "twin", "delete", "synth-003", "--yes", "--db", db)
    assert code == 0 and "twinkit federated forget synth-003" in out
