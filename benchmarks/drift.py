"""Living twins under a physiological change (issue #18): drift detection, refit strategies,
forgetting, and the automatic rollback, on simglucose patients.

Each of ``--patients`` simglucose adults is simulated for ``--days`` (21) days three ways,
seeded: **steady**; **changed**, with insulin 40 % less effective from day 11 on
(UVA/Padova ``Vmx``, the maximal insulin-dependent glucose utilisation, and ``kp3``, the
insulin action on the liver's glucose production, both times 0.6) and restored on day 17;
and **resistant** from the start, for 10 days, the oracle's training data. The basal-bolus
controller doses as before, as for a person whose sensitivity changed unnoticed.

A twin is served as the product serves it, without the store: a GRU (``gru``, the neural
forecaster continual updates apply to) is fitted on days 1-3 by the engine's rule (train
on the first 80 %, the holdout RMSE per horizon is the version's scale), then forecasts
30 and 60 min ahead every ``--cadence`` minutes, each scored against the reading bin it
forecast (the forecast log's truth). Every hour the monitor's check runs on what is known
by then, by ``engine/monitoring``'s rule: :func:`twinkit.monitor.drift.forecast_streams`
and ``input_streams``, each from its detector's last detection (else from the version's
first forecast; input streams from 72 h before it), replayed through the default detector
(:func:`twinkit.monitor.drift.scan`). Strategies, each on the changed runs:

- ``frozen``: the first version forever;
- ``periodic``: a fresh fit (the engine's rule) every midnight;
- ``drift_scratch``: a fresh fit after each new detection, and follow-ups while the
  change is new (every 24 h of new data up to 72 h after it was found, as the refit
  policy does), each holding out the last 20 % of the data since the change's start;
- ``drift_ewc``: ``NeuralForecaster.update(method="ewc")`` (EWC and replay) from the
  serving weights after each new detection, the data from the detection's window start
  on being the new regime, as the refit policy does;
- ``drift_finetune``: the same with ``method="finetune"``.

Reported per strategy: RMSE at 30 and 60 min over the origins of days 11-16 and 17-21,
fits and their seconds; for ``frozen``, detections on the changed runs (delay after day
11: median, max) and on the steady runs (false alarms per 30 twin-days, days 4-21); the
oracle (a GRU fitted on the resistant run's 10 days) over days 13-16 against the
strategies there (target: ``drift_ewc`` within 10 %); forgetting over days 17-21: each
update's excess RMSE over ``frozen`` (whose model fits the restored physiology), target
``drift_ewc``'s at most half of ``drift_finetune``'s.

**Rollback**, on the steady runs: a version fitted on days 1-3 with the sensor reading
30 mg/dL high (a calibration error) is forced to serve at day 4 over the good version
(its shadow); the paired test (:func:`twinkit.monitor.rollback.paired_verdict`) runs every
hour: hours until it rolls back. And a genuinely better version (fitted on days 1-7, served
from day 8 over the days 1-3 version): does the test ever roll it back by day 21?

**Real data without a planted change** (``--cgm-iglu FOLDER``, instead of the above): each
person of the iglu example files with at least 5 days of readings at CGM density gets the
same frozen GRU (days 1-3) and hourly checks over the rest; reported: detections per 30
twin-days (every one is a false alarm as far as anyone knows) and the live coverage of the
90 % band.

Prints JSON. Example: ``python benchmarks/drift.py --patients 10 --cache .cache/sim``;
``python benchmarks/drift.py --cgm-iglu ../shared/data/cgm_iglu``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.core.errors import ForecastInputError
from twinkit.data.datasets.cgm_iglu import load_cgm_iglu
from twinkit.data.datasets.simglucose_cohort import ADULTS, simulate_cohort
from twinkit.data.grid import target_grid
from twinkit.data.windows import EVENT_CHANNELS
from twinkit.engine.monitoring import FOLLOW_UP_FOR_H, FOLLOW_UP_H
from twinkit.models.evaluate import holdout_split, rolling_scores
from twinkit.models.gru import GRUAttention
from twinkit.models.neural import NeuralForecaster
from twinkit.monitor.band import (
    BAND_TOLERANCE,
    changed,
    live_band,
    rescale,
    scale_at,
)
from twinkit.monitor.drift import DEFAULT_DETECTOR, forecast_streams, input_streams, scan
from twinkit.monitor.rollback import paired_verdict, pairs_of

HORIZONS = (30, 60)
TARGET = "glucose"
CHANGE_DAY, RETURN_DAY = 10.0, 16.0  # offsets: "day 11" and "day 17" of the issue
RESISTANCE = {"Vmx": 0.6, "kp3": 0.6}
RESTORED = {"Vmx": 1.0, "kp3": 1.0}
FIRST_FIT_DAYS = 3.0
CHECK_WINDOW = pd.Timedelta(days=14)
REFERENCE = pd.Timedelta(hours=72)
STRATEGIES = ("frozen", "periodic", "drift_scratch", "drift_ewc", "drift_finetune")
CALIBRATION_ERROR = 30.0  # mg/dL
HOUR = pd.Timedelta(hours=1)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def wide(frame: pd.DataFrame, twin: str) -> pd.DataFrame:
    mine = frame[frame["twin_id"] == twin]
    out = mine.pivot_table(index="time", columns="channel", values="value", aggfunc="mean")
    out.columns.name = None
    return out.sort_index()


def new_model(seed: int) -> GRUAttention:
    return GRUAttention(target=TARGET, seed=seed)


@dataclass
class Version:
    """A served version: its model, its scale (holdout RMSE per horizon), its number."""

    model: NeuralForecaster
    scale: dict[int, float]
    number: int
    band: dict[int, float] = field(default_factory=dict)  # the live band (monitor/band)


def scored(model: NeuralForecaster, data: pd.DataFrame, split: pd.Timestamp) -> dict[int, float]:
    scores = rolling_scores(model, data, split, HORIZONS)
    return {h: scores[f"rmse_{h}"] for h in HORIZONS if f"rmse_{h}" in scores}


def fit_version(
    data: pd.DataFrame,
    now: pd.Timestamp,
    number: int,
    seed: int,
    base: Version | None = None,
    method: str | None = None,
    since: pd.Timestamp | None = None,
) -> tuple[Version, float]:
    """The engine's rule: train on the first 80 % of the data up to ``now`` (with
    ``since``, all but the last 20 % of the data from ``since`` on), score the rest;
    ``method`` updates ``base`` instead of fitting anew. Returns it and its seconds."""
    known = data.loc[data.index < now]
    split = holdout_split(known, TARGET, 0.2, since)
    train = known.loc[known.index < split]
    started = time.perf_counter()
    if base is None or method is None:
        model: NeuralForecaster = new_model(seed).fit(train)
    else:
        model = base.model.update(train, since=since, method=method)
    seconds = time.perf_counter() - started
    return Version(model, scored(model, known, split), number), seconds


@dataclass
class Served:
    """What one strategy served over one run: scored rows per version, detections, fits."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)
    fits: list[float] = field(default_factory=list)
    failed_fits: list[str] = field(default_factory=list)
    band_updates: int = 0  # live bands stored (each a ledger entry in the product)


