"""A decision twin that follows its donor (issue #18, part 5): the agreement stream from the
store, the change recorded by the monitor, the fit on the answers since it, the health
view, the report's zone over time, and the policy.

The data: three other people label 400 items (two features in [0, 3), three classes by a
threshold rule on ``f1``, 5% noise). The donor first says "b" wherever the rule says "a";
after their first 120 answers they say "c" wherever the rule says "b" instead (and "a"
where it says "a"). Answers come in batches of 10 after a first batch of 60, on which v1
of the clone is fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from twinkit.engine import TwinEngine
from twinkit.engine.clone_live import agreement_stream
from twinkit.service import ServiceSettings, create_app

OTHERS = ["p1", "p2", "p3"]
N_ITEMS = 400


def rule(x: np.ndarray) -> np.ndarray:
    return np.where(x[:, 0] < 1.0, "a", np.where(x[:, 0] < 2.0, "b", "c"))


def items() -> tuple[np.ndarray, list[str]]:
    x = np.random.default_rng(0).uniform(0.0, 3.0, (N_ITEMS, 2))
    return x, [f"i{i:03d}" for i in range(N_ITEMS)]


def old_habit(x: np.ndarray) -> np.ndarray:
    said = rule(x).astype(object)
    said[said == "a"] = "b"
    return said


def new_habit(x: np.ndarray) -> np.ndarray:
    said = rule(x).astype(object)
    said[said == "b"] = "c"
    return said


def frame(twin: str, ids: list[str], x: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"twin_id": twin, "item_id": ids, "f1": x[:, 0], "f2": x[:, 1], "label": labels}
    )


def build(
    engine: TwinEngine, change_at: int | None = 120, answers: int = 240, owner: str | None = None
) -> None:
    """Others, the donor's first 60 answers, v1, then the rest in batches of 10 (the new
    habit from answer ``change_at`` on; None: never); the twins ``owner``'s."""
    x, ids = items()
    rng = np.random.default_rng(1)
    for person in [*OTHERS, "d"]:
        engine.create_twin(person, "decision", owner=owner)
    for person in OTHERS:
        labels = rule(x).astype(object)
        flip = rng.random(N_ITEMS) < 0.05
        labels[flip] = rng.choice(["a", "b", "c"], int(flip.sum()))
        engine.ingest(frame(person, ids, x, labels), source=person, owner=owner)
    said = old_habit(x[:answers])
    if change_at is not None:
        said[change_at:] = new_habit(x[change_at:answers])
    donor = "d" if owner is None else f"{owner}/d"
    engine.ingest(frame("d", ids[:60], x[:60], said[:60]), source="d-0", owner=owner)
    first = engine.fit(donor)
    assert first.promoted and first.version == 1
    for start in range(60, answers, 10):
        stop = start + 10
        rows = frame("d", ids[start:stop], x[start:stop], said[start:stop])
        engine.ingest(rows, source=f"d-{start}", owner=owner)


@pytest.fixture
def changed(engine: TwinEngine) -> TwinEngine:
    build(engine)
    return engine


def test_the_agreement_stream_checks_each_answer_against_the_clone_of_its_time(
    changed: TwinEngine,
) -> None:
    stream = agreement_stream(changed.context, changed.get_twin("d"))
    # the first 60 answers came before any version served
    assert len(stream) == 180 and stream["item_id"].iloc[0] == "i060"
    assert set(stream["version"]) == {1}
    before, after = stream["agree"].iloc[:60].mean(), stream["agree"].iloc[60:].mean()
    assert before >= 0.9 and after <= 0.6


def test_the_monitor_records_the_donor_change_once_and_the_fit_follows_it(
    changed: TwinEngine,
) -> None:
    # Execute: a check of the twin (the alert policy: no refit)
    result = changed.monitor_check("d")

    # Assert: one change, beginning near the donor's 120th answer, found soon after
    assert result["detector"] == "page_hinkley" and result["refit"] is None
    assert len(result["new"]) == 1
    change = result["new"][0]
    assert change["stream"] == "agreement" and change["version"] == 1
    start = int(change["answers"]["start"]["item_id"][1:])
    found = int(change["answers"]["at"]["item_id"][1:])
    assert 115 <= start <= 125 and found - 120 < 50
    assert change["statistic"]["mean_before"] > change["statistic"]["mean_after"]
    assert [e.event for e in changed.history("d")][-1] == "drift_detected"
    assert changed.monitor_check("d")["new"] == []  # checked again: nothing twice
    assert [v.version for v in changed.models("d")] == [1]  # alert only never refits

    # The next fit learns from the answers since the change only
    fitted = changed.fit("d")
    version = changed.models("d")[-1]
    assert fitted.version == 2
    assert version.params["answers_before_window"] == start
    x = np.random.default_rng(9).uniform(0.0, 3.0, (300, 2))
    test = pd.DataFrame({"item_id": [f"t{i}" for i in range(300)], "f1": x[:, 0], "f2": x[:, 1]})
    said = [d.label for d in changed.decide("d", test).decisions]
    assert np.mean(np.asarray(said) == new_habit(x)) >= 0.9
    assert fitted.promoted


