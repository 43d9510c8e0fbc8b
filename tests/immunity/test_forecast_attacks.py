"""Evasion attacks on forecasters through their input history: the budget (box, range,
rate, window) holds exactly, :func:`project` is a projection, the attack moves forecasts
the way it is asked to, the vaccine copies the history with bounded tampering, and the
forecast immunity benchmark reports what it documents."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twinkit.core.errors import ForecastInputError, TwinkitError
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.eval.forecaster_immunity_benchmark import VARIANTS, evaluate_forecast_immunity
from twinkit.immunity.history_tampering import (
    HistoryBudget,
    TamperedHistory,
    attack_history,
    project,
    truth_at,
    vaccine_history,
)
from twinkit.models import LinearAR, Persistence
from twinkit.models.base import Forecaster

TARGET = "glucose"
Unit = Literal["s", "ms", "us", "ns"]
HORIZONS = [30, 60]
#: float slack for "within eps" and "within the rate"
TOL = 1e-9


def wide_twin(data: pd.DataFrame, twin_id: str) -> pd.DataFrame:
    """One twin of long-format data as a wide frame, exactly as ``split_twins`` makes it."""
    rows = data[data["twin_id"] == twin_id]
    wide = rows.pivot_table(index="time", columns="channel", values="value", aggfunc="mean")
    wide.index = pd.DatetimeIndex(wide.index)
    wide.columns.name = None
    return wide.sort_index()


def in_unit(frame: pd.DataFrame, unit: Unit) -> pd.DataFrame:
    """``frame`` with its index stored at another resolution: the same times."""
    out = frame.copy()
    out.index = pd.DatetimeIndex(frame.index).as_unit(unit)
    return out


def gap_minutes(index: pd.Index) -> np.ndarray:
    """Minutes between consecutive times, whatever the index's resolution."""
    times = pd.DatetimeIndex(index)
    return np.asarray((times[1:] - times[:-1]) / pd.Timedelta(minutes=1), dtype=np.float64)


def context_at(frame: pd.DataFrame, origin: pd.Timestamp, hours: float = 6.0) -> pd.DataFrame:
    """What a forecast at ``origin`` sees: the hours before it, and the covariates up to the
    furthest horizon with the target there hidden (as the benchmark builds it)."""
    reach = pd.Timedelta(minutes=max(HORIZONS))
    context = frame.loc[origin - pd.Timedelta(hours=hours) : origin + reach].copy()
    context.loc[context.index > origin, TARGET] = np.nan
    return context


def assert_same_series(a: pd.Series, b: pd.Series) -> None:
    """Bit-identical values (NaN where NaN), same index."""
    assert a.index.equals(b.index)
    assert np.array_equal(a.to_numpy(np.float64), b.to_numpy(np.float64), equal_nan=True)


@dataclass(frozen=True)
class Twin:
    """One synthetic twin (glucose every 5 min, a few carbs), with LinearAR fitted on its
    first two days; origins on the third.

    The frame's index is at nanosecond resolution: ``attack_history`` reads the gaps
    between readings as nanoseconds (see ``test_rate_limit_is_the_same_at_any_index_resolution``),
    so only there does the rate limit mean what it says. ``synthetic_cohort`` gives
    microseconds (pandas 3's default).
    """

    frame: pd.DataFrame
    linear: LinearAR
    origins: list[pd.Timestamp]


@pytest.fixture(scope="module")
def twin() -> Twin:
    frame = in_unit(wide_twin(synthetic_cohort(n_twins=1, days=3, seed=0), "synth-001"), "ns")
    assert {TARGET, "carbs"} <= set(frame.columns)
    split = frame.index[0] + pd.Timedelta(days=2)
    train = frame.loc[frame.index < split]
    linear = LinearAR(target=TARGET, lags=6, max_horizon_min=60).fit(train)
    observed = frame.index[frame[TARGET].notna()]
    # every 2 h through the third day, each with at least an hour of truth after it
    origins = [pd.Timestamp(t) for t in observed[observed >= split][:-12:24]]
    assert len(origins) >= 8
    return Twin(frame, linear, origins)


