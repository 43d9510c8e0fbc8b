"""The outside comparators of `twinkit eval forecast` and its 15-minute downsampling."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.cli import main
from twinkit.core.errors import TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.data.frames import downsample
from twinkit.eval.comparators import COMPARATORS, PlainRidge
from twinkit.eval.forecast_benchmark import evaluate_forecasts


def _one_twin() -> pd.DataFrame:
    frame = synthetic_cohort(n_twins=1, days=3, seed=4)
    wide = frame.pivot_table(index="time", columns="channel", values="value")
    wide.columns.name = None
    return wide


@pytest.mark.parametrize("name", sorted(COMPARATORS))
def test_each_comparator_forecasts_with_ordered_quantiles(name: str) -> None:
    if name != "plain_ridge":
        pytest.importorskip("statsforecast")
    wide = _one_twin()
    model = COMPARATORS[name](target="glucose", max_horizon_min=60).fit(wide.iloc[:-100])
    forecast = model.predict(wide.iloc[:-40], [30, 60])
    assert forecast.mean.shape == (2,)
    levels = sorted(forecast.quantiles)
    bands = np.stack([forecast.quantiles[q] for q in levels])
    assert np.all(np.diff(bands, axis=0) >= -1e-9)  # 5% <= 10% <= ... <= 95%
    assert np.all(np.abs(forecast.mean - wide["glucose"].iloc[-41]) < 100)
    with pytest.raises(TwinkitError, match="comparator for evaluation"):
        model.get_state()


def test_plain_ridge_reads_two_hours_of_changes_at_any_interval() -> None:
    wide = _one_twin()
    five = PlainRidge(max_horizon_min=60).fit(wide)
    long = wide.reset_index().melt(id_vars="time", var_name="channel").dropna()
    fifteen = downsample(long.assign(twin_id="a"), 15)
    wide15 = fifteen.pivot_table(index="time", columns="channel", values="value")
    assert (five.lags, PlainRidge(max_horizon_min=60).fit(wide15).lags) == (25, 9)


def test_downsampling_keeps_the_first_reading_and_sums_events() -> None:
    t = pd.date_range("2026-01-01", periods=6, freq="5min", tz="UTC")
    long = pd.concat(
        [
            pd.DataFrame({"twin_id": "a", "time": t, "channel": "glucose",
                          "value": [100.0, 101, 102, 103, 104, 105]}),
            pd.DataFrame({"twin_id": "a", "time": t[:3], "channel": "carbs",
                          "value": [10.0, 0, 20]}),
        ]
    )  # fmt: skip
    out = downsample(long, 15)
    assert out.loc[out["channel"] == "glucose", "value"].tolist() == [100.0, 103.0]
    assert out.loc[out["channel"] == "carbs", "value"].tolist() == [30.0]
    assert out["time"].min() == t[0]


def test_the_command_downsamples_and_scores_the_comparators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = synthetic_cohort(n_twins=2, days=4, seed=5)
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    data = tmp_path / "signals.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "report.json"
    monkeypatch.setattr(
        sys,
        "argv",
        ["twinkit", "eval", "forecast", str(data), "--models", "persistence,linear_ar,plain_ridge",
         "--every", "15", "--max-origins", "30", "--json", str(out),
         "--html", str(tmp_path / "eval.html")],
    )  # fmt: skip
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    report = json.loads(out.read_text())
    assert report["data"]["every_min"] == 15
    page = (tmp_path / "eval.html").read_text()
    assert "<h1>twinkit eval forecast</h1>" in page and "<td>plain_ridge</td>" in page
    assert "RMSE / MAE +30 min" in page and "<td>every min</td><td>15.0</td>" in page
    assert set(report["models"]) == {"persistence", "linear_ar", "plain_ridge"}
    for result in report["models"].values():
        assert len(result["per_twin"]) == 2 and not result["failed"]


def test_evaluate_forecasts_knows_the_comparators_by_name() -> None:
    frame = synthetic_cohort(n_twins=1, days=3, seed=6)
    report = evaluate_forecasts(frame, "glucose", [30], models=["plain_ridge"], max_origins=20)
    assert report["models"]["plain_ridge"]["pooled"]["30"]["rmse"] > 0
