"""Live accuracy: every forecast a twin serves is logged, with what the version before it
would have said (its shadow), and scored when the readings it forecast arrive.

:func:`record` is called by the serving paths (``TwinEngine.predict`` without ``as_of``,
``TwinEngine.forecast``, the service's forecast route and pages) with the forecast and
the model that made it. The record waits in the engine's :class:`ForecastLog` until
:func:`flush` writes it: at once by default (the CLI and Python), or every 0.25 s from the
service's monitor thread, so a request never waits for the log's write or for the
shadow's forecast. A forecast served again (the service's cache, a page reload) is one
logged forecast: it is the same function of the same version and data.

The shadow is the version a rollback would serve (the one that served before the
current one, as the ledger tells it), forecasting from the same data up to the same
origin. Scoring happens in the store, in the transaction that writes the readings (see
:mod:`twinkit.store.forecast_log`); :func:`health` reads the scored rows back and
summarises them with :mod:`twinkit.monitor.accuracy`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.core.errors import TwinkitError
from twinkit.core.forecast import Forecast
from twinkit.core.twin import Twin, TwinKind
from twinkit.data.frames import long_to_wide
from twinkit.engine import reads
from twinkit.engine.forecast_book import Served
from twinkit.models.base import Forecaster
from twinkit.monitor.accuracy import error_series, live_scores
from twinkit.monitor.band import scale_at
from twinkit.store import forecast_log, ledger, model_versions, observations, twins
from twinkit.store.db import Conn
from twinkit.store.timeutil import from_micros, to_micros, utc_now_iso

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

log = logging.getLogger(__name__)

#: ledger events that change which version serves
SERVING_EVENTS = ["model_promoted", "model_rolled_back", "twin_deleted", "twin_created"]
#: the ledger event of a drift detection (see :mod:`twinkit.engine.monitoring`)
DRIFT_EVENT = "drift_detected"
#: the window :func:`health` summarises by default, in hours before the newest scored reading
DEFAULT_WINDOW_H = 7 * 24.0


def record(
    ctx: EngineContext,
    twin_key: str,
    version: int,
    model: Forecaster,
    forecast: Forecast,
    band: Mapping[int, float] | None = None,
) -> None:
    """Log a forecast the twin stored under ``twin_key`` served with ``version`` (and the
    live ``band`` it was served with, if any). Never raises: the forecast was answered
    whatever becomes of its log entry."""
    if model.step_min is None:
        return
    scales = tuple(float(v) for v in scale_at(band, forecast.horizons)) if band else None
    ctx.forecast_log.add(Served(twin_key, int(version), float(model.step_min), forecast, scales))
    if ctx.forecast_log.autoflush:
        flush(ctx)


def flush(ctx: EngineContext) -> int:
    """Write the waiting forecasts with their shadows, in one transaction; return how many
    log rows were added. A failure is logged and counted, never raised: the forecasts
    were answered already."""
    book = ctx.forecast_log
    with book.flushing:  # the monitor thread and autoflush callers take turns
        pending = book.take()
        if not pending:
            return 0
        try:
            added = _write(ctx, _unique(pending))
        except Exception:  # the log must not take serving down with it
            book.failed += len(pending)
            log.exception("could not log %d served forecasts", len(pending))
            return 0
        book.written += added
        return added


def _unique(pending: list[Served]) -> list[Served]:
    seen: dict[tuple[str, int, Any, tuple[int, ...]], Served] = {}
    for item in pending:
        key = (item.twin_key, item.version, item.forecast.origin, item.forecast.horizons)
        seen.setdefault(key, item)
    return list(seen.values())


def _rows(
    channel_id: int,
    version_id: int,
    version: int,
    role: str,
    step_min: float,
    f: Forecast,
    band_scales: tuple[float, ...] | None = None,
) -> list[dict[str, Any]]:
    origin = int(to_micros(pd.DatetimeIndex([f.origin]))[0])
    width = round(step_min * 60e6)
    issued = utc_now_iso()
    q = f.quantiles
    rows = []
    for k, h in enumerate(f.horizons):
        target = origin + int(h) * 60_000_000
        if not all(np.isfinite(v) for v in (f.mean[k], q[0.05][k], q[0.5][k], q[0.95][k])):
            continue
        rows.append(
            {
                "channel_id": channel_id,
                "version_id": version_id,
                "version": version,
                "role": role,
                "origin_t": origin,
                "horizon": int(h),
                "target_t": target,
                "target_end": target + width,
                "mean": float(f.mean[k]),
                "q05": float(q[0.05][k]),
                "q50": float(q[0.5][k]),
                "q95": float(q[0.95][k]),
                "issued_at": issued,
                "band_scale": None if band_scales is None else band_scales[k],
            }
        )
    return rows


def shadow_version(ctx: EngineContext, conn: Conn, twin_key: str, version: int) -> int | None:
    """The version a rollback from ``version`` would serve (None: it is not the serving
    one, or nothing served before it), remembered until the twin's serving changes."""
    last = ledger.last_entry(conn, twin_key, SERVING_EVENTS)
    key = (twin_key, version, last.seq if last is not None else 0)
    cached = ctx.forecast_log.shadows.get(key)
    if cached is not None:
        return cached[0]
    found = ledger.rollback_target(ledger.entries(conn, twin_key), twin_key, version)
    ctx.forecast_log.shadows.put(key, (found,))
    return found