def with_missed_readings(context: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """``context`` with two isolated target readings before ``origin`` missing (bridged by
    the models' grids), so the attack window has to skip them."""
    out = context.copy()
    before = np.flatnonzero(out.index <= origin)
    out.loc[out.index[before[[-3, -8]]], TARGET] = np.nan
    return out


# -- the budget holds exactly ------------------------------------------------------------
def check_budget(
    result: TamperedHistory,
    context: pd.DataFrame,
    budget: HistoryBudget,
    origin: pd.Timestamp,
) -> None:
    """Every promise of the threat model, checked against the context that was attacked."""
    column = context[TARGET].to_numpy(np.float64)
    observed = np.flatnonzero(np.isfinite(column) & (context.index <= origin))
    assert len(observed) > budget.window
    # the rows: exactly the last `window` observed readings up to the origin
    assert np.array_equal(result.rows, observed[-budget.window :])
    assert np.array_equal(result.original, column[result.rows])
    assert result.tampered.shape == result.original.shape

    # only the target changes, and only at those rows
    attacked = result.context
    assert attacked.index.equals(context.index)
    assert list(attacked.columns) == list(context.columns)
    for name in context.columns:
        if name != TARGET:
            assert_same_series(attacked[name], context[name])
    after = attacked[TARGET].to_numpy(np.float64)
    assert np.array_equal(np.isnan(after), np.isnan(column))  # NaN stays NaN, no new NaN
    untouched = np.ones(len(column), dtype=bool)
    untouched[result.rows] = False
    assert np.array_equal(after[untouched], column[untouched], equal_nan=True)
    assert np.array_equal(after[result.rows], result.tampered)

    # the box: within eps of the truth
    assert np.abs(result.tampered - result.original).max() <= budget.eps + TOL

    # the range, kept when the truth lies inside it
    before_row = observed[-budget.window - 1]
    truth = np.concatenate([[column[before_row]], result.original])
    if budget.low <= truth.min() and truth.max() <= budget.high:
        assert result.tampered.min() >= budget.low - TOL
        assert result.tampered.max() <= budget.high + TOL

    # the rate, from the untouched reading before the window, unless the truth was faster
    if budget.max_rate is not None:
        picked = np.concatenate([[before_row], result.rows])
        minutes = gap_minutes(context.index[picked])
        values = np.concatenate([[column[before_row]], result.tampered])
        allowed = np.maximum(budget.max_rate * minutes, np.abs(np.diff(truth)))
        assert (np.abs(np.diff(values)) <= allowed + TOL).all()


def budgets_for(context: pd.DataFrame, origin: pd.Timestamp) -> list[HistoryBudget]:
    """The default budget, and ones where each constraint binds: a slow rate, a sensor
    range barely wider than the readings, no rate limit, a large eps."""
    recent = context.loc[:origin, TARGET].dropna().iloc[-20:]
    return [
        HistoryBudget(),
        HistoryBudget(eps=10.0, window=12, max_rate=0.3),
        HistoryBudget(
            eps=15.0, window=8, low=float(recent.min()) - 2.0, high=float(recent.max()) + 2.0
        ),
        HistoryBudget(eps=25.0, window=5, max_rate=None),
        HistoryBudget(eps=40.0, window=10, max_rate=1.0),
    ]


@pytest.fixture(scope="module")
def linear12(twin: Twin) -> LinearAR:
    """LinearAR whose 12 lags span the whole default attack window."""
    train = twin.frame.loc[twin.frame.index < twin.origins[0]]
    return LinearAR(target=TARGET, lags=12, max_horizon_min=60).fit(train)


@pytest.mark.parametrize("unit", ["ns", "us"])
def test_attack_respects_the_budget_exactly(twin: Twin, linear12: LinearAR, unit: Unit) -> None:
    model = linear12
    frame = in_unit(twin.frame, unit)
    for origin in twin.origins[:3]:
        context = with_missed_readings(context_at(frame, origin), origin)
        pristine = context.copy()
        truth = truth_at(twin.frame, TARGET, origin, HORIZONS)
        clean = model.predict(context, HORIZONS).mean
        for budget in budgets_for(context, origin):
            for direction in (np.sign(clean - truth), np.ones(2), -np.ones(2)):
                result = attack_history(
                    model, context, HORIZONS, direction, budget, steps=2, origin=origin
                )
                check_budget(result, context, budget, origin)
                pd.testing.assert_frame_equal(context, pristine)  # the input is not modified
                # where the rate is loose enough for PGD to get going, something moves
                if budget.max_rate is None or budget.max_rate >= 4.0:
                    assert not np.array_equal(result.tampered, result.original)


@pytest.mark.parametrize(
    "budget",
    [
        HistoryBudget(),
        HistoryBudget(eps=25.0, window=12, max_rate=None),
        HistoryBudget(eps=10.0, window=12, max_rate=0.3),
        HistoryBudget(eps=40.0, window=10, max_rate=1.0),
    ],
    ids=["default", "no-rate", "rate-0.3", "eps-40-rate-1"],
)
def test_attack_beats_a_uniform_shift(
    twin: Twin, linear12: LinearAR, budget: HistoryBudget
) -> None:
    """The attack should find at least what shifting the whole window (projected onto the
    budget, so ramped in where the rate binds) finds; for LinearAR, whose 12 lags see the
    whole window, that moves every forecast by about the shift."""
    for origin in twin.origins[:4]:
        context = context_at(twin.frame, origin)
        column = context[TARGET].to_numpy(np.float64)
        observed = np.flatnonzero(np.isfinite(column) & (context.index <= origin))
        picked = observed[-budget.window - 1 :]
        minutes = gap_minutes(context.index[picked])
        for sign in (1.0, -1.0):
            direction = np.array([sign, sign])
            clean = float(direction @ linear12.predict(context, HORIZONS).mean)
            shifted = column.copy()
            shifted[picked[1:]] = project(
                column[picked[1:]] + sign * budget.eps,
                column[picked[1:]],
                minutes,
                budget,
                float(column[picked[0]]),
            )
            frame = context.copy()
            frame[TARGET] = shifted
            uniform = float(direction @ linear12.predict(frame, HORIZONS).mean)
            assert uniform > clean + 5.0  # the shift itself works
            result = attack_history(
                linear12, context, HORIZONS, direction, budget, steps=2, origin=origin
            )
            assert result.objective >= uniform - TOL, (origin, sign)


def test_attack_leaves_readings_after_the_origin_alone(twin: Twin) -> None:
    """With the truth after ``origin`` left in the context, only readings up to the origin
    may move."""
    origin = twin.origins[3]
    context = twin.frame.loc[origin - pd.Timedelta(hours=6) : origin + pd.Timedelta(minutes=10)]
    # the forecast starts from the last reading (10 min after the origin); with 6 lags it
    # still depends on readings up to the origin, so the attack has something to move
    assert context.index[-1] > origin
    budget = HistoryBudget(window=6)
    result = attack_history(twin.linear, context, HORIZONS, [1.0, 1.0], budget, origin=origin)
    check_budget(result, context, budget, origin)
    assert (context.index[result.rows] <= origin).all()
    later = context.index > origin
    assert_same_series(result.context.loc[later, TARGET], context.loc[later, TARGET])
    assert not np.array_equal(result.tampered, result.original)


def test_attack_defaults_to_the_last_reading_as_origin(twin: Twin) -> None:
    origin = twin.origins[2]
    context = context_at(twin.frame, origin)
    implicit = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0])
    explicit = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0], origin=origin)
    assert np.array_equal(implicit.rows, explicit.rows)
    assert np.array_equal(implicit.tampered, explicit.tampered)
    check_budget(implicit, context, HistoryBudget(), origin)


