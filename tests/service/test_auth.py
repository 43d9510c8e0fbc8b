"""Who may do what: the authorization matrix over every route naming a twin, owners and
the admin, tokens kept only as hashes, rate limits."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from twinkit.service.routes import route_specs
from twinkit.service.state import ServiceState
from twinkit.store import tables

Headers = dict[str, str]
ALICE_TWIN = "alice-p1"


def _twin_routes() -> list[tuple[str, str]]:
    """(method, path template) of every route whose path names a twin."""
    return sorted(
        (method, spec.path)
        for spec in route_specs()
        for method in spec.methods
        if "{twin_id}" in spec.path
    )


def _call(client: TestClient, method: str, template: str, headers: Headers) -> httpx.Response:
    path = template.replace("{twin_id}", ALICE_TWIN).replace("{job_id}", "1")
    leftover = re.findall(r"{\w+}", path)
    assert not leftover, f"the matrix does not know how to fill {leftover} in {template}"
    # A plausible body on every write: the refusal must not depend on the body being bad.
    body: dict[str, Any] = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
    answer: httpx.Response = client.request(method, path, headers=headers, **body)
    return answer


@pytest.fixture
def alice_with_data(
    client: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    glucose_rows: list[dict[str, Any]],
) -> Headers:
    """Alice's twin with data, a quarantined row, a model and a job: things a leak would show."""
    alice = state_twin("alice", ALICE_TWIN)
    rows = [
        *glucose_rows[:600],
        {"time": "2026-01-05T00:02:00Z", "channel": "glucose", "value": 5000.0},
    ]
    assert (
        client.post(
            f"/v1/twins/{ALICE_TWIN}/observations", json={"rows": rows}, headers=alice
        ).status_code
        == 200
    )
    service.engine.fit(ALICE_TWIN, model="persistence")
    service.engine.jobs.create(ALICE_TWIN, "alice", "fit", {"model": "persistence"}, "elsewhere:1")
    return alice


def test_the_matrix_covers_every_route_the_app_documents(client: TestClient) -> None:
    # Prepare
    documented = {
        (method.upper(), path)
        for path, operations in client.get("/openapi.json").json()["paths"].items()
        for method in operations
    }

    # Execute
    served = {(m, spec.path) for spec in route_specs() for m in spec.methods}

    # Assert: route_specs (what the matrix walks) is exactly what the app serves
    assert served == documented
    assert len(_twin_routes()) >= 14