def _shadow_forecast(
    ctx: EngineContext, twin_key: str, version: int, served: Served
) -> Forecast | None:
    """What ``version`` forecasts from the twin's data up to the served forecast's origin,
    at its horizons; None if it cannot (a broken artifact, too little data)."""
    with ctx.store.read() as conn:
        chosen = model_versions.get_version(conn, twin_key, version)
    if chosen is None:
        return None
    try:
        model = ctx.serving_models.load(chosen.sha256)
        origin = int(to_micros(pd.DatetimeIndex([served.forecast.origin]))[0])
        reach = model.lookback_min()
        start = None if reach is None else origin - int(reach * 60_000_000)
        # The origin is the label of the last reading's grid bin: the bin's readings count.
        end = origin + round(served.step_min * 60e6) - 1
        with ctx.store.read() as conn:
            long = observations.read_signals(conn, twin_key, start=start, end=end)
        if long.empty:
            return None
        frame = long_to_wide(long)
        forecast = model.predict(frame, served.forecast.horizons)
    except (TwinkitError, KeyError, ValueError, TypeError, RuntimeError):
        return None
    if forecast.origin != served.forecast.origin or model.step_min is None:
        return None  # it reads its grid differently: not the same forecast to compare
    return forecast


def _write(ctx: EngineContext, pending: list[Served]) -> int:
    shadows: dict[int, tuple[int, Forecast]] = {}
    with ctx.store.read() as conn:
        previous = {
            i: shadow_version(ctx, conn, item.twin_key, item.version)
            for i, item in enumerate(pending)
        }
    for i, item in enumerate(pending):
        number = previous[i]
        if number is not None:
            made = _shadow_forecast(ctx, item.twin_key, number, item)
            if made is not None:
                shadows[i] = (number, made)
    rows: list[dict[str, Any]] = []
    with ctx.store.write() as conn:
        keys = sorted({item.twin_key for item in pending})
        channels = twins.channels_of(conn, keys)
        channel_of = {
            (str(t), str(n)): int(c)
            for c, t, n in channels[["id", "twin_id", "name"]].itertuples(index=False)
        }
        ids = {key: model_versions.version_ids(conn, key) for key in keys}
        for i, item in enumerate(pending):
            channel = channel_of.get((item.twin_key, item.forecast.target))
            version_id = ids[item.twin_key].get(item.version)
            if channel is None or version_id is None:
                continue  # the twin or the version is gone since it answered
            rows += _rows(
                channel,
                version_id,
                item.version,
                "served",
                item.step_min,
                item.forecast,
                item.band_scales,
            )
            if i in shadows:
                number, made = shadows[i]
                shadow_id = ids[item.twin_key].get(number)
                if shadow_id is not None:
                    rows += _rows(channel, shadow_id, number, "shadow", item.step_min, made)
        return forecast_log.insert(conn, rows)


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return pd.Timestamp(from_micros(np.array([micros], dtype=np.int64))[0]).isoformat()