def test_zero_eps_changes_nothing(twin: Twin) -> None:
    origin = twin.origins[1]
    context = context_at(twin.frame, origin)
    result = attack_history(twin.linear, context, HORIZONS, [1.0, 1.0], HistoryBudget(eps=0.0))
    assert np.array_equal(result.tampered, result.original)
    pd.testing.assert_frame_equal(result.context, context)
    assert result.objective == pytest.approx(
        float(np.sum(twin.linear.predict(context, HORIZONS).mean)), abs=TOL
    )


# -- project -----------------------------------------------------------------------------
@st.composite
def projection_cases(
    draw: st.DrawFn,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, HistoryBudget, float | None]:
    n = draw(st.integers(1, 25))
    start = draw(st.floats(20.0, 420.0))
    # mostly small changes, with the odd jump far beyond any rate limit
    steps = draw(
        st.lists(st.one_of(st.floats(-8.0, 8.0), st.floats(-80.0, 80.0)), min_size=n, max_size=n)
    )
    original = start + np.cumsum(steps)
    minutes = np.asarray(
        draw(st.lists(st.sampled_from([1.0, 5.0, 5.0, 5.0, 10.0, 15.0]), min_size=n, max_size=n))
    )
    noise = draw(st.lists(st.floats(-40.0, 40.0), min_size=n, max_size=n))
    values = original + np.asarray(noise)
    budget = HistoryBudget(
        eps=draw(st.sampled_from([0.0, 0.5, 5.0, 10.0, 30.0])),
        window=n,
        low=40.0,
        high=400.0,
        max_rate=draw(st.sampled_from([None, 0.1, 1.0, 4.0])),
    )
    before = draw(st.one_of(st.none(), st.floats(start - 30.0, start + 30.0)))
    return values, original, minutes, budget, before


