"""`twinkit eval forecast` on a tiny file: the JSON layout and honest splits."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from twinkit.cli import main
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.eval.forecast_benchmark import evaluate_forecasts, split_twins


def test_eval_command_writes_the_documented_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Prepare: a tiny file with gaps and irregular timestamps
    frame = synthetic_cohort(n_twins=3, days=3, seed=2)
    rng = np.random.default_rng(0)
    frame = frame.drop(index=frame.index[500:540])  # a gap of over three hours in one twin
    jitter = rng.integers(-30, 30, len(frame))
    frame["time"] = frame["time"] + np.array(jitter, dtype="timedelta64[s]")
    frame["time"] = frame["time"].map(lambda t: t.isoformat())
    data = tmp_path / "signals.csv"
    frame.to_csv(data, index=False)
    out = tmp_path / "report.json"
    monkeypatch.setattr(
        sys,
        "argv",
        ["twinkit", "eval", "forecast", str(data), "--target", "glucose", "--horizons",
         "30,60", "--models", "persistence,linear_ar", "--max-origins", "40", "--json", str(out)],
    )  # fmt: skip

    # Execute
    with pytest.raises(SystemExit) as done:
        main()

    # Assert
    assert done.value.code == 0
    report = json.loads(out.read_text())
    assert set(report) >= {"models", "data", "seed"}
    for name in ("persistence", "linear_ar"):
        pooled = report["models"][name]["pooled"]
        assert set(pooled) == {"30", "60"}
        assert set(pooled["30"]) >= {"rmse", "mae", "coverage90", "width90"}
        assert len(report["models"][name]["per_twin"]) == 3
    assert "linear_ar" in capsys.readouterr().out


def test_split_is_temporal_and_origins_are_in_the_test_part() -> None:
    # Prepare
    frame = synthetic_cohort(n_twins=2, days=2, seed=0)

    # Execute
    splits, skipped = split_twins(frame, "glucose", train_frac=0.7, max_origins=50)

    # Assert
    assert not skipped
    for s in splits:
        assert s.train.index.max() < s.split
        assert (s.origins >= s.split).all()
        assert len(s.origins) == 50


def test_cold_start_limits_what_personal_models_see() -> None:
    frame = synthetic_cohort(n_twins=1, days=4, seed=1)
    (twin,), _ = split_twins(frame, "glucose", train_frac=0.7, max_origins=10)
    import pandas as pd

    first_day = twin.personal(pd.Timedelta("24h"))
    assert first_day.index.max() - first_day.index.min() <= pd.Timedelta("24h")


def test_evaluate_reports_a_model_that_cannot_fit_instead_of_crashing() -> None:
    # One day of data, and a model asked to look two hours ahead with a long context
    frame = synthetic_cohort(n_twins=2, days=1, seed=0)
    report = evaluate_forecasts(
        frame,
        "glucose",
        [30],
        models=["linear_ar"],
        model_params={"linear_ar": {"lags": 200}},
        max_origins=10,
    )
    assert len(report["models"]["linear_ar"]["failed"]) == 2


def test_eval_command_refuses_a_decisions_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "decisions.csv"
    data.write_text("twin_id,item_id,f0,label\np1,a,1.0,x\np1,b,2.0,y\n")
    monkeypatch.setattr(sys, "argv", ["twinkit", "eval", "forecast", str(data)])

    with pytest.raises(SystemExit) as done:
        main()

    assert done.value.code == 1
    assert "needs a signals file" in capsys.readouterr().err
