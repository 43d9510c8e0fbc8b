"""Neural forecasters: calibration, personalisation, known-future covariates, ONNX export."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from twinkit.core.errors import ForecastInputError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.models import GRUAttention, Persistence, TransformerForecaster
from twinkit.models.evaluate import rolling_scores
from twinkit.models.neural import NeuralForecaster
from twinkit.models.onnx_export import ONNX_CONFIG_KEY

NEURAL: list[type[NeuralForecaster]] = [GRUAttention, TransformerForecaster]
HAS_ONNXRUNTIME = importlib.util.find_spec("onnxruntime") is not None


def sinusoid(n: int, seed: int, noise: float = 1.0) -> pd.DataFrame:
    """``y``: a sine with an 8-hour period plus N(0, noise) on a 5-minute UTC grid."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    y = 100.0 + 20.0 * np.sin(2 * np.pi * np.arange(n) / 96) + rng.normal(0.0, noise, n)
    return pd.DataFrame({"y": y}, index=index)


def cohort_frames(n_twins: int, days: float, seed: int) -> list[pd.DataFrame]:
    """One wide frame (glucose, carbs) per twin of the synthetic cohort."""
    long = synthetic_cohort(n_twins=n_twins, days=days, seed=seed)
    frames = []
    for _, rows in long.groupby("twin_id"):
        wide = rows.pivot_table(index="time", columns="channel", values="value").sort_index()
        wide.columns.name = None
        wide.index = pd.DatetimeIndex(wide.index)
        frames.append(wide)
    return frames


def meal_twin(
    days: float, seed: int, gain: float = 1.5, peak_min: float = 60.0, meals_per_day: int = 8
) -> pd.DataFrame:
    """Glucose that rises ``gain`` mg/dL per gram of carbs, peaking ``peak_min`` after a meal.

    Meals come at random times, so nothing in the past tells when the next one comes.
    """
    rng = np.random.default_rng(seed)
    n = int(days * 288)
    index = pd.date_range("2026-01-05", periods=n, freq="5min", tz="UTC")
    meals = int(days * meals_per_day)
    carbs = np.zeros(n)
    carbs[rng.choice(n, size=meals, replace=False)] = rng.uniform(10, 60, meals)
    lag = np.arange(0, 6 * peak_min, 5.0)
    response = (lag / peak_min) * np.exp(1 - lag / peak_min)
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = 0.9 * noise[i - 1] + rng.normal(0, 2.0)
    glucose = 110 + gain * np.convolve(carbs, response)[:n] + noise
    return pd.DataFrame({"glucose": glucose, "carbs": np.where(carbs > 0, carbs, np.nan)}, index)


def with_planned(frame: pd.DataFrame, origin: pd.Timestamp, ahead_min: int) -> pd.DataFrame:
    """The data up to ``origin`` plus the carbs planned in the next ``ahead_min`` minutes."""
    context = frame.loc[: origin + pd.Timedelta(minutes=ahead_min)].copy()
    context.loc[context.index > origin, "glucose"] = np.nan
    return context


def rmse_with_planned_meals(
    model: NeuralForecaster, frame: pd.DataFrame, split: pd.Timestamp, horizon: int, n: int
) -> float:
    """RMSE at ``horizon`` over ``n`` holdout origins, each told the meals ahead of it."""
    ahead = pd.Timedelta(minutes=horizon)
    times = frame.index[(frame.index >= split) & (frame.index <= frame.index[-1] - ahead)]
    errors = []
    for origin in times[np.linspace(0, len(times) - 1, n).astype(int)]:
        forecast = model.predict(with_planned(frame, origin, horizon), [horizon])
        errors.append(forecast.mean[0] - frame.loc[origin + ahead, "glucose"])
    return float(np.sqrt(np.mean(np.square(errors))))


def test_gru_interval_is_calibrated_and_beats_persistence() -> None:
    # Prepare: a week of sine + N(0, 1); the last quarter is held out
    frame = sinusoid(n=2000, seed=3)
    split = frame.index[1500]
    train = frame.loc[frame.index < split]
    model = GRUAttention(
        target="y", hidden=16, epochs=10, batch_size=64, context_min=60, max_horizon_min=30
    )

    # Execute
    scores = rolling_scores(model.fit(train), frame, split, [15, 30], max_origins=200)
    baseline = Persistence(target="y", max_horizon_min=30).fit(train)
    persistence = rolling_scores(baseline, frame, split, [30], max_origins=200)

    # Assert
    for h in (15, 30):
        assert scores[f"n_{h}"] >= 190
        assert 0.80 <= scores[f"coverage90_{h}"] <= 0.97, scores
    assert scores["rmse_30"] < persistence["rmse_30"], (scores, persistence)