def check_projection(
    out: np.ndarray,
    original: np.ndarray,
    minutes: np.ndarray,
    budget: HistoryBudget,
    before: float | None,
) -> None:
    assert out.shape == original.shape and out.dtype == np.float64
    assert np.isfinite(out).all()
    assert np.abs(out - original).max() <= budget.eps + TOL
    if budget.max_rate is not None:
        # the first reading's rate is to `before` (unchanged), if there is one
        values, truth, gaps = out, original, minutes[1:]
        if before is not None:
            values = np.concatenate([[before], out])
            truth = np.concatenate([[before], original])
            gaps = minutes
        allowed = np.maximum(budget.max_rate * gaps, np.abs(np.diff(truth)))
        assert (np.abs(np.diff(values)) <= allowed + TOL).all()
    inside = [budget.low <= x <= budget.high for x in original]
    if all(inside) and (before is None or budget.low <= before <= budget.high):
        assert out.min() >= budget.low - TOL and out.max() <= budget.high + TOL


@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(case=projection_cases())
@example(  # the truth jumps 50 in 5 min, far past 4/min: the jump itself stays allowed
    case=(
        np.array([100.0, 100.0, 150.0, 150.0]),
        np.array([100.0, 100.0, 150.0, 150.0]),
        np.full(4, 5.0),
        HistoryBudget(eps=10.0, window=4),
        100.0,
    )
)
def test_project_output_meets_the_budget_and_is_a_fixed_point(
    case: tuple[np.ndarray, np.ndarray, np.ndarray, HistoryBudget, float | None],
) -> None:
    values, original, minutes, budget, before = case
    out = project(values, original, minutes, budget, before)
    check_projection(out, original, minutes, budget, before)
    # what the budget allows comes back unchanged (up to rounding in the rate's bounds)
    again = project(out, original, minutes, budget, before)
    np.testing.assert_allclose(again, out, rtol=0, atol=TOL)
    truth = project(original, original, minutes, budget, before)
    np.testing.assert_allclose(truth, original, rtol=0, atol=TOL)


def test_project_keeps_a_feasible_history_unchanged() -> None:
    original = np.array([120.0, 123.0, 127.0, 126.0, 122.0, 119.0])
    minutes = np.full(6, 5.0)
    budget = HistoryBudget(eps=10.0, window=6, max_rate=1.0)
    for shift in (-10.0, -3.5, 0.0, 7.25, 10.0):
        values = original + shift  # same changes as the truth: always at an allowed rate
        out = project(values, original, minutes, budget, None)
        assert np.array_equal(out, values)
    # other shifts, with every change within the 5 per reading allowed
    wiggle = original + np.array([1.0, -1.0, 0.0, 0.5, 0.0, 1.0])
    assert np.abs(np.diff(np.concatenate([[120.0], wiggle]))).max() <= 5.0
    assert np.array_equal(project(wiggle, original, minutes, budget, 120.0), wiggle)