def test_another_owners_twin_answers_exactly_as_a_missing_twin(
    client: TestClient,
    service: ServiceState,
    alice_with_data: Headers,
    new_owner: Callable[[str], Headers],
) -> None:
    # Prepare
    bob = new_owner("bob")

    # Execute: Bob on Alice's twin, then on the same id once it no longer exists
    theirs = {r: _call(client, *r, bob) for r in _twin_routes()}
    service.engine.delete_twin(ALICE_TWIN)
    missing = {r: _call(client, *r, bob) for r in _twin_routes()}

    # Assert
    for route, answer in theirs.items():
        assert answer.status_code == 404, (route, answer.text)
        assert answer.content == missing[route].content, route
        assert "marker-" not in answer.text
        assert answer.json()["error"] == {
            "type": "NotFoundError",
            "message": f"no twin {ALICE_TWIN!r}",
            "problems": [],
        }


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("no token", {}),
        ("empty bearer", {"Authorization": "Bearer "}),
        ("other scheme", {"Authorization": "Basic YWxpY2U6c2VjcmV0"}),
        ("two words", {"Authorization": "Bearer abc def"}),
        ("bad characters", {"Authorization": "Bearer tok$en!"}),
        ("unknown token", {"Authorization": "Bearer twk_" + "A" * 43}),
    ],
)
def test_twin_routes_refuse_callers_without_a_valid_token(
    client: TestClient, alice_with_data: Headers, case: str, headers: Headers
) -> None:
    for route in _twin_routes():
        # Execute
        answer = _call(client, *route, headers)

        # Assert
        assert answer.status_code == 401, (case, route, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert "marker-" not in answer.text
        assert answer.json()["error"]["type"] == "Unauthorized"


def test_the_admin_token_does_not_open_twins(
    client: TestClient, alice_with_data: Headers, admin: Headers
) -> None:
    for route in _twin_routes():
        answer = _call(client, *route, admin)
        assert answer.status_code == 403, (route, answer.text)
        assert "marker-" not in answer.text


def test_the_owner_reaches_their_twin(client: TestClient, alice_with_data: Headers) -> None:
    answer = client.get(f"/v1/twins/{ALICE_TWIN}", headers=alice_with_data)
    assert answer.status_code == 200
    assert answer.json()["metadata"] == {"secret": f"marker-{ALICE_TWIN}"}
    listed = client.get("/v1/twins", headers=alice_with_data).json()
    assert [t["id"] for t in listed] == [ALICE_TWIN]


def test_twin_lists_show_only_the_callers_twins(
    client: TestClient, alice_with_data: Headers, new_owner: Callable[[str], Headers]
) -> None:
    bob = new_owner("bob")
    assert client.get("/v1/twins", headers=bob).json() == []


# -- owners and the admin -------------------------------------------------------------------


def test_only_the_admin_creates_and_lists_owners(
    client: TestClient, admin: Headers, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare
    alice = new_owner("alice")

    # Execute
    by_nobody = client.post("/v1/owners", json={"name": "mallory"})
    by_owner = client.post("/v1/owners", json={"name": "mallory"}, headers=alice)
    listed_by_owner = client.get("/v1/owners", headers=alice)
    verify_by_owner = client.get("/v1/ledger/verify", headers=alice)
    listed = client.get("/v1/owners", headers=admin)

    # Assert
    assert by_nobody.status_code == 401
    assert by_owner.status_code == 403
    assert listed_by_owner.status_code == 403
    assert verify_by_owner.status_code == 403
    assert listed.status_code == 200
    assert [o["name"] for o in listed.json()] == ["alice"]
    assert "token" not in listed.json()[0]


def test_owner_names_are_validated_and_unique(client: TestClient, admin: Headers) -> None:
    assert client.post("/v1/owners", json={"name": "a"}, headers=admin).status_code == 201
    again = client.post("/v1/owners", json={"name": "a"}, headers=admin)
    assert again.status_code == 409
    assert again.json()["error"]["type"] == "AlreadyExistsError"
    bad = client.post("/v1/owners", json={"name": "has space"}, headers=admin)
    assert bad.status_code == 422
    assert bad.json()["error"]["problems"][0]["field"] == ["body", "name"]
    extra = client.post("/v1/owners", json={"name": "b", "token": "mine"}, headers=admin)
    assert extra.status_code == 422


def test_tokens_are_random_and_stored_only_as_sha256(
    client: TestClient, admin: Headers, service: ServiceState
) -> None:
    # Execute
    tokens = [
        client.post("/v1/owners", json={"name": f"o{i}"}, headers=admin).json()["token"]
        for i in range(3)
    ]

    # Assert: 256 bits of randomness each, distinct, never in the store in clear
    assert len(set(tokens)) == 3
    assert all(len(t) >= 43 + len("twk_") for t in tokens)
    with service.engine.store.read() as conn:
        stored = {r.name: r.token_sha256 for r in conn.execute(select(tables.owners))}
        everything = " ".join(
            repr(tuple(row))
            for table in tables.metadata.sorted_tables
            for row in conn.execute(select(table))
        )
    assert stored == {f"o{i}": hashlib.sha256(t.encode()).hexdigest() for i, t in enumerate(tokens)}
    assert not any(t in everything for t in tokens)


def test_a_token_works_as_soon_as_it_is_made(
    client: TestClient, new_owner: Callable[[str], Headers]
) -> None:
    alice = new_owner("alice")
    assert client.get("/v1/twins", headers=alice).status_code == 200


def test_an_owner_cannot_create_a_twin_for_someone_else(
    client: TestClient, new_owner: Callable[[str], Headers], service: ServiceState
) -> None:
    alice = new_owner("alice")
    answer = client.post(
        "/v1/twins", json={"id": "x", "kind": "state", "owner": "bob"}, headers=alice
    )
    assert answer.status_code == 422
    assert service.engine.list_twins() == []


# -- rate limits ----------------------------------------------------------------------------


def test_a_token_over_its_rate_gets_429_with_retry_after(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare: three requests at once, then one a minute
    client = make_client(rate_limit_burst=3, rate_limit_per_minute=1)
    token = client.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    alice = {"Authorization": f"Bearer {token}"}

    # Execute
    answers = [client.get("/v1/twins", headers=alice) for _ in range(4)]
    other = client.get("/v1/owners", headers=admin)

    # Assert: the fourth is refused; another token is not slowed down by Alice
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert int(answers[3].headers["retry-after"]) >= 1
    assert answers[3].json()["error"]["type"] == "TooManyRequests"
    assert other.status_code == 200
    assert "twinkit_rate_limited_total 1.0" in client.get("/metrics").text