def test_personalize_beats_the_population_on_an_unusual_twin() -> None:
    # Prepare: a population of ordinary twins; a slow absorber whose glucose keeps rising
    # for 2.5 h after a meal and twice as steeply as the population's
    population_frames = cohort_frames(n_twins=3, days=2, seed=0)
    twin = meal_twin(days=6, seed=100, gain=2.0, peak_min=150.0, meals_per_day=3)
    split = twin.index[int(len(twin) * 0.75)]
    population = GRUAttention(
        hidden=16, epochs=10, batch_size=64, context_min=60, max_horizon_min=60
    ).fit_population(population_frames)

    # Execute
    personal = population.personalize(twin.loc[twin.index < split])
    general = rolling_scores(population, twin, split, [30, 60], max_origins=100)
    own = rolling_scores(personal, twin, split, [30, 60], max_origins=100)

    # Assert
    assert population.scaler is None
    assert personal.scaler is not None
    assert own["rmse_60"] < general["rmse_60"], (own, general)
    assert own["score"] < general["score"], (own, general)


def test_known_future_covariates_help() -> None:
    # Prepare: meals at random times; glucose peaks an hour after each
    frame = meal_twin(days=4, seed=0)
    split = frame.index[int(len(frame) * 0.75)]
    train = frame.loc[frame.index < split]

    def trained(known: bool) -> GRUAttention:
        # lr 1e-2: with few meals to learn from, the default needs about twice the epochs
        return GRUAttention(
            future_covariates=known,
            hidden=16,
            epochs=20,
            batch_size=64,
            lr=1e-2,
            context_min=30,
            max_horizon_min=60,
        ).fit(train)

    # Execute
    told, blind = trained(known=True), trained(known=False)
    rmse_told = rmse_with_planned_meals(told, frame, split, 60, n=80)
    rmse_blind = rmse_with_planned_meals(blind, frame, split, 60, n=80)

    # Assert
    assert rmse_told < 0.8 * rmse_blind, (rmse_told, rmse_blind)


@pytest.mark.parametrize("cls", NEURAL, ids=lambda cls: cls.name)
def test_future_covariates_false_ignores_planned_meals(cls: type[NeuralForecaster]) -> None:
    # Prepare
    frame = meal_twin(days=2, seed=1)
    origin = frame.index[400]
    past_only = frame.loc[:origin]
    planned = with_planned(frame, origin, 60)
    planned.loc[origin + pd.Timedelta(minutes=10), "carbs"] = 80.0  # a meal is coming

    # Execute
    forecasts = {}
    for known in (True, False):
        model = cls(hidden=8, epochs=2, context_min=30, max_horizon_min=60, future_covariates=known)
        model.fit(frame)
        forecasts[known] = (model.predict(past_only, [60]), model.predict(planned, [60]))

    # Assert
    for first, second in forecasts.values():
        assert first.origin == second.origin == origin
    blind_past, blind_planned = forecasts[False]
    np.testing.assert_array_equal(blind_past.mean, blind_planned.mean)
    told_past, told_planned = forecasts[True]
    assert not np.array_equal(told_past.mean, told_planned.mean)


@pytest.mark.parametrize("cls", NEURAL, ids=lambda cls: cls.name)
def test_population_model_round_trips_and_scales_by_context(cls: type[NeuralForecaster]) -> None:
    # Prepare
    frames = cohort_frames(n_twins=2, days=1, seed=2)
    model = cls(hidden=8, epochs=2, context_min=30, max_horizon_min=30).fit_population(frames)
    shifted = frames[0].assign(glucose=frames[0]["glucose"] + 50.0)

    # Execute
    tensors, config = model.get_state()
    loaded = cls.from_state(tensors, json.loads(json.dumps(config)))
    forecast = model.predict(frames[0], [30])

    # Assert: no stored scaler, so a twin 50 mg/dL higher gets the same forecast + 50
    assert config["scaler"] is None
    np.testing.assert_array_equal(loaded.predict(frames[0], [30]).mean, forecast.mean)
    np.testing.assert_allclose(model.predict(shifted, [30]).mean, forecast.mean + 50.0, atol=1e-3)