def test_project_allows_the_truths_own_jump_but_no_more() -> None:
    original = np.array([100.0, 100.0, 150.0, 150.0])
    minutes = np.full(4, 5.0)
    budget = HistoryBudget(eps=10.0, window=4, max_rate=4.0)  # 20 per reading
    # following the jump exactly is allowed, as is making it smaller
    assert np.array_equal(project(original, original, minutes, budget, 100.0), original)
    smaller = np.array([100.0, 100.0, 140.0, 150.0])
    assert np.array_equal(project(smaller, original, minutes, budget, 100.0), smaller)
    # a jump larger than the truth's 50 (and 20) is cut back to 50
    larger = np.array([100.0, 100.0, 160.0, 160.0])
    assert project(larger, original, minutes, budget, 100.0).tolist() == [
        100.0,
        100.0,
        150.0,
        160.0,
    ]
    # a slow rate holds a flat history to max_rate * minutes per reading
    flat = np.full(4, 120.0)
    slow = HistoryBudget(eps=10.0, window=4, max_rate=0.4)  # 2 per reading
    out = project(flat + 10.0, flat, minutes, slow, 120.0)
    assert out == pytest.approx([122.0, 124.0, 126.0, 128.0])


def test_project_keeps_the_range_unless_a_reading_is_outside_it() -> None:
    budget = HistoryBudget(eps=10.0, window=4, low=40.0, high=400.0, max_rate=None)
    original = np.array([45.0, 395.0, 35.0, 35.0])
    out = project(np.array([30.0, 410.0, 20.0, 44.0]), original, np.full(4, 5.0), budget, None)
    # clipped to the range; a reading already below it may not go further out than it
    # was, but keeps its box upwards
    assert out.tolist() == [40.0, 400.0, 35.0, 44.0]


# -- what the attack does to forecasts ---------------------------------------------------
@pytest.fixture(scope="module")
def flat() -> tuple[Persistence, pd.DataFrame]:
    """A nearly flat day of glucose (120 +- 0.5) and persistence fitted on it."""
    index = pd.date_range("2026-01-01", periods=288, freq="5min", tz="UTC", unit="ns")
    glucose = 120.0 + 0.5 * np.sin(np.arange(288) / 7.0)
    frame = pd.DataFrame({TARGET: glucose, "carbs": np.nan}, index=index)
    frame.iloc[100, 1] = 40.0
    return Persistence(target=TARGET, max_horizon_min=60).fit(frame), frame


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_persistence_forecast_moves_by_exactly_eps(
    flat: tuple[Persistence, pd.DataFrame], sign: float
) -> None:
    model, frame = flat
    context = frame.iloc[-60:]
    last = float(context[TARGET].iloc[-1])
    budget = HistoryBudget(eps=10.0)
    result = attack_history(model, context, HORIZONS, [sign, sign], budget)
    check_budget(result, context, budget, context.index[-1])
    moved = model.predict(result.context, HORIZONS).mean
    assert moved == pytest.approx([last + sign * 10.0] * 2, abs=TOL)
    assert result.objective == pytest.approx(2 * sign * (last + sign * 10.0), abs=TOL)
    # persistence only reads the last value: nothing else is worth moving
    assert np.array_equal(result.tampered[:-1], result.original[:-1])


def test_persistence_attack_is_held_back_by_the_rate(
    flat: tuple[Persistence, pd.DataFrame],
) -> None:
    model, frame = flat
    context = frame.iloc[-60:]
    values = context[TARGET].to_numpy()
    budget = HistoryBudget(eps=10.0, window=3, max_rate=0.4)  # 2 mg/dL per reading
    result = attack_history(model, context, HORIZONS, [1.0, 0.0], budget)
    # Each of the 3 readings may rise at most 2 above the one before it (the reading
    # before the window stays true), so the last can end at most 6 above values[-4]:
    # a ramp, which the attack finds; eps alone would have allowed values[-1] + 10.
    assert np.abs(np.diff(values[-4:])).max() < 2.0
    expected = values[-4] + 6.0
    assert model.predict(result.context, HORIZONS).mean[0] == pytest.approx(expected, abs=TOL)
    assert expected < values[-1] + 10.0 - 3.0  # the rate, not eps, was what held it


def test_opposite_horizons_cancel_for_persistence(flat: tuple[Persistence, pd.DataFrame]) -> None:
    """Pushing one horizon up and the other down gives persistence no gradient: the best
    history is the true one."""
    model, frame = flat
    context = frame.iloc[-60:]
    result = attack_history(model, context, HORIZONS, [1.0, -1.0])
    assert np.array_equal(result.tampered, result.original)
    assert result.objective == pytest.approx(0.0, abs=TOL)
    pd.testing.assert_frame_equal(result.context, context)


