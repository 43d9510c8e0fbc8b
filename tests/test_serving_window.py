"""A served forecast reads only the rows its model can depend on, so its cost does not grow
with the twin's history, and answers exactly what the whole history would give."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from twinkit.engine import TwinEngine
from twinkit.store import observations

DAYS = 10
STEP_MIN = 5


def _history(twin: str, carbs: bool) -> pd.DataFrame:
    """Ten days of 5-minute glucose (a few readings missing), and meals if ``carbs``."""
    n = DAYS * 24 * 60 // STEP_MIN
    rng = np.random.default_rng(3)
    time = pd.date_range("2026-01-01", periods=n, freq=f"{STEP_MIN}min", tz="UTC")
    glucose = 130 + 30 * np.sin(np.arange(n) / 288 * 2 * np.pi) + rng.normal(0, 2, n)
    keep = np.ones(n, dtype=bool)
    keep[[n - 7, n - 40, 500]] = False  # missed readings, bridged by the grid
    rows = pd.DataFrame(
        {"twin_id": twin, "time": time, "channel": "glucose", "value": glucose.round(1)}
    ).loc[keep]
    if carbs:
        meals = time[np.arange(100, n, 96)]
        rows = pd.concat(
            [
                rows,
                pd.DataFrame({"twin_id": twin, "time": meals, "channel": "carbs", "value": 40.0}),
            ]
        )
    return rows


@pytest.fixture
def rows_read(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of rows each call of ``observations.read_signals`` returns, in order."""
    counts: list[int] = []
    original = observations.read_signals

    def counting(*args: Any, **kwargs: Any) -> pd.DataFrame:
        found = original(*args, **kwargs)
        counts.append(len(found))
        return found

    monkeypatch.setattr(observations, "read_signals", counting)
    return counts


@pytest.mark.parametrize(("model", "carbs"), [("linear_ar", False), ("gp", True)])
def test_a_served_forecast_reads_only_the_models_lookback(
    engine: TwinEngine, rows_read: list[int], model: str, carbs: bool
) -> None:
    # Prepare
    engine.create_twin("p1", "state")
    history = _history("p1", carbs)
    engine.ingest(history, twin="p1")
    engine.fit("p1", model=model, seed=0)
    reach = engine.load_model(engine.version("p1")).lookback_min()
    assert reach is not None
    rows_read.clear()

    # Execute
    served = engine.forecast("p1", horizons=(30, 60))

    # Assert: the rows read cover the lookback (both channels), not the ten days ...
    assert not served.degraded
    assert rows_read, "the forecast read no signals"
    assert rows_read[-1] <= 2 * (reach / STEP_MIN + 1) < len(history) / 10
    # ... and the answer is the one the whole history gives
    whole = engine.predict("p1", horizons=(30, 60))
    assert served.forecast.origin == whole.origin
    np.testing.assert_array_equal(served.forecast.mean, whole.mean)
    for level, values in whole.quantiles.items():
        np.testing.assert_array_equal(served.forecast.quantiles[level], values)


def test_a_failover_still_reads_the_whole_history(engine: TwinEngine, rows_read: list[int]) -> None:
    # Prepare: two versions; the serving one's artifact is gone
    engine.create_twin("p1", "state")
    history = _history("p1", carbs=False)
    engine.ingest(history, twin="p1")
    engine.fit("p1", model="persistence", seed=0)
    assert engine.fit("p1", model="linear_ar", seed=0).promoted
    engine.artifacts.path(engine.version("p1").sha256).unlink()
    rows_read.clear()

    # Execute
    served = engine.forecast("p1", horizons=(30,))

    # Assert: answered by v1 from every stored row
    assert served.degraded and served.forecast.version == 1
    assert rows_read == [len(history)]
