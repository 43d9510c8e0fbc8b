"""Drift checks of a twin, with its policy: alert only, or alert and refit.

:func:`check` builds the serving version's hourly streams (its scored forecasts:
``residuals`` and ``misses``; every channel's readings: ``input:CHANNEL``), each from
where its detector last fired, else from the version's first served forecast (see
:func:`_streams`), replays each through a fresh detector (:mod:`twinkit.monitor.drift`)
and records each detection as a ``drift_detected`` ledger entry (detector, stream,
statistic, window). A stream's start moves only when its detector fires, so a replay
gives the detector the same past as the round before: checking again records nothing
twice, and no detector state is kept between rounds. Under the ``refit`` policy a
new detection is followed by a fit (``twinkit monitor run``) or a fit job (the service)
with ``update="auto"``: a neural serving version is brought up to date by EWC and replay
from the serving weights, with the data from the earliest new detection's window on as
the new regime; a one-pass model is fitted anew. The fit's own promotion gate decides
whether the new version serves.

After the check, :func:`calibrate` sets a state twin's **live band**: the serving
version's 90 % band rescaled from its scored served forecasts (:mod:`twinkit.monitor.band`),
stored with the version and recorded as a ``band_recalibrated`` ledger entry when it moved.

A decision twin has one stream, ``rechecks`` (whether the donor, asked again about past
answers, contradicts them: :mod:`twinkit.engine.clone_live`), with its own detectors
(Page-Hinkley by default, :mod:`twinkit.clone.evolving`); a change it records moves the
window of answers the clone learns from, and under ``refit`` the clone is fitted again on
that window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

from twinkit.clone.evolving import ANSWER_DETECTORS, DEFAULT_ANSWER_DETECTOR
from twinkit.core.errors import TwinkitError
from twinkit.core.twin import TwinKind
from twinkit.data.windows import EVENT_CHANNELS
from twinkit.engine import clone_live, cohort, fitting, reads
from twinkit.engine.live import DRIFT_EVENT, shadow_version, state_twin
from twinkit.monitor.band import BAND_TOLERANCE, changed, live_band
from twinkit.monitor.drift import (
    DEFAULT_DETECTOR,
    DETECTORS,
    Detection,
    forecast_streams,
    input_streams,
    scan,
)
from twinkit.monitor.rollback import ALPHA, MARGIN, MIN_HOURS, paired_verdict, pairs_of
from twinkit.store import forecast_log, jobs, ledger, model_versions, observations, twins
from twinkit.store.db import Conn
from twinkit.store.timeutil import utc_now_iso

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

#: the ledger event of a policy change
POLICY_EVENT = "monitor_policy_set"
#: the ledger event of a new live band (see :func:`calibrate`)
BAND_EVENT = "band_recalibrated"
#: what the monitor may do on drift
POLICIES = ("alert", "refit")
DEFAULT_POLICY = "alert"
#: hours of data a check looks back over at most (two weeks; see :func:`_streams`)
DEFAULT_CHECK_WINDOW_H = 14 * 24.0
#: hours of readings before a version's first served forecast its input streams start from
REFERENCE_H = 72.0
#: under the refit policy, after a change: fit again with each this many hours of new data
FOLLOW_UP_H = 24.0
#: ... while the change was found at most this many hours before the newest reading
FOLLOW_UP_FOR_H = 72.0


def _detectors(kind: TwinKind) -> tuple[dict[str, Any], str]:
    """The detectors a twin of this kind may use, and its default."""
    if kind is TwinKind.DECISION:
        return ANSWER_DETECTORS, DEFAULT_ANSWER_DETECTOR
    return DETECTORS, DEFAULT_DETECTOR


def policy(ctx: EngineContext, twin_id: str) -> dict[str, str]:
    """The twin's monitor policy and detector (the defaults if never set)."""
    twin = reads.get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        found = twins.monitor_policy(conn, twin.key)
    name, detector = found if found is not None else (DEFAULT_POLICY, _detectors(twin.kind)[1])
    return {"policy": name, "detector": detector}


def set_policy(
    ctx: EngineContext, twin_id: str, name: str, detector: str | None = None
) -> dict[str, str]:
    """Set what the monitor does on drift for this twin, and with which detector (by
    default its kind's: ADWIN on a state twin's hourly streams, Page-Hinkley on a
    decision twin's answers); recorded in the ledger."""
    if name not in POLICIES:
        raise TwinkitError(f"unknown monitor policy {name!r}; known: {', '.join(POLICIES)}")
    twin = reads.get_twin(ctx, twin_id)
    table, default = _detectors(twin.kind)
    detector = detector or default
    if detector not in table:
        known = ", ".join(sorted(table))
        raise TwinkitError(
            f"unknown drift detector {detector!r} for a {twin.kind.value} twin; known: {known}"
        )
    with ctx.store.write() as conn:
        twins.set_monitor_policy(conn, twin.key, name, detector, utc_now_iso())
        ledger.append(conn, POLICY_EVENT, twin.key, {"policy": name, "detector": detector})
    return {"policy": name, "detector": detector}