@pytest.mark.parametrize("unit", ["us", "ms", "s"])
def test_rate_limit_is_the_same_at_any_index_resolution(
    flat: tuple[Persistence, pd.DataFrame], twin: Twin, unit: Unit
) -> None:
    model, frame = flat
    context = in_unit(frame.iloc[-60:], unit)
    last = float(context[TARGET].iloc[-1])
    result = attack_history(model, context, HORIZONS, [1.0, 1.0], HistoryBudget(eps=10.0))
    assert model.predict(result.context, HORIZONS).mean == pytest.approx([last + 10.0] * 2)

    origin = twin.origins[0]
    context = context_at(twin.frame, origin)
    in_ns = attack_history(twin.linear, context, HORIZONS, [1.0, 1.0], origin=origin)
    other = attack_history(twin.linear, in_unit(context, unit), HORIZONS, [1.0, 1.0], origin=origin)
    np.testing.assert_allclose(other.tampered, in_ns.tampered, rtol=0, atol=TOL)


def errors_of(
    model: Forecaster, context: pd.DataFrame, horizons: Sequence[int], truth: np.ndarray
) -> np.ndarray:
    return np.asarray(model.predict(context, horizons).mean - truth, dtype=np.float64)


@pytest.mark.parametrize("horizons", [[30], [30, 60]])
def test_error_attack_makes_linear_ar_worse_at_every_origin(
    twin: Twin, horizons: list[int]
) -> None:
    for origin in twin.origins:
        context = context_at(twin.frame, origin)
        truth = truth_at(twin.frame, TARGET, origin, horizons)
        assert np.isfinite(truth).all()
        clean = errors_of(twin.linear, context, horizons, truth)
        direction = np.where(clean == 0, 1.0, np.sign(clean))
        result = attack_history(twin.linear, context, horizons, direction, origin=origin)
        attacked = errors_of(twin.linear, result.context, horizons, truth)
        # what it pushed is what it reports
        forecast = twin.linear.predict(result.context, horizons).mean
        assert result.objective == pytest.approx(float(direction @ forecast), abs=TOL)
        # the signed error it maximises grows (strictly: a linear model always has a
        # gradient), so the total error does
        assert direction @ attacked > direction @ clean + 1.0
        assert np.abs(attacked).sum() > np.abs(clean).sum()
        if len(horizons) == 1:
            assert abs(attacked[0]) > abs(clean[0])


def test_raise_and_lower_attacks_on_linear_ar(twin: Twin) -> None:
    for origin in twin.origins[:4]:
        context = context_at(twin.frame, origin)
        clean = twin.linear.predict(context, HORIZONS).mean
        up = attack_history(twin.linear, context, HORIZONS, [1.0, 1.0], origin=origin)
        down = attack_history(twin.linear, context, HORIZONS, [-1.0, -1.0], origin=origin)
        assert twin.linear.predict(up.context, HORIZONS).mean.sum() > clean.sum() + 1.0
        assert twin.linear.predict(down.context, HORIZONS).mean.sum() < clean.sum() - 1.0
        assert up.objective == pytest.approx(
            float(twin.linear.predict(up.context, HORIZONS).mean.sum()), abs=TOL
        )
        assert down.objective == pytest.approx(
            -float(twin.linear.predict(down.context, HORIZONS).mean.sum()), abs=TOL
        )


def test_more_steps_never_do_worse(twin: Twin) -> None:
    """The best history seen is returned, and the first step is the same whatever the
    number of steps: more steps can only push further."""
    for origin in twin.origins[:3]:
        context = context_at(twin.frame, origin)
        one = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0], steps=1)
        three = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0], steps=3)
        assert three.objective >= one.objective


def test_attack_is_deterministic(twin: Twin) -> None:
    origin = twin.origins[5]
    context = with_missed_readings(context_at(twin.frame, origin), origin)
    first = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0], steps=3, origin=origin)
    second = attack_history(twin.linear, context, HORIZONS, [1.0, -1.0], steps=3, origin=origin)
    assert np.array_equal(first.rows, second.rows)
    assert np.array_equal(first.tampered, second.tampered)
    assert first.objective == second.objective
    pd.testing.assert_frame_equal(first.context, second.context)


# -- the vaccine -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def vaccine_case(twin: Twin) -> tuple[pd.DataFrame, pd.DataFrame, HistoryBudget]:
    history = twin.frame.loc[twin.frame.index < twin.frame.index[0] + pd.Timedelta(hours=36)]
    budget = HistoryBudget(eps=8.0, window=6)
    vaccine = vaccine_history(twin.linear, history, HORIZONS, budget, copies=2, seed=0)
    return history, vaccine, budget