def test_personalize_returns_a_new_model_and_leaves_the_population_alone() -> None:
    # Prepare
    frames = cohort_frames(n_twins=3, days=1, seed=4)
    population = GRUAttention.tiny(target="glucose").fit_population(frames[:2])
    before, _ = population.get_state()

    # Execute
    personal = population.personalize(frames[2], epochs=2)

    # Assert
    after, _ = population.get_state()
    assert personal is not population
    assert population.scaler is None
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])
    assert any(not np.array_equal(before[k], personal.get_state()[0][k]) for k in before)


def test_too_few_windows_says_how_much_data_is_needed() -> None:
    # Prepare: 20 readings cannot give 32 windows of 12
    frame = sinusoid(n=20, seed=0)

    # Execute / Assert
    with pytest.raises(ForecastInputError, match=r"found 9 gap-free windows.* h of data"):
        GRUAttention.tiny().fit(frame)


def test_gap_before_the_origin_raises() -> None:
    # Prepare: the last half hour before the latest reading is missing
    frame = sinusoid(n=300, seed=0)
    model = GRUAttention.tiny().fit(frame)
    gappy = pd.concat([frame.iloc[:-8], frame.iloc[-1:]])

    # Execute / Assert
    with pytest.raises(ForecastInputError, match="gap"):
        model.predict(gappy, [15])
    with pytest.raises(ForecastInputError, match="30 min"):
        model.predict(frame.iloc[-3:], [15])


def test_missing_event_channel_means_no_events_but_missing_level_raises() -> None:
    # Prepare
    frame = meal_twin(days=2, seed=3).assign(heart_rate=70.0)
    model = GRUAttention(hidden=8, epochs=2, context_min=30, max_horizon_min=30).fit(frame)
    planned = with_planned(frame, frame.index[-10], 30)  # heart rate recorded after it too

    # Execute
    without_carbs = model.predict(frame.drop(columns="carbs").iloc[-100:], [30])
    inputs = model.network_inputs(planned)

    # Assert
    assert model.covariate_names == ("carbs", "heart_rate")
    assert np.isfinite(without_carbs.mean).all()
    assert not inputs.future[0, :, 1].any(), "a level is never known ahead"
    with pytest.raises(ForecastInputError, match="heart_rate"):
        model.predict(frame.drop(columns="heart_rate"), [30])


def test_fit_and_predict_leave_torch_global_state_alone() -> None:
    # Prepare
    threads = torch.get_num_threads()
    rng_state = torch.get_rng_state()

    # Execute
    TransformerForecaster.tiny().fit(sinusoid(n=300, seed=1)).predict(sinusoid(300, 1), [5])

    # Assert
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.get_rng_state(), rng_state)


@pytest.mark.skipif(not HAS_ONNXRUNTIME, reason="onnxruntime not installed (edge extra)")
# the export is torch.export-based: the deprecated TorchScript exporter would warn
@pytest.mark.filterwarnings("error:You are using the legacy TorchScript-based ONNX export")
@pytest.mark.parametrize("cls", NEURAL, ids=lambda cls: cls.name)
def test_onnx_export_matches_torch(cls: type[NeuralForecaster], tmp_path: Path) -> None:
    import onnx
    import onnxruntime

    # Prepare
    frame = meal_twin(days=2, seed=5)
    model = cls(hidden=8, epochs=2, context_min=30, max_horizon_min=30).fit(frame)
    inputs = [model.network_inputs(frame.iloc[: -k or None]) for k in (0, 7, 50)]
    past = np.concatenate([i.past for i in inputs])  # a batch of 3: the batch axis is dynamic
    future = np.concatenate([i.future for i in inputs])

    # Execute
    path = model.export_onnx(tmp_path / "model.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    output = session.run(None, {"past": past, "future": future})[0]
    assert model.network is not None
    with torch.no_grad():
        expected = model.network(torch.from_numpy(past), torch.from_numpy(future)).numpy()

    # Assert
    np.testing.assert_allclose(output, expected, atol=1e-4)
    forecast = model.forecast_from_output(output[:1], model.network_inputs(frame, [15, 30]))
    np.testing.assert_allclose(forecast.mean, model.predict(frame, [15, 30]).mean, atol=1e-3)
    metadata = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(metadata[ONNX_CONFIG_KEY]) == json.loads(json.dumps(model.config()))