def state_twin(ctx: EngineContext, twin_id: str, window_h: float, instead: str) -> Twin:
    """The state twin ``twin_id`` names, for a look over ``window_h`` hours (positive); a
    decision twin is refused, saying what it has ``instead``."""
    if window_h <= 0:
        raise TwinkitError(f"the window must be positive, got {window_h} h")
    twin = reads.get_twin(ctx, twin_id)
    if twin.kind is not TwinKind.STATE:
        raise TwinkitError(f"twin {twin.id!r} is a decision twin: {instead}")
    return twin


def health(ctx: EngineContext, twin_id: str, window_h: float = DEFAULT_WINDOW_H) -> dict[str, Any]:
    """How the twin's served forecasts did: per version, role (served, or shadow for the
    version before) and horizon, RMSE, MAE, bias and 90 % coverage over the ``window_h``
    hours of target time up to the newest scored one; the live error per hour; and the
    holdout figures the serving version was promoted with."""
    twin = state_twin(ctx, twin_id, window_h, "its live health is its clone's agreement")
    with ctx.store.read() as conn:
        serving = model_versions.serving(conn, twin.key)
        target = serving.params.get("target") if serving is not None else None
        ids = twins.channel_ids(conn, twin.key, str(target)) if target is not None else []
        latest = forecast_log.latest_scored(conn, ids) if ids else None
        since = None if latest is None else latest - int(window_h * 3600e6)
        frame = forecast_log.scored(conn, ids, since) if ids else pd.DataFrame()
        counts = forecast_log.counts(conn, ids) if ids else forecast_log.counts(conn, [])
        shadow = (
            shadow_version(ctx, conn, twin.key, serving.version) if serving is not None else None
        )
    holdout = {}
    if serving is not None:
        holdout = {
            k: v
            for k, v in serving.metrics.items()
            if k.split("_")[0] in {"rmse", "mae", "coverage90"} or k == "score"
        }
    return {
        "twin": twin.id,
        "target": target,
        "serving": None
        if serving is None
        else {
            "version": serving.version,
            "model": serving.model,
            "holdout": holdout,
            "live_band": {str(h): v for h, v in (serving.live_band or {}).items()},
        },
        "shadow_version": shadow,
        "window": {"hours": window_h, "from": _iso(since), "to": _iso(latest)},
        "logged": counts,
        "live": live_scores(frame),
        "series": error_series(frame),
        "alerts": alerts(ctx, twin.key, serving.version) if serving else [],
        "rollbacks": automatic_rollbacks(ctx, twin.key),
    }


def alerts(ctx: EngineContext, key: str, version: int | None) -> list[dict[str, Any]]:
    """The drift detections recorded for this version of the twin, oldest first."""
    with ctx.store.read() as conn:
        entries = ledger.events_of(conn, key, [DRIFT_EVENT])
    return [
        {**e.payload, "recorded_at": e.created_at}
        for e in entries
        if e.payload.get("version") == version
    ]


def automatic_rollbacks(ctx: EngineContext, key: str) -> list[dict[str, Any]]:
    """The twin's automatic rollbacks, oldest first: from and to which version, why."""
    with ctx.store.read() as conn:
        entries = ledger.events_of(conn, key, ["model_rolled_back"])
    return [
        {**e.payload, "recorded_at": e.created_at} for e in entries if e.payload.get("automatic")
    ]