def test_vaccine_is_the_history_then_shifted_tampered_copies(
    vaccine_case: tuple[pd.DataFrame, pd.DataFrame, HistoryBudget],
) -> None:
    history, vaccine, budget = vaccine_case
    n = len(history)
    assert len(vaccine) == 3 * n
    assert list(vaccine.columns) == list(history.columns)
    assert vaccine.index.is_monotonic_increasing and vaccine.index.is_unique
    pd.testing.assert_frame_equal(vaccine.iloc[:n], history)

    truth = history[TARGET].to_numpy(np.float64)
    changed_rows = []
    previous_end = history.index[-1]
    for c in (1, 2):
        part = vaccine.iloc[c * n : (c + 1) * n]
        shift = part.index - history.index
        assert (shift == shift[0]).all()
        assert shift[0] % pd.Timedelta(days=1) == pd.Timedelta(0)  # whole days
        assert shift[0] > pd.Timedelta(0)
        assert (
            pd.DatetimeIndex(part.index).time == pd.DatetimeIndex(history.index).time
        ).all()  # times of day kept
        assert part.index[0] - previous_end >= pd.Timedelta(days=1)  # a day's gap at least
        previous_end = part.index[-1]
        # covariates copied as they were
        for name in history.columns:
            if name != TARGET:
                assert np.array_equal(
                    part[name].to_numpy(np.float64),
                    history[name].to_numpy(np.float64),
                    equal_nan=True,
                )
        # the target: same gaps, every reading within eps of the truth, some moved
        values = part[TARGET].to_numpy(np.float64)
        assert np.array_equal(np.isnan(values), np.isnan(truth))
        ok = np.isfinite(truth)
        assert np.abs(values[ok] - truth[ok]).max() <= budget.eps + TOL
        changed = np.flatnonzero(ok & (values != truth))
        assert len(changed) >= 10
        # blocks of at most `window` tampered readings, with true readings between them
        runs = np.split(changed, np.flatnonzero(np.diff(changed) > 1) + 1)
        assert max(len(r) for r in runs) <= budget.window
        changed_rows.append(set(changed.tolist()))
    assert changed_rows[0] != changed_rows[1]  # the copies tamper different windows


def test_vaccine_is_fixed_by_its_seed(
    twin: Twin, vaccine_case: tuple[pd.DataFrame, pd.DataFrame, HistoryBudget]
) -> None:
    history, vaccine, budget = vaccine_case
    # the same seed gives the same copies (one copy: the first of the two, exactly)
    again = vaccine_history(twin.linear, history, HORIZONS, budget, copies=1, seed=0)
    pd.testing.assert_frame_equal(again, vaccine.iloc[: 2 * len(history)])
    # another seed starts its blocks elsewhere
    other = vaccine_history(twin.linear, history, HORIZONS, budget, copies=1, seed=1)
    pd.testing.assert_frame_equal(other.iloc[: len(history)], history)
    assert not other.equals(again)


def test_a_vaccinated_model_fits_and_forecasts(
    twin: Twin, vaccine_case: tuple[pd.DataFrame, pd.DataFrame, HistoryBudget]
) -> None:
    _, vaccine, _ = vaccine_case
    model = LinearAR(target=TARGET, lags=6, max_horizon_min=60).fit(vaccine)
    origin = twin.origins[0]
    forecast = model.predict(context_at(twin.frame, origin), HORIZONS).mean
    assert np.isfinite(forecast).all()


# -- the benchmark end to end ------------------------------------------------------------
@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    data = synthetic_cohort(n_twins=2, days=3, seed=0)
    return evaluate_forecast_immunity(
        data,
        TARGET,
        (60, 30),
        models=["linear_ar", "persistence"],
        max_origins=10,
        steps=1,
        copies=1,
        threshold=130.0,  # high enough that the synthetic twins have some "lows"
        seed=0,
    )


