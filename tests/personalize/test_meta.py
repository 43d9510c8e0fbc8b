"""Reptile meta-learning of the population prior, for twins with one day of data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.models.gru import GRUAttention
from twinkit.personalize.meta import ReptileSettings, meta_learn


def small() -> GRUAttention:
    return GRUAttention(hidden=8, epochs=3, context_min=60, max_horizon_min=30)


def histories(seed: int) -> list[pd.DataFrame]:
    cohort = synthetic_cohort(n_twins=3, days=3, seed=seed)
    out = []
    for _, rows in cohort.groupby("twin_id"):
        frame = rows.pivot_table(index="time", columns="channel", values="value")
        frame.columns.name = None
        out.append(frame)
    return out


def test_reptile_moves_the_weights_reproducibly_and_adapts_to_a_day() -> None:
    # Prepare
    train = histories(seed=0)
    settings = ReptileSettings(meta_iterations=20, inner_steps=3)

    # Execute
    pooled = small().fit_population(train)
    meta = meta_learn(small(), train, settings)
    again = meta_learn(small(), train, settings)
    new_twin = histories(seed=9)[0]
    first_day = new_twin.loc[: new_twin.index[0] + pd.Timedelta("24h")]
    adapted = meta.personalize(first_day)

    # Assert
    a, b, c = meta.get_state()[0], again.get_state()[0], pooled.get_state()[0]
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.allclose(a[k], c[k]) for k in a)
    assert meta.scaler is None
    forecast = adapted.predict(new_twin, [15, 30])
    assert np.isfinite(forecast.mean).all()


def test_an_engine_prior_is_meta_learned_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``fit_population(meta=False)`` pools the twins' data (``fit_population``), with
    ``meta=True`` it runs Reptile, and a model without weights refuses meta-learning."""
    # Prepare: two twins; meta_learn recorded, run short
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    cohort = synthetic_cohort(n_twins=2, days=2, seed=0)
    for twin in ("synth-001", "synth-002"):
        engine.create_twin(twin, "state")
    engine.ingest(cohort)
    called: list[str] = []

    def recorded(model: GRUAttention, histories: list[pd.DataFrame], *_: object) -> None:
        called.append(model.name)
        meta_learn(model, histories, ReptileSettings(meta_iterations=2, inner_steps=1))

    monkeypatch.setattr("twinkit.personalize.meta.meta_learn", recorded)
    tiny = {"hidden": 4, "epochs": 1, "context_min": 60, "max_horizon_min": 30}

    # Execute / Assert
    engine.fit_population("gru", params=tiny)
    assert called == []
    engine.fit_population("gru", params=tiny, meta=True)
    assert called == ["gru"]
    with pytest.raises(TwinkitError, match="cannot be meta-learned"):
        engine.fit_population("linear_ar", meta=True)
