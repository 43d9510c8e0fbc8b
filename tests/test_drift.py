"""Drift detection (issue #18): River's detectors on hourly streams fire on a planted step
and rarely on stationary series (rates over seeds, not one draw); the engine's check
records a detection once in the ledger, follows the twin's policy (alert only never
refits), and a monitor run goes on past a twin it cannot check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twinkit.cli.testing import run
from twinkit.core.errors import TwinkitError
from twinkit.engine import TwinEngine
from twinkit.monitor.drift import forecast_streams, input_streams, scan

CHANGE = pd.Timestamp("2026-01-11", tz="UTC")
DriftingFn = Callable[[int, int | None, int], pd.DataFrame]


def _hourly(seed: int, step: float = 0.0, days: int = 30, rho: float = 0.6) -> pd.Series:
    """A standardised hourly error stream: |0.8 + AR(1) noise|, plus ``step`` from day 10."""
    rng = np.random.default_rng(seed)
    n = 24 * days
    noise = np.zeros(n)
    for i in range(1, n):
        noise[i] = rho * noise[i - 1] + rng.normal(0, 0.3 * np.sqrt(1 - rho**2))
    values = 0.8 + noise
    values[24 * 10 :] += step
    index = pd.date_range("2026-01-01", periods=n, freq="1h", tz="UTC")
    return pd.Series(np.abs(values), index=index)


def test_adwin_fires_on_a_step_and_rarely_on_a_stationary_stream() -> None:
    false_alarms = sum(len(scan(_hourly(seed), "residuals")) for seed in range(30))
    delays = []
    for seed in range(20):
        after = [d for d in scan(_hourly(100 + seed, step=0.5), "residuals") if d.time >= CHANGE]
        delays.append((after[0].time - CHANGE) / pd.Timedelta(hours=1) if after else np.inf)

    assert false_alarms / 30 <= 0.5  # per 30 stream-days
    assert np.mean(np.isfinite(delays)) >= 0.9  # found in nearly every run ...
    assert np.median(delays) <= 48  # ... within two days of a +60 % error step


def test_a_detection_says_where_and_how_much() -> None:
    stream = _hourly(7, step=1.0)
    found = scan(stream, "residuals")
    first = next(d for d in found if d.time >= CHANGE)
    payload = first.to_dict()

    assert payload["stream"] == "residuals" and payload["detector"] == "adwin"
    assert CHANGE - pd.Timedelta(hours=24) <= pd.Timestamp(payload["window"]["start"])
    assert payload["statistic"]["mean_after"] > payload["statistic"]["mean_before"] + 0.5
    assert scan(stream, "residuals") == found  # a replay finds the same


@pytest.mark.parametrize("detector", ["page_hinkley", "kswin"])
def test_the_other_detectors_run_by_name(detector: str) -> None:
    found = scan(_hourly(3, step=1.5), "residuals", detector)
    assert any(d.time >= CHANGE for d in found)
    with pytest.raises(TwinkitError, match="unknown drift detector"):
        scan(_hourly(3), "residuals", "nope")


def test_streams_are_hourly_and_standardised() -> None:
    t0 = int(pd.Timestamp("2026-01-01", tz="UTC").value // 1000)
    hour = 3_600_000_000
    rows = pd.DataFrame(
        {
            "horizon": [30, 60, 30],
            "target_t": [t0, t0 + 60_000_000, t0 + hour],
            "mean": [100.0, 100.0, 100.0],
            "q05": [90.0, 95.0, 90.0],
            "q95": [110.0, 105.0, 110.0],
            "realised": [104.0, 110.0, 100.0],
        }
    )
    streams = forecast_streams(rows, {30: 4.0, 60: 5.0})
    assert streams["residuals"].tolist() == [1.5, 0.0]  # (4/4 + 10/5) / 2, then 0
    assert streams["misses"].tolist() == [0.5, 0.0]
    long = pd.DataFrame(
        {
            "channel": ["carbs", "carbs", "glucose", "glucose"],
            "t": [t0, t0 + 2 * hour, t0, t0 + 600_000_000],
            "value": [30.0, 50.0, 100.0, 120.0],
        }
    )
    inputs = input_streams(long, {"carbs"})
    assert inputs["input:carbs"].tolist() == [30.0, 0.0, 50.0]  # an hour without a meal is 0
    assert inputs["input:glucose"].tolist() == [110.0]


def _live(engine: TwinEngine, data: pd.DataFrame, start_day: int, days: int) -> None:
    """Serve a forecast every hour, each before the hour's readings arrive."""
    begin = 288 * start_day
    for k in range(begin, begin + 288 * days, 12):
        engine.predict("p1", (30, 60))
        engine.ingest(data.iloc[k : k + 12], twin="p1")