def numbers_in(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers_in(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in numbers_in(v)]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    assert isinstance(value, int | float)
    return [float(value)]


def test_report_has_the_documented_shape(report: dict[str, Any]) -> None:
    assert report["kind"] == "forecast"
    assert report["target"] == TARGET
    assert report["horizons_min"] == [30, 60]
    assert report["seed"] == 0
    budget = HistoryBudget()
    threat = report["threat_model"]
    assert {k: threat[k] for k in budget.as_dict()} == budget.as_dict()
    assert threat["steps"] == 1
    assert report["vaccine"]["copies"] == 1
    assert report["data"]["twins"] == 2 and report["data"]["twins_skipped"] == {}
    assert report["data"]["max_origins"] == 10
    assert set(report["models"]) == {"linear_ar", "persistence"}
    for name, entry in report["models"].items():
        assert set(entry) == {
            "clean_rmse",
            "clean_rmse_vaccinated",
            "attacks",
            "origins",
            "twins",
            "failed",
        }, name
        assert set(entry["attacks"]) == {"error", "hide_low"}
        assert set(entry["attacks"]["error"]) == set(VARIANTS)
        for table in (
            entry["clean_rmse"],
            entry["clean_rmse_vaccinated"],
            *entry["attacks"]["error"].values(),
        ):
            assert set(table) == {"30", "60"}
            assert all(isinstance(v, float) and math.isfinite(v) and v > 0 for v in table.values())
        assert entry["twins"] == 2 and entry["failed"] == {}
        assert 10 <= entry["origins"] <= 20  # at most max_origins per twin
    assert all(math.isfinite(x) for x in numbers_in(report))
    text = json.dumps(report, allow_nan=False)
    assert json.loads(text) == report


def test_report_attacks_hurt_and_hide_lows(report: dict[str, Any]) -> None:
    for name, entry in report["models"].items():
        clean = entry["clean_rmse"]
        error = entry["attacks"]["error"]
        for h in ("30", "60"):
            assert error["undefended"][h] > clean[h], (name, h)
            assert error["vaccinated_adaptive"][h] > entry["clean_rmse_vaccinated"][h], (name, h)
        low = entry["attacks"]["hide_low"]
        assert low["threshold"] == 130.0 and low["horizon_min"] == 30
        assert low["lows"] > 0
        shares = {k: v for k, v in low.items() if k.startswith("flagged_")}
        assert set(shares) == {
            "flagged_clean",
            "flagged_vaccinated_clean",
            *(f"flagged_{v}" for v in VARIANTS),
        }
        assert all(0.0 <= v <= 1.0 for v in shares.values())
        # raising the forecast can only un-flag a low, never flag one
        assert low["flagged_undefended"] <= low["flagged_clean"]
        assert low["flagged_vaccinated_adaptive"] <= low["flagged_vaccinated_clean"]
    # persistence learns nothing that a vaccine could change
    persistence = report["models"]["persistence"]
    assert persistence["clean_rmse_vaccinated"] == persistence["clean_rmse"]


# -- bad input ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"eps": -1.0},
        {"window": 0},
        {"low": 400.0, "high": 40.0},
        {"low": 100.0, "high": 100.0},
        {"max_rate": 0.0},
        {"max_rate": -2.0},
    ],
)
def test_impossible_budgets_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(TwinkitError):
        HistoryBudget(**kwargs)  # type: ignore[arg-type]


def test_bad_attack_inputs_are_refused(twin: Twin) -> None:
    origin = twin.origins[0]
    context = context_at(twin.frame, origin)
    for direction in ([1.0], [1.0, 1.0, 1.0], [[1.0, 1.0]]):
        with pytest.raises(TwinkitError, match="direction"):
            attack_history(twin.linear, context, HORIZONS, direction)  # type: ignore[arg-type]
    with pytest.raises(TwinkitError, match="glucose"):
        attack_history(twin.linear, context.drop(columns=[TARGET]), HORIZONS, [1.0, 1.0])
    # an origin before all but one reading leaves nothing to tamper with
    with pytest.raises(ForecastInputError):
        attack_history(twin.linear, context, HORIZONS, [1.0, 1.0], origin=context.index[0])
    with pytest.raises(TwinkitError):
        vaccine_history(twin.linear, twin.frame.iloc[:200], HORIZONS, copies=0)
    with pytest.raises(TwinkitError):
        evaluate_forecast_immunity(
            synthetic_cohort(n_twins=1, days=1, seed=0), TARGET, [0, 30], models=["persistence"]
        )