def test_health_and_report_show_the_change(changed: TwinEngine) -> None:
    changed.monitor_check("d")
    changed.fit("d")

    health = changed.health("d")
    report = changed.clone_report("d", every=60)

    assert health["kind"] == "decision" and health["answers"] == 240
    assert health["checked"] == 180 and [v["version"] for v in health["per_version"]] == [1]
    assert len(health["alerts"]) == 1 and health["window"]["start"] is not None
    assert health["window"]["answers"] == 240 - report["answers_before_window"]
    assert health["recent"]["answers"] == 50
    stretches = report["zone_over_time"]
    assert stretches[0]["answers"] == [0, 60] and not stretches[0]["donor_changed"]
    pairs = [{(z["expected"], z["said"]) for z in s["zone"]} for s in stretches]
    changed_at = next(i for i, s in enumerate(stretches) if s["donor_changed"])
    assert all(("a", "b") in p for p in pairs[:changed_at])
    assert all(("b", "c") in p and ("a", "b") not in p for p in pairs[changed_at:])
    assert report["labels"] == 240 - report["answers_before_window"]
    assert {(z["expected"], z["said"]) for z in report["confusion_zone"]} >= {("b", "c")}


def test_the_refit_policy_fits_on_the_window_at_once(changed: TwinEngine) -> None:
    changed.set_monitor_policy("d", "refit")

    result = changed.monitor_check("d")

    assert result["refit"] is not None and result["refit"]["version"] == 2
    assert changed.models("d")[-1].params["answers_before_window"] > 100


def test_a_steady_donor_raises_no_alarm(engine: TwinEngine) -> None:
    build(engine, change_at=None)

    result = engine.monitor_check("d")

    assert result["new"] == [] and engine.health("d")["window"]["start"] is None
    assert engine.fit("d").version == 2
    assert engine.models("d")[-1].params["answers_before_window"] == 0


def test_a_decision_twin_refuses_a_state_detector(engine: TwinEngine) -> None:
    engine.create_twin("d", "decision")
    with pytest.raises(Exception, match="unknown drift detector 'kswin' for a decision twin"):
        engine.set_monitor_policy("d", "alert", "kswin")
    assert engine.set_monitor_policy("d", "alert", "ddm")["detector"] == "ddm"
    assert engine.monitor_policy("d")["detector"] == "ddm"


def test_the_health_route_shows_a_decision_twins_agreement_and_the_change(
    make_db_url: Callable[[str], str],
) -> None:
    token = "admin-token-for-tests-" + "x" * 32
    fields: dict[str, Any] = {"admin_token": SecretStr(token), "monitor_interval_s": 0}
    settings = ServiceSettings(**fields)
    with TestClient(create_app(make_db_url("svc"), settings)) as client:
        made = client.post(
            "/v1/owners", json={"name": "alice"}, headers={"Authorization": f"Bearer {token}"}
        )
        alice = {"Authorization": f"Bearer {made.json()['token']}"}
        state = cast(FastAPI, client.app).state.twinkit
        engine = state.engine
        build(engine, owner="alice")
        # the monitor's round: every twin whose answers moved its watermark
        assert state.monitor.check_round() == {
            "checked": 4,
            "failed": 0,
            "drifted": 1,
            "refits": 0,
            "rolled_back": 0,
        }
        assert state.monitor.check_round()["checked"] == 0  # nothing new since
        metrics = client.get("/metrics").text
        assert 'twinkit_drift_detections_total{stream="agreement"} 1.0' in metrics

        answer = client.get("/v1/twins/d/health", headers=alice)

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["kind"] == "decision" and body["twin_id"] == "d"
        assert body["checked"] == 180 and body["serving"]["version"] == 1
        assert body["serving"]["holdout"]["agreement"] > 0.8
        assert len(body["alerts"]) == 1 and body["alerts"][0]["stream"] == "agreement"
        assert body["window"]["start"] == body["alerts"][0]["answers"]["start"]
        engine.store.dispose()


def test_questions_check_the_donors_personal_zone(engine: TwinEngine) -> None:
    build(engine, change_at=None, answers=60)

    asked = engine.clone_queries("d", k=10)

    checks = [q for q in asked if q["check"]]
    assert len(asked) == 10 and len(checks) == 3 and asked[:3] == checks
    # where people say "a" and the clone, like its donor, "b"
    for q in checks:
        assert q["clone_says"] == "b" and q["features"]["f1"] < 1.0
    strategies = {q["item_id"]: q["strategy"] for q in engine.clone_waiting("d")}
    assert [strategies[q["item_id"]] for q in asked] == ["check"] * 3 + ["confusion"] * 7
