"""Tests of the simulated simglucose cohort: layout, grid, determinism and the cache."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("simglucose")

from twinkit.core.errors import TwinkitError
from twinkit.core.twin import validate_twin_id
from twinkit.data.datasets import simglucose_cohort
from twinkit.data.datasets.simglucose_cohort import simulate_cohort

# 06:00 to 12:00 holds breakfast and usually lunch, so the carbs channel is not empty.
START = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
DAYS = 0.25


def _simulate(seed: int = 0, cache_dir: Path | None = None) -> pd.DataFrame:
    return simulate_cohort(
        patients=1, days=DAYS, seed=seed, cache_dir=cache_dir, workers=1, start=START
    )


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return _simulate(seed=0)


def test_layout_and_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == ["twin_id", "time", "channel", "value"]
    assert frame["value"].dtype == np.float64
    assert isinstance(frame["time"].dtype, pd.DatetimeTZDtype)
    assert str(frame["time"].dt.tz) == "UTC"
    assert set(frame["twin_id"]) == {"adult-001"}
    validate_twin_id("adult-001")
    assert set(frame["channel"]) == {"glucose", "carbs", "insulin"}
    assert frame["value"].notna().all()


def test_glucose_on_a_regular_five_minute_grid(frame: pd.DataFrame) -> None:
    glucose = frame[frame["channel"] == "glucose"]
    times = pd.DatetimeIndex(glucose["time"])
    assert times[0] == pd.Timestamp(START)
    assert len(times) == round(DAYS * 24 * 12)  # half-open: the end instant is excluded
    assert (times.to_series().diff().dropna() == pd.Timedelta(minutes=5)).all()
    assert glucose["value"].between(10, 600).all()


def test_carbs_and_insulin_are_plausible(frame: pd.DataFrame) -> None:
    carbs = frame[frame["channel"] == "carbs"]["value"]
    insulin = frame[frame["channel"] == "insulin"]
    assert len(carbs) >= 1
    assert (carbs > 0).all()
    assert (carbs == carbs.round()).all()  # simglucose draws whole grams
    # basal never stops, so every 5-minute step delivers some insulin
    assert len(insulin) == round(DAYS * 24 * 12)
    assert (insulin["value"] > 0).all()
    assert insulin["value"].max() > insulin["value"].median()  # a meal bolus


def test_same_seed_same_frame_other_seed_other_meals(frame: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(_simulate(seed=0), frame)
    other = _simulate(seed=1)
    carbs = frame[frame["channel"] == "carbs"].reset_index(drop=True)
    other_carbs = other[other["channel"] == "carbs"].reset_index(drop=True)
    assert not carbs.equals(other_carbs)


def test_cache_round_trip(
    frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _simulate(seed=0, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.parquet"))
    assert len(files) == 1
    pd.testing.assert_frame_equal(first, frame)

    def no_simulation(*args: object) -> pd.DataFrame:
        raise AssertionError("simulated although a cache file was present")

    monkeypatch.setattr(simglucose_cohort, "_simulate_patient", no_simulation)
    pd.testing.assert_frame_equal(_simulate(seed=0, cache_dir=tmp_path), first)
    with pytest.raises(AssertionError, match="simulated although"):
        _simulate(seed=2, cache_dir=tmp_path)  # another key misses the cache


@pytest.mark.parametrize(
    "kwargs",
    [
        {"patients": 0},
        {"patients": 11},
        {"patients": ["adult#042"]},
        {"patients": ["adult#001", "adult#001"]},
        {"days": 0},
        {"seed": -1},
        {"workers": 0},
        {"start": datetime(2026, 1, 5)},
        {"days": 1, "changes": [(2.0, {"Vmx": 0.6})]},
        {"days": 1, "changes": [(0.5, {"Vmx": 0.0})]},
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(TwinkitError):
        simulate_cohort(**kwargs)  # type: ignore[arg-type]


def test_missing_simglucose_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "simglucose.sensor.cgm", None)
    with pytest.raises(TwinkitError, match=r"twinkit\[sim\]"):
        simulate_cohort(patients=1, days=DAYS, workers=1)


def test_a_change_of_physiology_takes_effect_from_its_day_on() -> None:
    # Insulin 40 % less effective from 3 h in: the same meals and doses, higher glucose
    def glucose(changes: list[tuple[float, dict[str, float]]]) -> pd.Series:
        frame = simulate_cohort(
            patients=1, days=DAYS, seed=0, workers=1, start=START, changes=changes
        )
        return frame[frame["channel"] == "glucose"].set_index("time")["value"]

    plain = glucose([])
    resistant = glucose([(0.125, {"Vmx": 0.6, "kp3": 0.6})])
    restored = glucose([(0.125, {"Vmx": 1.0, "kp3": 1.0})])

    before = plain.index < pd.Timestamp(START) + pd.Timedelta(hours=3)
    pd.testing.assert_series_equal(resistant[before], plain[before])
    assert resistant[~before].mean() > plain[~before].mean() + 5
    pd.testing.assert_series_equal(restored, plain)  # factors of 1: the run as it was
