"""Choosing a twin's personal model, and population priors in the engine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import twinkit.models.gru  # noqa: F401  (registers "gru")
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.models.ensemble import Ensemble
from twinkit.models.evaluate import RollingForecasts
from twinkit.models.linear_ar import LinearAR
from twinkit.personalize import select_personal_model
from twinkit.personalize.select import _prefer_prior, _settle

TINY_GRU = {"hidden": 8, "epochs": 4, "context_min": 60, "batch_size": 128}


def wide(frame: pd.DataFrame, twin_id: str) -> pd.DataFrame:
    rows = frame[frame["twin_id"] == twin_id]
    out = rows.pivot_table(index="time", columns="channel", values="value")
    out.columns.name = None
    return out


def noisy_wave(n: int, seed: int) -> pd.DataFrame:
    idx = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    rng = np.random.default_rng(seed)
    y = 120 + 25 * np.sin(np.arange(n) * 2 * np.pi / 288) + rng.normal(0, 1, n)
    return pd.DataFrame({"glucose": y}, index=idx)


def test_selection_picks_the_better_candidate_and_reports_failures() -> None:
    # Prepare: a smooth wave, where the AR model beats persistence; no population model
    history = noisy_wave(1200, seed=0)

    # Execute
    selection = select_personal_model(
        history, "glucose", ("persistence", "linear_ar", "personalized"), horizons=(30, 60)
    )

    # Assert
    assert selection.chosen == "linear_ar"
    assert selection.scores["linear_ar"]["score"] < selection.scores["persistence"]["score"]
    assert "personalized" in selection.failed
    assert isinstance(selection.model, Ensemble)  # the winner, recalibrated
    assert selection.model.members_names == ("linear_ar",)


def test_ensemble_candidate_combines_the_others_and_round_trips() -> None:
    history = noisy_wave(1200, seed=1)
    selection = select_personal_model(
        history,
        "glucose",
        ("linear_ar", "ensemble", "persistence"),
        horizons=(30,),
    )
    assert "ensemble" in selection.scores
    assert isinstance(selection.model, Ensemble)
    if selection.chosen == "ensemble":
        restored = Ensemble.from_state(*selection.model.get_state())
        assert np.array_equal(
            restored.predict(history, [30]).mean, selection.model.predict(history, [30]).mean
        )


def test_engine_population_prior_and_auto_fit(tmp_path: Path) -> None:
    # Prepare: three twins of a cohort with meals as a known covariate
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    cohort = synthetic_cohort(n_twins=3, days=4, seed=4)
    for twin_id in sorted(cohort["twin_id"].unique()):
        engine.create_twin(str(twin_id), "state")
    engine.ingest(cohort)

    # Execute
    population = engine.fit_population(
        "gru", twin_ids=["synth-002", "synth-003"], params={**TINY_GRU, "max_horizon_min": 60}
    )
    result = engine.fit("synth-001", horizons=(30, 60))

    # Assert
    assert population.version == 1
    assert population.twins == ["local/synth-002", "local/synth-003"]
    assert result.selection is not None
    assert result.selection["population_version"] == 1
    assert set(result.selection["candidates"]) >= {"linear_ar", "population", "personalized"}
    assert result.model == result.selection["chosen"]
    assert result.model in {"linear_ar", "population", "personalized", "ensemble"}
    forecast = engine.predict("synth-001", [30, 60])
    assert forecast.version == result.version
    assert engine.verify().ok
    loaded = engine.population()
    assert loaded is not None
    assert loaded[0].version == 1


def test_tampered_population_artifact_is_caught(tmp_path: Path) -> None:
    engine = TwinEngine(f"sqlite:///{tmp_path}/t.db")
    cohort = synthetic_cohort(n_twins=2, days=3, seed=5)
    for twin_id in sorted(cohort["twin_id"].unique()):
        engine.create_twin(str(twin_id), "state")
    engine.ingest(cohort)
    result = engine.fit_population("gru", params={**TINY_GRU, "max_horizon_min": 30})
    path = engine.artifacts.path(result.sha256)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))

    report = engine.verify()

    assert not report.ok
    assert any("population model v1" in p for p in report.problems)
    from twinkit.core.errors import IntegrityError

    with pytest.raises(IntegrityError):
        engine.population()


def test_too_little_validation_to_recalibrate_keeps_the_models_own_intervals() -> None:
    # Prepare: barely enough data; at most a handful of scored validation forecasts
    history = noisy_wave(300, seed=4)

    # Execute
    selection = select_personal_model(
        history, "glucose", ("linear_ar",), horizons=(60,), max_origins=8
    )

    # Assert
    assert "recalibration" in selection.failed
    assert selection.model.name == "linear_ar"


def _rolling(errors: np.ndarray) -> RollingForecasts:
    n = len(errors)
    origins = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    truth = np.full((n, 1), 100.0)
    mean = truth + errors[:, None]
    return RollingForecasts(origins, (30,), mean, mean - 10, mean + 10, truth)


def test_prior_is_kept_unless_the_gain_is_beyond_noise() -> None:
    # Prepare: the prior's errors; a candidate a hair better but noisy, and one far better
    rng = np.random.default_rng(0)
    prior = rng.normal(0, 10, 40)
    marginal = prior * 0.98 + rng.normal(0, 5, 40)
    clear = prior * 0.5

    # Execute
    noisy_choice = _prefer_prior(
        "personalized", {"personalized": _rolling(marginal), "population": _rolling(prior)}, [30]
    )
    clear_choice = _prefer_prior(
        "personalized", {"personalized": _rolling(clear), "population": _rolling(prior)}, [30]
    )

    # Assert
    assert noisy_choice == "population"
    assert clear_choice == "personalized"


def test_an_unproven_personal_model_is_hedged_with_the_prior() -> None:
    # Prepare: a personal model only a hair better than the prior (within noise), and the
    # two combined, which scored better or worse than the prior alone
    rng = np.random.default_rng(0)
    prior = rng.normal(0, 10, 40)
    rolling = {
        "personalized": _rolling(prior * 0.98 + rng.normal(0, 5, 40)),
        "population": _rolling(prior),
    }
    better = {
        "population": {"score": 10.0},
        "personalized": {"score": 9.9},
        "ensemble": {"score": 9.5},
    }
    worse = {**better, "ensemble": {"score": 10.5}}

    # Execute
    hedged = _settle("personalized", better, rolling, [30])
    kept = _settle("personalized", worse, rolling, [30])

    # Assert
    assert hedged == "ensemble"
    assert kept == "population"


def test_a_first_day_keeps_the_population_prior() -> None:
    # Prepare: a "population" model fitted elsewhere, and one day of a new twin
    prior = LinearAR(max_horizon_min=60).fit(noisy_wave(2000, seed=7))
    first_day = noisy_wave(288, seed=8)

    # Execute
    selection = select_personal_model(
        first_day, "glucose", ("linear_ar", "population"), population=prior, horizons=(30,)
    )

    # Assert: too few validation forecasts to outvote the prior, nor to recalibrate it
    assert selection.chosen == "population"
    assert selection.model is prior
    assert "recalibration" in selection.failed
