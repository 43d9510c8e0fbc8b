"""A neural forecaster's inputs and outputs in NumPy: shared by torch and ONNX runtimes.

Nothing here imports torch, so an edge device can run an exported network with
onnxruntime and get the same forecasts the trained model gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import ForecastInputError
from twinkit.core.forecast import QUANTILE_LEVELS, Forecast, make_forecast
from twinkit.data.grid import check_frame, horizon_steps
from twinkit.data.windows import EVENT_CHANNELS, Grid, Scaler, Windows, make_windows, to_grid

_MEDIAN = QUANTILE_LEVELS.index(0.5)


@dataclass(frozen=True)
class NetworkInputs:
    """One forecast's network inputs and what turns the network output into a Forecast.

    ``past`` (1, L, F) and ``future`` (1, H, F2) are float32, ready for the network (torch
    or an ONNX runtime); the rest is numpy-only post-processing.
    """

    past: np.ndarray
    future: np.ndarray
    origin: pd.Timestamp
    last_value: float  # the target at the origin, in data units
    target_std: float  # network units -> data units
    steps: np.ndarray  # grid steps ahead (1-based) of the wanted horizons
    horizons: tuple[int, ...]


@dataclass(frozen=True)
class NetworkSpec:
    """What a fitted neural forecaster's pre- and post-processing need to know.

    ``calibration`` (levels x steps), when set, replaces the network's own quantiles by
    the median plus these offsets (split-conformal recalibration done at fit time).
    """

    name: str
    target: str
    step_min: float
    context_min: int
    context_steps: int
    n_steps: int
    max_gap_min: float
    covariate_names: tuple[str, ...]
    future_covariates: bool
    scaler: Scaler | None
    calibration: np.ndarray | None = None

    def lead_steps(self) -> int:
        """Grid steps before the forecast origin that :func:`network_inputs` grids when
        the scaler is stored: the context window and a bridged gap at its start."""
        return self.context_steps + int(self.max_gap_min // self.step_min) + 1

    def lookback_min(self) -> float | None:
        """:meth:`Forecaster.lookback_min` of the model: the lead steps and one more (the
        origin is the last reading floored to the grid), or None without a stored scaler
        (a population model normalises by the whole context)."""
        if self.scaler is None:
            return None
        return (self.lead_steps() + 1) * self.step_min

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> NetworkSpec:
        """From the JSON config a neural forecaster records in its artifact or ONNX file."""
        params = config["params"]
        calibration = config.get("calibration")
        return cls(
            name=str(config["model"]),
            target=str(params["target"]),
            step_min=float(config["step_min"]),
            context_min=int(params["context_min"]),
            context_steps=int(config["network"]["context_steps"]),
            n_steps=int(config["network"]["horizon_steps"]),
            max_gap_min=float(params["max_gap_min"]),
            covariate_names=tuple(config["covariate_names"]),
            future_covariates=bool(params["future_covariates"]),
            scaler=Scaler.from_dict(config["scaler"]) if config.get("scaler") else None,
            calibration=None if calibration is None else np.asarray(calibration, dtype=float),
        )


def spec_grid(
    spec: NetworkSpec,
    frame: pd.DataFrame,
    names: tuple[str, ...],
    step_min: float | None = None,
    end: pd.Timestamp | None = None,
) -> Grid:
    """The frame on the model's grid with the model's covariates.

    A missing event channel means no events were recorded (zeros); a missing level
    channel (heart rate, say) cannot be guessed and is a named error.
    """
    check_frame(frame, spec.target)
    absent = [n for n in names if n not in frame.columns]
    levels = [n for n in absent if n not in EVENT_CHANNELS]
    if levels:
        raise ForecastInputError(
            f"{spec.name}: covariate(s) {levels} the model uses are not in the data; "
            "choose the channels every twin has with covariates=[...]"
        )
    if absent:
        frame = frame.assign(**dict.fromkeys(absent, np.nan))
    return to_grid(frame, spec.target, names, step_min, spec.max_gap_min, end)


def spec_windows(
    spec: NetworkSpec, grid: Grid, scaler: Scaler, origin: int | None = None
) -> Windows:
    """Training windows, or with ``origin`` the one window to forecast from.

    Only event channels (meals, insulin) can be planned; a level such as heart rate is
    never known ahead, so its future is hidden in training and forecasting alike.
    """
    windows = make_windows(
        grid,
        scaler,
        spec.context_steps,
        spec.n_steps,
        origins=None if origin is None else np.array([origin]),
        require_target=origin is None,
        future_covariates=spec.future_covariates,
    )
    levels = [i for i, n in enumerate(grid.covariate_names) if n not in EVENT_CHANNELS]
    if levels:
        windows.future[:, :, levels] = 0.0
    return windows


def network_inputs(
    spec: NetworkSpec, context: pd.DataFrame, horizons: Sequence[int] | None = None
) -> NetworkInputs:
    """The float32 network inputs for one forecast from the last target reading.

    ``horizons`` None means every step up to the model's reach.
    """
    step = spec.step_min
    rule = pd.Timedelta(minutes=step)
    lead = spec.lead_steps()
    recent = context
    if spec.scaler is not None and isinstance(context.index, pd.DatetimeIndex) and len(context):
        # A stored scaler needs only the last window: validate that tail, not a long history.
        tail = context.loc[context.index[-1] - (lead + spec.n_steps + 1) * rule :]
        if spec.target in tail.columns and tail[spec.target].notna().any():
            recent = tail
    series = check_frame(recent, spec.target)
    if series.empty:
        raise ForecastInputError(f"{spec.name}: no values of {spec.target!r} in the context")
    origin_time = pd.Timestamp(series.index[-1]).floor(rule)
    frame = context
    if spec.scaler is not None:
        # Only the context window (and enough before it to bridge a short gap at its
        # start) matters when the scaler is stored: keeps predict fast on long histories.
        frame = recent.loc[origin_time - lead * rule :]
    end = pd.Timestamp(context.index[-1]) if spec.future_covariates else None
    grid = spec_grid(spec, frame, spec.covariate_names, step, end)
    origin = int(np.flatnonzero(np.isfinite(grid.target))[-1])
    if origin < spec.context_steps - 1:
        raise ForecastInputError(
            f"{spec.name}: a forecast needs the last {spec.context_min} min "
            f"({spec.context_steps} readings) of {spec.target!r}; the context holds "
            f"{origin + 1}"
        )
    scaler = spec.scaler if spec.scaler is not None else Scaler.fit(grid)
    windows = spec_windows(spec, grid, scaler, origin)
    if horizons is None:
        steps = np.arange(1, spec.n_steps + 1)
        horizons = [round(s * step) for s in steps]
    else:
        steps = horizon_steps(horizons, step, spec.n_steps)
    return NetworkInputs(
        past=windows.past.astype(np.float32),
        future=windows.future.astype(np.float32),
        origin=origin_time,
        last_value=float(grid.target[origin]),
        target_std=scaler.target_std,
        steps=steps,
        horizons=tuple(int(h) for h in horizons),
    )


def forecast_from_output(spec: NetworkSpec, output: np.ndarray, inputs: NetworkInputs) -> Forecast:
    """The network's (1, H, Q) output for ``inputs`` -> a Forecast in data units."""
    change = np.asarray(output, dtype=np.float64).reshape(-1, spec.n_steps, len(QUANTILE_LEVELS))
    picked = change[0, inputs.steps - 1].T  # (Q, horizons)
    quantiles = inputs.last_value + picked * inputs.target_std
    median = quantiles[_MEDIAN]
    if spec.calibration is not None:
        quantiles = median[None, :] + spec.calibration[:, inputs.steps - 1]
    return make_forecast(spec.target, inputs.origin, inputs.horizons, median, quantiles, spec.name)