def forecast_rows(
    version: Version, data: pd.DataFrame, grid: pd.Series, origin: pd.Timestamp, role: str
) -> list[dict[str, Any]]:
    model = version.model
    reach = pd.Timedelta(minutes=float(model.lookback_min() or 24 * 60))
    try:
        f = model.predict(data.loc[origin - reach : origin], HORIZONS)
    except Exception:
        return []
    f = rescale(f, version.band)
    lower, upper = f.interval(0.9)
    scales = scale_at(version.band, f.horizons)
    out = []
    for k, h in enumerate(f.horizons):
        target = f.origin + pd.Timedelta(minutes=h)
        value = grid.get(target)
        out.append(
            {
                "version": version.number,
                "role": role,
                "origin": f.origin,
                "origin_t": int(f.origin.value // 1000),
                "horizon": h,
                "target": target,
                "target_t": int(target.value // 1000),
                "mean": float(f.mean[k]),
                "q05": float(lower[k]),
                "q50": float(f.quantiles[0.5][k]),
                "q95": float(upper[k]),
                "band_scale": float(scales[k]),
                "realised": np.nan if value is None else float(value),
            }
        )
    return out


def known_rows(rows: list[dict[str, Any]], version: int, now: pd.Timestamp) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    step = pd.Timedelta(minutes=5)
    mine = frame[(frame["version"] == version) & (frame["target"] + step <= now)]
    known: pd.DataFrame = mine[np.isfinite(mine["realised"].to_numpy(float))]
    return known


def long_readings(data: pd.DataFrame, start: pd.Timestamp, now: pd.Timestamp) -> pd.DataFrame:
    part = data.loc[(data.index >= start) & (data.index < now)]
    long = part.reset_index().melt(id_vars="time", var_name="channel", value_name="value")
    long = long.dropna(subset=["value"])
    t = pd.DatetimeIndex(long["time"]).as_unit("us").asi8
    return pd.DataFrame({"channel": long["channel"].to_numpy(), "t": t, "value": long["value"]})


def check(
    data: pd.DataFrame,
    served: Served,
    version: Version,
    now: pd.Timestamp,
    last: dict[tuple[str, int], pd.Timestamp],
) -> list[dict[str, Any]]:
    """The monitor's check at ``now``, by ``engine/monitoring``'s rule: each stream from
    its last detection (``last``, updated), else from the version's first forecast (input
    streams 72 h before it), not before 14 days back rounded down to a week."""
    rows = known_rows(served.rows, version.number, now)
    if rows.empty:
        return []
    floor = (now - CHECK_WINDOW).floor("7D")
    forecasts_from = max(pd.Timestamp(rows["origin"].min()), floor)
    inputs_from = max(forecasts_from - REFERENCE, floor)
    rows = rows[rows["target"] >= forecasts_from]
    streams = forecast_streams(rows, version.scale)
    streams.update(input_streams(long_readings(data, inputs_from, now), EVENT_CHANNELS))
    new = []
    for name, stream in streams.items():
        start = inputs_from if name.startswith("input:") else forecasts_from
        keep = (stream.index >= start.floor("1h")) & (stream.index < now.floor("1h"))
        # input streams are the twin's whatever version serves (engine/monitoring's rule)
        key = (name, 0 if name.startswith("input:") else version.number)
        if key in last:
            keep &= stream.index > last[key]
        for d in scan(stream[keep], name, DEFAULT_DETECTOR):
            last[key] = d.time
            new.append(
                {"stream": name, "time": d.time, "start": d.window_start, "v": version.number}
            )
    return new


def serve(
    data: pd.DataFrame,
    strategy: str,
    seed: int,
    cadence: pd.Timedelta,
    days: float,
    band: bool = True,
) -> Served:
    grid = target_grid(data, TARGET)
    start = data.index[0].floor("D")
    end = start + pd.Timedelta(days=days) - pd.Timedelta(minutes=max(HORIZONS))
    served = Served()
    version, seconds = fit_version(data, start + pd.Timedelta(days=FIRST_FIT_DAYS), 1, seed)
    served.fits.append(seconds)
    last: dict[tuple[str, int], pd.Timestamp] = {}
    change: pd.Timestamp | None = None  # when the newest change was found
    refitted: tuple[pd.Timestamp, pd.Timestamp] | None = None  # the last refit: when, since
    now = start + pd.Timedelta(days=FIRST_FIT_DAYS)
    while now < end:
        if now == now.floor("1h") and now > start + pd.Timedelta(days=FIRST_FIT_DAYS):
            new = check(data, served, version, now, last)
            if band:  # the monitor's live band (engine/monitoring's rule)
                fresh = live_band(known_rows(served.rows, version.number, now)).scales
                if fresh and changed(version.band, fresh, BAND_TOLERANCE):
                    version.band = fresh
                    served.band_updates += 1
            for d in new:
                served.detections.append({**d, "strategy": strategy})
            since = None
            if strategy.startswith("drift_"):
                if new:
                    since = min(d["start"] for d in new)
                    change = max(d["time"] for d in new)
                elif (  # a follow-up while the change is new (engine/monitoring's rule)
                    change is not None
                    and refitted is not None
                    and refitted[0] >= change
                    and now - change <= FOLLOW_UP_FOR_H * HOUR
                    and now - refitted[0] >= FOLLOW_UP_H * HOUR
                ):
                    since = refitted[1]
            if (strategy == "periodic" and now == now.floor("D")) or since is not None:
                method = {"drift_ewc": "ewc", "drift_finetune": "finetune"}.get(strategy)
                try:
                    version, seconds = fit_version(
                        data, now, version.number + 1, seed, version, method, since
                    )
                except ForecastInputError as exc:  # as the monitor reports a failed refit
                    served.failed_fits.append(f"{now.isoformat()}: {exc}")
                else:
                    served.fits.append(seconds)
                    if since is not None:
                        refitted = (now, since)
        served.rows += forecast_rows(version, data, grid, now, "served")
        now += cadence
    return served


def rmse(rows: pd.DataFrame, lo: float, hi: float, start: pd.Timestamp) -> dict[str, float]:
    out = {}
    span = rows[(rows["origin"] >= start + pd.Timedelta(days=lo))]
    span = span[span["origin"] < start + pd.Timedelta(days=hi)]
    for h in HORIZONS:
        e = span.loc[span["horizon"] == h, "mean"] - span.loc[span["horizon"] == h, "realised"]
        e = e[np.isfinite(e.to_numpy(float))]
        out[f"rmse_{h}"] = float(np.sqrt(np.mean(e**2))) if len(e) else float("nan")
    return out


def rollback_run(
    data: pd.DataFrame, seed: int, cadence: pd.Timedelta, days: float, corrupt: bool
) -> dict[str, Any]:
    """Hours until the paired test rolls the new version back (None: never)."""
    grid = target_grid(data, TARGET)
    start = data.index[0].floor("D")
    end = start + pd.Timedelta(days=days) - pd.Timedelta(minutes=max(HORIZONS))
    good, _ = fit_version(data, start + pd.Timedelta(days=FIRST_FIT_DAYS), 1, seed)
    if corrupt:
        shifted = data.copy()
        shifted[TARGET] = shifted[TARGET] + CALIBRATION_ERROR
        bad, _ = fit_version(shifted, start + pd.Timedelta(days=FIRST_FIT_DAYS), 2, seed)
        new_from = start + pd.Timedelta(days=FIRST_FIT_DAYS + 1)
    else:
        bad, _ = fit_version(data, start + pd.Timedelta(days=7), 2, seed)
        new_from = start + pd.Timedelta(days=7)
    rows: list[dict[str, Any]] = []
    now = new_from
    while now < end:
        if now == now.floor("1h") and now > new_from:
            known = pd.concat(
                [known_rows(rows, 2, now), known_rows(rows, 1, now)], ignore_index=True
            )
            verdict = paired_verdict(pairs_of(known, 2, 1)) if not known.empty else None
            if verdict is not None and verdict.worse:
                return {"rolled_back_after_h": (now - new_from) / HOUR, **verdict.to_dict()}
        rows += forecast_rows(bad, data, grid, now, "served")
        rows += forecast_rows(good, data, grid, now, "shadow")
        now += cadence
    return {"rolled_back_after_h": None}


def coverage(rows: pd.DataFrame, raw: bool = False) -> float | None:
    """The share of scored rows inside their served 90 % band; with ``raw``, inside the
    model's own band (the served one without the live band's scale)."""
    ok = rows[np.isfinite(rows["realised"].to_numpy(float))]
    if ok.empty:
        return None
    low, high = ok["q05"], ok["q95"]
    if raw:
        mid, scale = ok["q50"], ok["band_scale"]
        low, high = mid - (mid - low) / scale, mid + (high - mid) / scale
    inside = (low <= ok["realised"]) & (ok["realised"] <= high)
    return float(inside.mean())


def summary(values: list[float | None]) -> dict[str, Any] | None:
    """Median, range and how many of per-twin coverages are within 0.87-0.93."""
    known = [v for v in values if v is not None]
    if not known:
        return None
    return {
        "median": round(float(np.median(known)), 3),
        "min": round(min(known), 3),
        "max": round(max(known), 3),
        "in_087_093": sum(0.87 <= v <= 0.93 for v in known),
        "of": len(known),
    }


def real_data(folder: Path, seed: int, cadence: pd.Timedelta) -> dict[str, Any]:
    """The frozen GRU with hourly checks on real people: detections and live coverage."""
    frame = load_cgm_iglu(folder)
    people = []
    for k, twin in enumerate(sorted(frame["twin_id"].unique())):
        data = wide(frame, twin)
        span = (data.index[-1] - data.index[0]) / pd.Timedelta(days=1)
        if span < 5 or len(data) / span < 200:
            continue  # too short, or long gaps: not a CGM wearer's week
        days = float(np.floor(span)) + 1.0
        served = serve(data, "frozen", seed + k, cadence, days)
        rows = pd.DataFrame(served.rows)
        people.append(
            {
                "twin": twin,
                "days_served": round(span - FIRST_FIT_DAYS, 2),
                "detections": len(served.detections),
                "streams": sorted({d["stream"] for d in served.detections}),
                "coverage90": None if rows.empty else coverage(rows),
                "coverage90_model_band": None if rows.empty else coverage(rows, raw=True),
                "band_updates": served.band_updates,
            }
        )
    twin_days = sum(p["days_served"] for p in people)
    covered = [p["coverage90"] for p in people if p["coverage90"] is not None]
    raw = [p["coverage90_model_band"] for p in people if p["coverage90_model_band"] is not None]
    return {
        "people": people,
        "twin_days": round(twin_days, 1),
        "false_alarms_per_30_twin_days": round(
            30 * sum(p["detections"] for p in people) / twin_days, 2
        )
        if twin_days
        else None,
        "coverage90_median": float(np.median(covered)) if covered else None,
        "coverage90_in_087_093": sum(0.87 <= c <= 0.93 for c in covered),
        "coverage90_pooled": float(np.mean(covered)) if covered else None,
        "model_band": {
            "coverage90_median": float(np.median(raw)) if raw else None,
            "coverage90_in_087_093": sum(0.87 <= c <= 0.93 for c in raw),
        },
    }


def one_patient(
    job: tuple[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[str], int, float, float, bool],
) -> dict[str, Any]:
    """Every strategy, the false alarms, the oracle and the rollbacks of one patient (in a
    worker process: module-level, torch on one thread)."""
    name, changed, steady, resistant, strategies, seed, cadence_min, days, skip_steady = job
    torch.set_num_threads(1)
    cadence = pd.Timedelta(minutes=cadence_min)
    twin = name.replace("#", "-")
    start = changed.index[0].floor("D")
    out: dict[str, Any] = {"twin": twin, "strategies": {}, "delay_h": None, "return_h": None}
    for strategy in strategies:
        served = serve(changed, strategy, seed, cadence, days)
        rows = pd.DataFrame(served.rows)
        out["strategies"][strategy] = {
            "rmse": {
                "days_11_16": rmse(rows, CHANGE_DAY, RETURN_DAY, start),
                "days_17_21": rmse(rows, RETURN_DAY, days, start),
            },
            "days_13_16": rmse(rows, CHANGE_DAY + 2, RETURN_DAY, start),
            "fits": len(served.fits),
            "fit_s": sum(served.fits),
            "coverage90": coverage(rows),
            "coverage90_model_band": coverage(rows, raw=True),
            "failed_fits": served.failed_fits,
        }
        if strategy == "frozen":
            change = start + pd.Timedelta(days=CHANGE_DAY)
            back = start + pd.Timedelta(days=RETURN_DAY)
            after = [d["time"] for d in served.detections if d["time"] >= change]
            out["delay_h"] = (min(after) - change) / HOUR if after else None
            later = [d["time"] for d in served.detections if d["time"] >= back]
            out["return_h"] = (min(later) - back) / HOUR if later else None
            out["detections_changed"] = [
                {"stream": d["stream"], "time": d["time"].isoformat()} for d in served.detections
            ]
    out["false_alarms"] = {"twin": twin, "detections": 0, "streams": [], "skipped": skip_steady}
    if not skip_steady:
        quiet = serve(steady, "frozen", seed, cadence, days)
        quiet_rows = pd.DataFrame(quiet.rows)
        out["false_alarms"].update(
            detections=len(quiet.detections),
            streams=sorted({d["stream"] for d in quiet.detections}),
            coverage90=coverage(quiet_rows),
            coverage90_model_band=coverage(quiet_rows, raw=True),
        )
    model, _ = fit_version(resistant, resistant.index[-1] + pd.Timedelta(minutes=5), 1, seed)
    grid = target_grid(changed, TARGET)
    oracle_rows: list[dict[str, Any]] = []
    now = start + pd.Timedelta(days=CHANGE_DAY + 2)
    while now < start + pd.Timedelta(days=RETURN_DAY):
        oracle_rows += forecast_rows(model, changed, grid, now, "served")
        now += cadence
    out["oracle"] = rmse(pd.DataFrame(oracle_rows), CHANGE_DAY + 2, RETURN_DAY, start)
    skipped = {"skipped": True}
    out["rollback_corrupted"] = (
        skipped if skip_steady else rollback_run(steady, seed, cadence, days, True)
    )
    out["rollback_better"] = (
        skipped if skip_steady else rollback_run(steady, seed, cadence, days, False)
    )
    print(f"{twin} done", file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--days", type=float, default=21.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cadence", type=float, default=15.0, help="minutes between forecasts")
    parser.add_argument("--cache", type=Path, default=None, help="simulation cache folder")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument(
        "--cgm-iglu", type=Path, default=None, help="run on the iglu CGM files in this folder"
    )
    parser.add_argument(
        "--skip-steady",
        action="store_true",
        help="only the changed runs' strategies and the oracle (no false alarms, no rollback)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.cgm_iglu is not None:
        began = time.perf_counter()
        real: dict[str, Any] = {
            "benchmark": "drift",
            "data": f"iglu example CGM files in {args.cgm_iglu.name}",
            "seed": args.seed,
            "cadence_min": args.cadence,
            "detector": DEFAULT_DETECTOR,
            "machine": machine(),
            **real_data(args.cgm_iglu, args.seed, pd.Timedelta(minutes=args.cadence)),
        }
        real["seconds"] = round(time.perf_counter() - began, 1)
        text = json.dumps(real, indent=2, default=str)
        print(text)
        if args.json is not None:
            args.json.write_text(text)
        return real
    names = list(ADULTS[: args.patients])
    began = time.perf_counter()
    sim = {
        "steady": simulate_cohort(names, args.days, args.seed, args.cache, args.workers),
        "changed": simulate_cohort(
            names,
            args.days,
            args.seed,
            args.cache,
            args.workers,
            changes=[(CHANGE_DAY, RESISTANCE), (RETURN_DAY, RESTORED)],
        ),
        "resistant": simulate_cohort(
            names, CHANGE_DAY, args.seed + 1, args.cache, args.workers, changes=[(0.0, RESISTANCE)]
        ),
    }
    simulated_s = time.perf_counter() - began
    strategies = [s for s in args.strategies.split(",") if s]
    per: dict[str, dict[str, Any]] = {
        s: {
            "rmse": [],
            "fits": [],
            "fit_s": [],
            "failed_fits": [],
            "coverage": [],
            "coverage_model": [],
        }
        for s in strategies
    }
    delays: list[float | None] = []
    returns: list[float | None] = []
    false_alarms: list[dict[str, Any]] = []
    oracle: list[dict[str, float]] = []
    window_13_16: dict[str, list[dict[str, float]]] = {s: [] for s in strategies}
    rollbacks: dict[str, list[Any]] = {"corrupted": [], "better": []}
    jobs = [
        (
            name,
            wide(sim["changed"], name.replace("#", "-")),
            wide(sim["steady"], name.replace("#", "-")),
            wide(sim["resistant"], name.replace("#", "-")),
            strategies,
            args.seed + k,
            args.cadence,
            args.days,
            args.skip_steady,
        )
        for k, name in enumerate(names)
    ]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max(1, args.workers), mp_context=context) as pool:
        results = list(pool.map(one_patient, jobs))
    for result in results:
        for strategy in strategies:
            mine = result["strategies"][strategy]
            per[strategy]["rmse"].append(mine["rmse"])
            window_13_16[strategy].append(mine["days_13_16"])
            per[strategy]["fits"].append(mine["fits"])
            per[strategy]["failed_fits"] += mine["failed_fits"]
            per[strategy]["fit_s"].append(mine["fit_s"])
            per[strategy]["coverage"].append(mine["coverage90"])
            per[strategy]["coverage_model"].append(mine["coverage90_model_band"])
        delays.append(result["delay_h"])
        returns.append(result["return_h"])
        false_alarms.append(result["false_alarms"])
        oracle.append(result["oracle"])
        rollbacks["corrupted"].append(result["rollback_corrupted"])
        rollbacks["better"].append(result["rollback_better"])

    def mean_of(items: list[dict[str, float]], key: str) -> float:
        values = [i[key] for i in items if np.isfinite(i[key])]
        return round(float(np.mean(values)), 2) if values else float("nan")

    table: dict[str, dict[str, Any]] = {}
    for s in strategies:
        table[s] = {
            f"{span}_{h}": mean_of([r[span] for r in per[s]["rmse"]], h)
            for span in ("days_11_16", "days_17_21")
            for h in ("rmse_30", "rmse_60")
        }
        table[s]["days_13_16_rmse_30"] = mean_of(window_13_16[s], "rmse_30")
        table[s]["fits"] = int(sum(per[s]["fits"]))
        table[s]["fit_seconds"] = round(float(sum(per[s]["fit_s"])), 1)
        table[s]["failed_fits"] = per[s]["failed_fits"]
        table[s]["coverage90"] = summary(per[s]["coverage"])
        table[s]["coverage90_model_band"] = summary(per[s]["coverage_model"])
    found = [d for d in delays if d is not None]
    twin_days = len(names) * (args.days - FIRST_FIT_DAYS)
    report: dict[str, Any] = {
        "benchmark": "drift",
        "data": f"simglucose {len(names)} adults x {args.days:g} days; insulin sensitivity "
        f"(Vmx, kp3) x0.6 from day {CHANGE_DAY + 1:g}, restored on day {RETURN_DAY + 1:g}",
        "seed": args.seed,
        "cadence_min": args.cadence,
        "detector": DEFAULT_DETECTOR,
        "machine": machine(),
        "simulation_s": round(simulated_s, 1),
        "strategies": table,
        "oracle_days_13_16_rmse_30": mean_of(oracle, "rmse_30"),
        "detection": {
            "delays_h": delays,
            "median_delay_h": float(np.median(found)) if found else None,
            "max_delay_h": float(max(found)) if found else None,
            "missed": sum(d is None for d in delays),
            "after_return_h": returns,
            "false_alarms": false_alarms,
            "false_alarms_per_30_twin_days": round(
                30 * sum(f["detections"] for f in false_alarms) / twin_days, 2
            ),
            "on_changed_runs": [r.get("detections_changed") for r in results],
        },
        "steady_coverage90": summary([f.get("coverage90") for f in false_alarms]),
        "steady_coverage90_model_band": summary(
            [f.get("coverage90_model_band") for f in false_alarms]
        ),
        "rollback": rollbacks,
        "seconds": round(time.perf_counter() - began, 1),
    }
    if "drift_ewc" in table and "drift_finetune" in table and "frozen" in table:
        frozen = table["frozen"]["days_17_21_rmse_30"]
        report["forgetting_days_17_21"] = {
            "ewc_excess": round(table["drift_ewc"]["days_17_21_rmse_30"] - frozen, 2),
            "finetune_excess": round(table["drift_finetune"]["days_17_21_rmse_30"] - frozen, 2),
        }
        report["ewc_over_oracle_days_13_16"] = round(
            table["drift_ewc"]["days_13_16_rmse_30"] / report["oracle_days_13_16_rmse_30"], 3
        )
    text = json.dumps(report, indent=2, default=str)
    print(text)
    if args.json is not None:
        args.json.write_text(text)
    return report


if __name__ == "__main__":
    main()
