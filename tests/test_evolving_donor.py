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

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from twinkit.cli.testing import run
from twinkit.engine import TwinEngine
from twinkit.engine.clone_live import agreement_stream
from twinkit.service import ServiceSettings, create_app
from twinkit.store import observations

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
    """Others, the donor's first 60 answers, v1, then the rest as answers to the twin's
    questions, 10 at a time (the new habit from answer ``change_at`` on; None: never);
    the twins ``owner``'s."""
    x, ids = items()
    rng = np.random.default_rng(1)
    for person in [*OTHERS, "d"]:
        engine.create_twin(person, "decision", owner=owner)
    for person in OTHERS:
        labels = rule(x).astype(object)
        flip = rng.random(N_ITEMS) < 0.05
        labels[flip] = rng.choice(["a", "b", "c"], int(flip.sum()))
        engine.ingest(frame(person, ids, x, labels), source=person, owner=owner)
    donor = "d" if owner is None else f"{owner}/d"
    engine.ingest(frame("d", ids[:60], x[:60], old_habit(x[:60])), source="d-0", owner=owner)
    first = engine.fit(donor)
    assert first.promoted and first.version == 1
    given = 60
    while given < answers:
        asked = engine.clone_queries(donor, k=10)
        answered: list[tuple[str, str]] = []
        for q in asked:
            habit = old_habit if change_at is None or given < change_at else new_habit
            features = np.array([[q["features"]["f1"], q["features"]["f2"]]])
            answered.append((q["item_id"], str(habit(features)[0])))
            given += 1
        engine.clone_answer_labels(donor, answered, source=f"round-{given}")


def position(engine: TwinEngine, twin: str, answer: dict[str, Any]) -> int:
    """The index, in arrival order, of the answer a change entry names."""
    with engine.store.read() as conn:
        order = observations.answers_in_order(conn, engine.get_twin(twin).key)
    found = (order["batch_id"] == answer["batch_id"]) & (order["item_id"] == answer["item_id"])
    return int(np.flatnonzero(found.to_numpy())[0])


@pytest.fixture
def changed(engine: TwinEngine) -> TwinEngine:
    build(engine)
    return engine


def test_the_agreement_stream_checks_each_answer_against_the_clone_of_its_time(
    changed: TwinEngine,
) -> None:
    stream = agreement_stream(changed.context, changed.get_twin("d"))
    # the first 60 answers came before any version served; v1 served the rest
    assert len(stream) == 180 and set(stream["version"]) == {1}
    assert not stream["item_id"].isin([f"i{i:03d}" for i in range(60)]).any()
    before, after = stream["agree"].iloc[:60].mean(), stream["agree"].iloc[60:].mean()
    assert after < before - 0.2