def _micros_to_time(micros: int) -> pd.Timestamp:
    return pd.Timestamp(micros * 1000, tz="UTC")


def _last_detections(conn: Conn, key: str, version: int | None) -> dict[str, pd.Timestamp]:
    """Per stream, the time of the newest detection recorded: for the forecast streams, of
    this version (another version's errors say nothing of this one's); for the input
    streams, of any version (the data are the twin's: a change found while an earlier
    version served must not be found again by the version fitted because of it)."""
    last: dict[str, pd.Timestamp] = {}
    for entry in ledger.events_of(conn, key, [DRIFT_EVENT]):
        name = str(entry.payload["stream"])
        if name == clone_live.RECHECKS:
            continue  # a decision twin's (see clone_live)
        if entry.payload.get("version") != version and not name.startswith("input:"):
            continue
        name, when = str(entry.payload["stream"]), pd.Timestamp(entry.payload["time"])
        last[name] = max(last.get(name, when), when)
    return last


def _streams(
    ctx: EngineContext, key: str, window_h: float
) -> tuple[int | None, dict[str, pd.Series]]:
    """The serving version and the twin's hourly streams. Each stream starts where its
    detector last fired (River's detectors start afresh then), else at the version's first
    served forecast (input streams :data:`REFERENCE_H` hours before it: the data it was
    met with), but not before ``window_h`` hours before the newest reading, rounded down to
    a week. A stream's start so moves only when something happens (or once a week), and
    replaying it each round gives its detector the same past: the same detections."""
    with ctx.store.read() as conn:
        serving = model_versions.serving(conn, key)
        ends = observations.channel_ends(conn, key)
        if serving is None or not ends:
            return (serving.version if serving else None), {}
        ids = twins.channel_ids(conn, key, str(serving.params.get("target")))
        first = forecast_log.first_served(conn, ids, serving.version) if ids else None
        if first is None:
            return serving.version, {}  # the monitor watches versions that serve
        newest = _micros_to_time(max(ends.values()))
        floor = (newest - pd.Timedelta(hours=window_h)).floor("7D")
        forecasts_from = max(_micros_to_time(first), floor)
        inputs_from = max(forecasts_from - pd.Timedelta(hours=REFERENCE_H), floor)
        last = _last_detections(conn, key, serving.version)
        long = observations.read_signals(conn, key, start=int(inputs_from.value // 1000))
        rows = forecast_log.scored(conn, ids, int(forecasts_from.value // 1000))
    rows = rows[(rows["role"] == "served") & (rows["version"] == serving.version)]
    scale = {
        int(k.split("_")[1]): float(v)
        for k, v in serving.metrics.items()
        if k.startswith("rmse_") and k.split("_")[1].isdigit() and float(v) > 0
    }
    streams = {**forecast_streams(rows, scale), **input_streams(long, EVENT_CHANNELS)}
    for name, stream in streams.items():
        start = inputs_from if name.startswith("input:") else forecasts_from
        keep = stream.index >= start.floor("1h")
        after = last.get(name)
        if after is not None:
            keep &= stream.index > after
        streams[name] = stream[keep]
    return serving.version, streams


def check(
    ctx: EngineContext,
    twin_id: str,
    window_h: float = DEFAULT_CHECK_WINDOW_H,
    detector: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Look for drift in a twin's streams and record new detections (see module).

    Returns the twin, its serving version, policy, what the detectors found in this
    round's streams (``detections``) and what was recorded now (``new``)."""
    twin = reads.get_twin(ctx, twin_id)
    chosen = policy(ctx, twin.key)
    if twin.kind is TwinKind.DECISION:
        name = clone_live.answer_detector(detector or chosen["detector"])
        number, found_, new_ = clone_live.record_changes(ctx, twin, name, seed)
        return {
            "twin": twin.id,
            "version": number,
            "policy": chosen["policy"],
            "detector": name,
            "detections": found_,
            "new": new_,
        }
    twin = state_twin(ctx, twin_id, window_h, "the monitor checks state twins' streams")
    name = detector or chosen["detector"]
    version, streams = _streams(ctx, twin.key, window_h)
    found: list[Detection] = []
    for stream_name, stream in streams.items():
        found += scan(stream, stream_name, name, seed)
    new = []
    with ctx.store.write() as conn:
        recorded = _last_detections(conn, twin.key, version)  # another process may have
        for detection in sorted(found, key=lambda d: (d.time, d.stream)):
            previous = recorded.get(detection.stream)
            if previous is not None and previous >= detection.time:
                continue
            payload = {"version": version, **detection.to_dict()}
            ledger.append(conn, DRIFT_EVENT, twin.key, payload)
            recorded[detection.stream] = detection.time
            new.append(payload)
    return {
        "twin": twin.id,
        "version": version,
        "policy": chosen["policy"],
        "detector": name,
        "detections": [{"version": version, **d.to_dict()} for d in found],
        "new": new,
    }


def _recent_scored(
    conn: Conn, key: str, serving: model_versions.ModelVersion, window_h: float
) -> pd.DataFrame:
    """The scored log rows of the serving version's target channel over the ``window_h``
    hours of target time up to the newest scored one (every version's, both roles)."""
    ids = twins.channel_ids(conn, key, str(serving.params.get("target")))
    latest = forecast_log.latest_scored(conn, ids) if ids else None
    if latest is None:
        return pd.DataFrame()
    return forecast_log.scored(conn, ids, latest - int(window_h * 3600e6))


def calibrate(
    ctx: EngineContext, twin_id: str, window_h: float = DEFAULT_CHECK_WINDOW_H
) -> dict[str, Any]:
    """Set the serving version's live band from its scored served forecasts over the last
    ``window_h`` hours (:func:`twinkit.monitor.band.live_band`), if it changed by more than
    :data:`~twinkit.monitor.band.BAND_TOLERANCE`; a new band is a ``band_recalibrated``
    ledger entry. Returns the band found (``band``) and whether it was stored
    (``stored``)."""
    twin = state_twin(ctx, twin_id, window_h, "a clone's answers have no band")
    with ctx.store.read() as conn:
        serving = model_versions.serving(conn, twin.key)
        rows = _recent_scored(conn, twin.key, serving, window_h) if serving else pd.DataFrame()
    result: dict[str, Any] = {
        "twin": twin.id,
        "version": serving.version if serving else None,
        "band": None,
        "stored": False,
    }
    if serving is None or rows.empty:
        return result
    mine = rows[(rows["role"] == "served") & (rows["version"] == serving.version)]
    found = live_band(mine)
    result["band"] = found.to_dict()
    # too few scored forecasts lately say nothing against the band that serves
    if not found.scales or not changed(serving.live_band, found.scales, BAND_TOLERANCE):
        return result
    with ctx.store.write() as conn:
        now = model_versions.serving(conn, twin.key)
        if now is None or now.version != serving.version:
            return result  # it changed meanwhile: the next round calibrates the new one
        model_versions.set_live_band(conn, twin.key, serving.version, found.scales)
        ledger.append(
            conn,
            BAND_EVENT,
            twin.key,
            {
                "version": serving.version,
                "previous": {str(h): v for h, v in (serving.live_band or {}).items()},
                **found.to_dict(),
            },
        )
    result["stored"] = True
    return result


def rollback_check(
    ctx: EngineContext,
    twin_id: str,
    window_h: float = DEFAULT_CHECK_WINDOW_H,
    apply: bool = True,
    min_hours: int = MIN_HOURS,
    alpha: float = ALPHA,
    margin: float = MARGIN,
) -> dict[str, Any]:
    """Test the serving version's live error against its shadow's on the same forecasts
    (:func:`twinkit.monitor.rollback.paired_verdict`); if it is worse beyond noise and
    ``apply``, roll back, with the evidence in the ledger. Returns the verdict and
    ``rolled_back_to`` (None when it did not)."""
    twin = reads.get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        serving = model_versions.serving(conn, twin.key)
        # the version the log's shadow forecasts come from: the one a rollback would serve
        shadow = shadow_version(ctx, conn, twin.key, serving.version) if serving else None
        rows = pd.DataFrame()
        if serving is not None and shadow is not None:
            rows = _recent_scored(conn, twin.key, serving, window_h)
    result: dict[str, Any] = {
        "twin": twin.id,
        "version": serving.version if serving else None,
        "shadow": shadow,
        "verdict": None,
        "rolled_back_to": None,
    }
    if serving is None or shadow is None or rows.empty:
        return result
    verdict = paired_verdict(pairs_of(rows, serving.version, shadow), min_hours, alpha, margin)
    result["verdict"] = verdict.to_dict()
    if verdict.worse and apply:
        evidence = {"version": serving.version, "shadow": shadow, **verdict.to_dict()}
        evidence.pop("worse")
        try:
            result["rolled_back_to"] = fitting.rollback(
                ctx, twin.key, f"automatic: {verdict.reason}", evidence, serving.version
            )
        except TwinkitError as exc:  # it changed meanwhile, or the earlier one is broken
            result["verdict"]["reason"] += f"; not rolled back: {exc}"
    return result


def run(
    ctx: EngineContext,
    twin_id: str,
    window_h: float = DEFAULT_CHECK_WINDOW_H,
    detector: str | None = None,
    seed: int = 0,
    refit: bool = True,
    rollback: bool = True,
) -> dict[str, Any]:
    """:func:`rollback_check` (unless ``rollback`` is False), then :func:`check`, then for
    a state twin :func:`calibrate` (its live band), then under the ``refit`` policy a fit
    after a new detection, or a follow-up fit while a change is new
    (:func:`follow_up_since`), unless ``refit`` is False (the caller fits, e.g. as a
    background job, from ``refit_since``); the fit's result, or why it failed, is under
    ``refit``, the rollback test's under ``rollback``, the band's under ``band``."""
    decision = reads.get_twin(ctx, twin_id).kind is TwinKind.DECISION
    # a clone's versions are gated on the donor's held-out answers, not on a live log
    judged = (
        rollback_check(ctx, twin_id, window_h, apply=True) if rollback and not decision else None
    )
    result = check(ctx, twin_id, window_h, detector, seed)
    result["rollback"] = judged
    result["band"] = None if decision else calibrate(ctx, twin_id, window_h)
    result["refit"] = None
    result["refit_since"] = None
    since = None
    if result["policy"] == "refit":
        since = refit_since(result["new"]) if result["new"] else None
        if since is None and not decision:
            since = follow_up_since(ctx, twin_id)
    result["refit_since"] = since
    if refit and since is not None:
        try:
            fitted = cohort.fit_twin(ctx, twin_id, seed=seed, update="auto", since=since)
        except TwinkitError as exc:
            result["refit"] = {"error": str(exc)}
        else:
            result["refit"] = {
                "version": fitted.version,
                "promoted": fitted.promoted,
                "reason": fitted.reason,
                "how": (fitted.selection or {}).get("update") or "fitted anew",
            }
    return result


def follow_up_since(ctx: EngineContext, twin_id: str) -> str | None:
    """Where the new regime began, if the twin is due a follow-up refit: a fit with
    ``since`` (a refit after a change) came after the newest change was found, the change
    was found at most :data:`FOLLOW_UP_FOR_H` hours before the newest reading,
    :data:`FOLLOW_UP_H` hours of readings have come since that fit's data ended, and no
    job of the twin is waiting or running. A refit
    hours after a change has learnt from hours of the new regime; the next ones learn from
    days of it, as a daily refit would, but only while the change is new."""
    twin = reads.get_twin(ctx, twin_id)
    with ctx.store.read() as conn:
        entries = ledger.events_of(conn, twin.key, [DRIFT_EVENT, "model_registered"])
        ends = observations.channel_ends(conn, twin.key)
        pending = [
            j
            for j in jobs.jobs_of_twin(conn, twin.key, twin.uid)
            if j.status.value in jobs.UNFINISHED
        ]
    if not ends or pending:  # a fit waiting or running may be the follow-up already
        return None
    newest = _micros_to_time(max(ends.values()))
    found = [
        pd.Timestamp(e.payload["time"])
        for e in entries
        if e.event == DRIFT_EVENT and e.payload.get("stream") != clone_live.RECHECKS
    ]
    refits = [e.payload for e in entries if e.event == "model_registered" and "since" in e.payload]
    if not found or not refits or "data_end" not in refits[-1]:
        return None
    change, last = max(found), refits[-1]
    fitted_to = pd.Timestamp(last["data_end"])
    hour = pd.Timedelta(hours=1)
    if fitted_to < change or newest - change > FOLLOW_UP_FOR_H * hour:
        return None
    return str(last["since"]) if newest - fitted_to >= FOLLOW_UP_H * hour else None


def refit_since(detections: list[dict[str, Any]]) -> str:
    """Where the new regime begins for a refit: the earliest start of these detections'
    windows (the data from there on are the new ones)."""
    return min(str(d["window"]["start"]) for d in detections)


def changed_twins(ctx: EngineContext, seen: dict[str, int | None]) -> list[str]:
    """The twins whose data changed since ``seen`` (key -> data watermark), which is
    updated to now."""
    with ctx.store.read() as conn:
        marks = twins.data_marks(conn)
    changed = [key for key, mark in marks.items() if mark is not None and seen.get(key) != mark]
    seen.clear()
    seen.update(marks)
    return sorted(changed)
