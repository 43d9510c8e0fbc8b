"""Over HTTP, each owner has its own id space (issue #16, defect 7), its view of the ledger
shows other owners' twins only as counts, and it chooses whether to share its twins for
population priors (defect 6)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from twinkit.service.state import ServiceState

Headers = dict[str, str]
StateTwinFn = Callable[[str, str], Headers]
TINY_GRU = {"hidden": 8, "epochs": 2, "context_min": 60, "batch_size": 128, "max_horizon_min": 30}


def test_two_owners_each_create_use_and_delete_their_own_twin_of_one_id(
    client: TestClient,
    state_twin: StateTwinFn,
    glucose_rows: list[dict[str, Any]],
    finished_job: Callable[[TestClient, str, Headers], dict[str, Any]],
) -> None:
    # Prepare
    alice = state_twin("alice", "p1")
    bob = state_twin("bob", "p1")  # 201: the id is taken only in alice's space

    # Execute
    bobs_rows = [
        {**r, "value": r["value"] + 100.0} for r in glucose_rows if r["channel"] == "glucose"
    ]
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    client.post("/v1/twins/p1/observations", json={"rows": bobs_rows}, headers=bob)
    started = client.post("/v1/twins/p1/fit", json={"model": "linear_ar"}, headers=bob)
    job = finished_job(client, f"/v1/twins/p1/jobs/{started.json()['id']}", bob)
    forecasts = [client.get("/v1/twins/p1/forecast", headers=h) for h in (alice, bob)]
    again = client.post("/v1/twins", json={"id": "p1", "kind": "state"}, headers=bob)

    # Assert
    assert job["status"] == "done", job
    assert job["twin_id"] == "p1"
    assert forecasts[0].status_code == 404  # alice's twin has no model; bob's fit was his
    assert forecasts[1].status_code == 200 and forecasts[1].json()["twin_id"] == "p1"
    assert again.status_code == 409 and "already exists" in again.json()["error"]["message"]
    alices, bobs = (client.get("/v1/twins/p1", headers=h).json() for h in (alice, bob))
    assert (alices["owner"], bobs["owner"]) == ("alice", "bob")
    assert alices["observations"] == len(glucose_rows)
    assert bobs["observations"] == len(bobs_rows)
    assert alices["metadata"] == {"secret": "marker-p1"}
    assert client.delete("/v1/twins/p1", headers=alice).status_code == 204
    assert client.get("/v1/twins/p1", headers=bob).json()["serving_version"] == 1


def test_another_owners_id_answers_exactly_as_an_id_no_one_has(
    client: TestClient, state_twin: StateTwinFn, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare
    state_twin("alice", "a-state")
    bob = new_owner("bob")

    # Execute
    taken, free = (
        [
            client.get(f"/v1/twins/{twin_id}{route}", headers=bob)
            for route in ("", "/forecast", "/history", "/models", "/signals")
        ]
        for twin_id in ("a-state", "nobody-has-it")
    )

    # Assert: the same status and the same message but for the id itself
    for mine, none in zip(taken, free, strict=True):
        assert mine.status_code == none.status_code == 404
        message = mine.json()["error"]["message"].replace("a-state", "ID")
        assert message == none.json()["error"]["message"].replace("nobody-has-it", "ID")


def test_an_owner_shares_its_twins_for_population_priors_only_when_it_says_so(
    client: TestClient, service: ServiceState, state_twin: StateTwinFn
) -> None:
    # Prepare
    alice = state_twin("alice", "p1")
    url = "/v1/owners/me/population-sharing"

    # Execute
    before = client.get(url, headers=alice).json()
    bad = client.put(url, json={"share": "yes"}, headers=alice)
    put = client.put(url, json={"share": True}, headers=alice)
    after = client.get(url, headers=alice).json()

    # Assert
    assert before == {"share": False}
    assert bad.status_code == 422
    assert put.json() == after == {"share": True}
    assert service.engine.sharing_owners() == ["alice"]
    assert client.get(url).status_code == 401


def test_an_owners_history_shows_a_shared_prior_without_the_other_owners_twins(
    client: TestClient, service: ServiceState, state_twin: StateTwinFn, glucose_rows: list[Any]
) -> None:
    # Prepare: two owners who share, each with a twin of data, and a prior pooled over both
    headers = {name: state_twin(name, f"{name}-twin") for name in ("alice", "bob")}
    for name, h in headers.items():
        client.post(f"/v1/twins/{name}-twin/observations", json={"rows": glucose_rows}, headers=h)
        client.put("/v1/owners/me/population-sharing", json={"share": True}, headers=h)
    service.engine.fit_population("gru", params=TINY_GRU, owner="alice")

    # Execute
    history = client.get("/v1/twins/alice-twin/history", headers=headers["alice"]).json()

    # Assert
    prior = next(e for e in history if e["event"] == "population_registered")
    assert prior["payload"]["twins"] == ["alice-twin"]
    assert (prior["payload"]["other_twins"], prior["payload"]["other_owners"]) == (1, 1)
    assert prior["payload"]["redacted"] is True
    assert "bob" not in repr(history)