def test_the_monitor_records_the_donor_change_once_and_the_fit_follows_it(
    changed: TwinEngine,
) -> None:
    # Execute: a check of the twin (the alert policy: no refit)
    result = changed.monitor_check("d")

    # Assert: one change, beginning near the donor's 120th answer, found soon after
    assert result["detector"] == "page_hinkley" and result["refit"] is None
    assert len(result["new"]) == 1
    change = result["new"][0]
    assert change["stream"] == "rechecks" and change["version"] == 1
    start = position(changed, "d", change["answers"]["start"])
    found = position(changed, "d", change["answers"]["at"])
    assert 110 <= start <= 120 and found - 120 < 50
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
    rechecks = health["rechecks"]
    assert rechecks["answered"] >= 40 and rechecks["as_before"] < rechecks["answered"]
    stretches = report["zone_over_time"]
    assert stretches[0]["answers"] == [0, 60] and not stretches[0]["donor_changed"]
    pairs = [{(z["expected"], z["said"]) for z in s["zone"]} for s in stretches]
    changed_at = next(i for i, s in enumerate(stretches) if s["donor_changed"])
    assert all(("a", "b") in p for p in pairs[:changed_at])
    # the stretch the change begins may hold a few answers given before it (the window
    # starts after the last recheck answered as before); the next ones are the new donor
    assert all(("b", "c") in p and ("a", "b") not in p for p in pairs[changed_at + 1 :])
    rates = {(z["expected"], z["said"]): z["person_rate"] for z in stretches[changed_at]["zone"]}
    assert rates.get(("a", "b"), 0.0) < 0.2
    assert report["labels"] == 240 - report["answers_before_window"]
    assert report["confusion_zone"][0]["expected"] == "b"
    assert report["confusion_zone"][0]["said"] == "c"


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
        engine.set_monitor_policy("alice/d", "refit")
        # the monitor's round: every twin whose answers moved its watermark; a fit job
        assert state.monitor.check_round() == {
            "checked": 4,
            "failed": 0,
            "drifted": 1,
            "refits": 1,
            "rolled_back": 0,
        }
        deadline = time.monotonic() + 120
        while len(engine.models("alice/d")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        refitted = engine.models("alice/d")[-1]
        assert refitted.version == 2 and refitted.params["answers_before_window"] > 100
        assert state.monitor.check_round()["checked"] == 0  # nothing new since
        metrics = client.get("/metrics").text
        assert 'twinkit_drift_detections_total{stream="rechecks"} 1.0' in metrics

        answer = client.get("/v1/twins/d/health", headers=alice)

        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["kind"] == "decision" and body["twin_id"] == "d"
        assert body["checked"] == 180 and body["serving"]["version"] in (1, 2)
        assert body["serving"]["holdout"]["agreement"] > 0.8
        assert len(body["alerts"]) == 1 and body["alerts"][0]["stream"] == "rechecks"
        assert body["rechecks"]["answered"] >= 40
        assert body["window"]["start"] == body["alerts"][0]["answers"]["start"]
        engine.store.dispose()


def test_questions_ask_the_donor_again_where_they_departed_from_people(
    engine: TwinEngine,
) -> None:
    build(engine, change_at=None, answers=60)

    asked = engine.clone_queries("d", k=10)
    again = engine.clone_queries("d", k=10)

    rechecks = [q for q in asked if q["recheck"] is not None]
    assert len(asked) == 10 and len(rechecks) == 3
    with engine.store.read() as conn:
        mine = observations.answers_in_order(conn, engine.get_twin("d").key)
    said = dict(zip(mine["item_id"], mine["label"], strict=True))
    for q in rechecks:
        # an item the donor answered "b" where people answer "a", asked again as ITEM~1
        assert q["item_id"] == f"{q['recheck']}~1" and said[q["recheck"]] == "b"
        assert q["features"]["f1"] < 1.0
    # the oldest such answers first, and none asked again while a recheck of it waits
    order = mine["item_id"].tolist()
    places = [order.index(q["recheck"]) for q in rechecks]
    assert places == sorted(places)
    waiting = {q["recheck"] for q in rechecks}
    assert not waiting & {q["recheck"] for q in again if q["recheck"] is not None}
    strategies = {q["item_id"]: q["strategy"] for q in engine.clone_waiting("d")}
    assert sorted(strategies[q["item_id"]] for q in asked) == ["confusion"] * 7 + ["recheck"] * 3


def test_the_cli_shows_the_change(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    db = str(tmp_path / "cli.db")
    engine = TwinEngine(db)
    build(engine)
    engine.store.dispose()

    code, out, err = run(capsys, "monitor", "run", "d", "--db", db)
    assert code == 0, err
    assert "d: 1 detection(s) in the window, 1 new" in out and "rechecks (page_hinkley)" in out
    code, out, err = run(capsys, "health", "d", "--db", db)
    assert code == 0, err
    assert "serving v1 (clone)" in out and "rechecks (past questions asked again)" in out
    assert "the clone learns from the" in out and "the donor changed (page_hinkley)" in out
    code, out, err = run(capsys, "clone", "report", "d", "--every", "60", "--db", db)
    assert code == 0, err
    assert "no longer teach the clone" in out and "(changed)" in out and "b->c" in out


def test_one_question_at_a_time_rechecks_about_one_in_three(engine: TwinEngine) -> None:
    build(engine, change_at=None, answers=60)

    asked = [engine.clone_queries("d", k=1)[0] for _ in range(6)]

    assert [q["recheck"] is not None for q in asked] == [False, True, False, False, True, False]