def _twin(engine: TwinEngine, data: pd.DataFrame) -> None:
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[: 288 * 3], twin="p1")
    assert engine.fit("p1", model="linear_ar").promoted


def test_the_check_records_drift_once_and_alert_only_never_refits(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: fitted on 3 days; served 4 days as before, then 2 days after a change
    data = drifting(9, 7, 11)
    _twin(engine, data)
    _live(engine, data, 3, 6)

    # Execute
    first = engine.monitor_check("p1")
    again = engine.monitor_check("p1")

    # Assert: a detection in the forecast streams after the change, recorded once, no refit
    change = pd.Timestamp("2026-01-08", tz="UTC")
    on_forecasts = [d for d in first["new"] if d["stream"] in ("residuals", "misses")]
    assert on_forecasts
    assert all(pd.Timestamp(d["time"]) >= change for d in on_forecasts)
    assert min(pd.Timestamp(d["time"]) for d in on_forecasts) <= change + pd.Timedelta(hours=24)
    assert again["new"] == [] and again["detections"] == []  # streams restart after them
    assert first["policy"] == "alert" and first["refit"] is None
    assert [v.version for v in engine.models("p1")] == [1]
    history = [e for e in engine.history("p1") if e.event == "drift_detected"]
    assert len(history) == len(first["new"])
    assert history[0].payload["version"] == 1 and "statistic" in history[0].payload
    alerts = engine.health("p1")["alerts"]
    assert [a["time"] for a in alerts] == [d["time"] for d in first["new"]]


def test_no_drift_no_entry_and_refit_policy_fits_again(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    steady = drifting(9, None, 12)
    _twin(engine, steady)
    engine.set_monitor_policy("p1", "refit")
    _live(engine, steady, 3, 6)
    quiet = engine.monitor_check("p1")
    assert [d for d in quiet["new"] if d["stream"] in ("residuals", "misses")] == []

    engine.delete_twin("p1")
    changed = drifting(9, 7, 11)
    _twin(engine, changed)
    assert engine.monitor_policy("p1") == {"policy": "alert", "detector": "adwin"}  # a new twin
    engine.set_monitor_policy("p1", "refit")
    _live(engine, changed, 3, 6)
    result = engine.monitor_check("p1")

    assert result["new"] and result["policy"] == "refit"
    assert result["refit"] is not None and result["refit"]["version"] == 2
    events = [e.event for e in engine.history("p1")]
    since_created = events[len(events) - events[::-1].index("twin_created") :]
    assert since_created.count("monitor_policy_set") == 1
    with pytest.raises(TwinkitError, match="unknown monitor policy"):
        engine.set_monitor_policy("p1", "panic")


def test_monitor_run_goes_on_past_a_twin_it_cannot_check(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, drifting: DriftingFn
) -> None:
    db = str(tmp_path / "cli.db")
    engine = TwinEngine(db)
    data = drifting(6, None, 13)
    _twin(engine, data)
    _live(engine, data, 3, 1)
    engine.create_twin("empty", "state")  # no data at all
    engine.create_twin("d1", "decision")
    engine.store.dispose()

    code, out, err = run(
        capsys, "monitor", "run", "p1", "ghost", "d1", "empty", "--json", "--db", db
    )

    assert code == 0, err
    report = json.loads(out)
    # a decision twin's stream is its clone's agreement: with no answers, nothing found
    assert [r["twin"] for r in report["checked"]] == ["p1", "d1", "empty"]
    assert report["checked"][1]["detections"] == [] and report["checked"][1]["detector"] == (
        "page_hinkley"
    )
    assert list(report["failed"]) == ["ghost"] and "ghost" in report["failed"]["ghost"]
    code, out, _ = run(capsys, "monitor", "policy", "p1", "refit", "--db", db)
    assert code == 0 and "refit" in out
    code, _, err = run(capsys, "monitor", "policy", "p1", "sometimes", "--db", db)
    assert code == 1 and "unknown monitor policy" in err


def _serve_two_versions(engine: TwinEngine, data: pd.DataFrame, first: str, second: str) -> None:
    """v1 of model ``first``, then v2 of ``second`` serving (promoted by force if the gate
    refused it), then two days of hourly forecasts before their readings."""
    engine.create_twin("p1", "state")
    engine.ingest(data.iloc[: 288 * 3], twin="p1")
    engine.fit("p1", model=first)
    fitted = engine.fit("p1", model=second)
    if not fitted.promoted:
        engine.promote("p1", fitted.version)
    _live(engine, data, 3, 2)


def test_a_version_worse_in_live_use_is_rolled_back_with_the_evidence(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: persistence forced to serve over linear_ar, which forecasts the wave better
    _serve_two_versions(engine, drifting(5, None, 21), "linear_ar", "persistence")

    # Execute
    result = engine.monitor_check("p1")

    # Assert: rolled back to v1 by the paired test, recorded, shown on health
    judged = result["rollback"]
    assert judged["version"] == 2 and judged["shadow"] == 1
    assert judged["verdict"]["worse"] and judged["verdict"]["p_value"] < 0.01
    assert judged["verdict"]["hours"] >= 24
    assert judged["rolled_back_to"] == 1
    assert engine.version("p1").version == 1
    entry = [e for e in engine.history("p1") if e.event == "model_rolled_back"][-1]
    assert entry.payload["automatic"] is True and entry.payload["from_version"] == 2
    assert entry.payload["evidence"]["rmse_served"] > entry.payload["evidence"]["rmse_shadow"]
    assert "automatic" in entry.payload["reason"]
    rollbacks = engine.health("p1")["rollbacks"]
    assert [(r["from_version"], r["to_version"]) for r in rollbacks] == [(2, 1)]
    assert engine.predict("p1").version == 1
    # v1 serves again with nothing before it to compare against: no second rollback
    assert engine.monitor_check("p1")["rollback"]["rolled_back_to"] is None


def test_a_version_better_in_live_use_is_kept(engine: TwinEngine, drifting: DriftingFn) -> None:
    _serve_two_versions(engine, drifting(5, None, 22), "persistence", "linear_ar")

    result = engine.monitor_check("p1")

    judged = result["rollback"]
    assert (judged["version"], judged["shadow"]) == (2, 1)
    assert judged["verdict"]["worse"] is False and judged["rolled_back_to"] is None
    assert judged["verdict"]["rmse_served"] < judged["verdict"]["rmse_shadow"]
    assert engine.version("p1").version == 2
    assert engine.health("p1")["rollbacks"] == []


def test_a_change_in_the_data_is_not_found_again_by_the_version_fitted_after_it(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: from day 7 the person's glucose runs 60 mg/dL higher (a level the input
    # stream sees); v1 served through it and the monitor found it
    data = drifting(10, None, 31)
    data.loc[288 * 7 :, "value"] += 60.0
    _twin(engine, data)
    _live(engine, data, 3, 6)
    first = engine.monitor_check("p1")
    found = [d for d in first["new"] if d["stream"] == "input:glucose"]
    assert found and pd.Timestamp(found[0]["time"]) >= pd.Timestamp("2026-01-08", tz="UTC")

    # Execute: a new version (as a refit would make) serves the next day
    fitted = engine.fit("p1", model="linear_ar")
    if not fitted.promoted:
        engine.promote("p1", fitted.version)
    _live(engine, data, 9, 1)
    second = engine.monitor_check("p1")

    # Assert: its input stream starts after the change already recorded
    assert [d for d in second["new"] if d["stream"] == "input:glucose"] == []


def test_a_refit_after_a_change_learns_from_most_of_the_new_regime(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: 8 days, the readings swinging four times as much from day 7 on
    data = drifting(8, 7, 2)
    engine.create_twin("p1", "state")
    engine.ingest(data, twin="p1")
    change = pd.Timestamp("2026-01-08", tz="UTC")

    # Execute: a fit with the change's start as ``since``, and one without
    after = engine.fit("p1", model="linear_ar", update="auto", since=change.isoformat())
    anew = engine.fit("p1", model="linear_ar")

    # Assert: with ``since`` the holdout is the new regime's last 20 % (reading 230 of its
    # 288 on), so most of the new day trains; without, the last 20 % of all readings
    # (1843 of 2304 on, from day 7: the new regime is all holdout)
    splits = [
        pd.Timestamp(e.payload["split"])
        for e in engine.history("p1")
        if e.event == "model_registered"
    ]
    assert splits[0] == change + pd.Timedelta(minutes=5 * 230)
    assert splits[1] == pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=5 * 1843)
    assert after.version == 1 and anew.version == 2


def _refitted_after_a_change(engine: TwinEngine, drifting: DriftingFn) -> tuple[pd.DataFrame, str]:
    """Twin p1 under the refit policy: its readings change on day 7, the change is found
    and refitted on day 8 (``monitor_check``). Returns the data and the refit's ``since``."""
    data = drifting(12, 7, 11)
    _twin(engine, data)
    engine.set_monitor_policy("p1", "refit")
    _live(engine, data, 3, 5)
    first = engine.monitor_check("p1")
    assert first["new"] and first["refit"] is not None
    return data, str(first["refit_since"])


def test_the_refit_policy_fits_again_while_a_change_is_new(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    # Prepare: a change on day 7 found and refitted on day 8
    data, since = _refitted_after_a_change(engine, drifting)

    # Execute: checks after a day more of the new regime, at once again, and days later
    _live(engine, data, 8, 1)
    follow = engine.monitor_check("p1")
    again = engine.monitor_check("p1")
    _live(engine, data, 9, 2)
    late = engine.monitor_check("p1")

    # Assert: one follow-up fit from the same start, none twice, none once the change is old
    assert follow["new"] == [] and follow["refit_since"] == since
    assert follow["refit"] is not None and follow["refit"]["version"] == 3
    assert again["refit_since"] is None and again["refit"] is None
    assert late["new"] == [] and late["refit_since"] is None
    registered = [e.payload for e in engine.history("p1") if e.event == "model_registered"]
    assert [p.get("since") is not None for p in registered] == [False, True, True]


def test_the_service_monitor_submits_the_follow_up_once_and_not_while_a_job_waits(
    engine: TwinEngine, drifting: DriftingFn
) -> None:
    from prometheus_client import CollectorRegistry

    from twinkit.service.metrics import ServiceMetrics
    from twinkit.service.monitor import Monitor

    # Prepare: a change found and refitted (the CLI's way), then a day more of data
    data, since = _refitted_after_a_change(engine, drifting)
    _live(engine, data, 8, 1)
    submitted: list[dict[str, object]] = []

    def submit(key: str, owner: str, params: dict[str, object], uid: str) -> None:
        submitted.append(params)
        engine.jobs.create(key, owner, "fit", params, twin_uid=uid)  # it waits: no runner

    monitor = Monitor(engine, ServiceMetrics(CollectorRegistry()), submit_fit=submit)

    # Execute: a round, then more data and another round while the job still waits
    first = monitor.check_round()
    _live(engine, data, 9, 1)
    second = monitor.check_round()

    # Assert: one follow-up fit job from the change's start; none while it waits
    assert first["refits"] == 1 and second["refits"] == 0
    assert submitted == [{"model": "auto", "seed": 0, "update": "auto", "since": since}]
