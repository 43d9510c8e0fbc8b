"""A worker remembers a token's owner for a few seconds, and no longer; unknown tokens are
never remembered; the owner check of the forecast route is exact (no cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from twinkit.engine.owners import token_sha256
from twinkit.service.auth import TOKEN_TTL_S, TokenCache
from twinkit.service.state import ServiceState
from twinkit.store import tables

Headers = dict[str, str]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(service: ServiceState) -> FakeClock:
    fake = FakeClock()
    service.tokens = TokenCache(clock=fake)
    return fake


@pytest.fixture
def lookups(service: ServiceState, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the app looked up in the store, in order (sha256 prefixes)."""
    seen: list[str] = []
    real = service.engine.owners.authenticate

    def counting(token: str) -> Any:
        seen.append(token_sha256(token)[:12])
        return real(token)

    monkeypatch.setattr(service.engine.owners, "authenticate", counting)
    return seen


def _token(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def test_a_token_is_looked_up_once_per_ttl(
    client: TestClient,
    new_owner: Callable[[str], Headers],
    clock: FakeClock,
    lookups: list[str],
) -> None:
    # Prepare
    alice = new_owner("alice")

    # Execute: three requests within the TTL, one after it
    for _ in range(3):
        assert client.get("/v1/twins", headers=alice).status_code == 200
    within = len(lookups)
    clock.now += TOKEN_TTL_S
    assert client.get("/v1/twins", headers=alice).status_code == 200

    # Assert
    assert within == 1
    assert len(lookups) == 2


def test_a_replaced_token_stops_working_when_its_ttl_ends(
    client: TestClient,
    service: ServiceState,
    new_owner: Callable[[str], Headers],
    clock: FakeClock,
) -> None:
    # Prepare: alice's token remembered, then replaced in the store (as deleting the owner
    # or issuing a new token would)
    alice = new_owner("alice")
    assert client.get("/v1/twins", headers=alice).status_code == 200
    with service.engine.store.write() as conn:
        conn.execute(
            tables.owners.update()
            .where(tables.owners.c.name == "alice")
            .values(token_sha256="0" * 64)
        )

    # Execute
    clock.now += TOKEN_TTL_S - 0.1
    still = client.get("/v1/twins", headers=alice)
    clock.now += 0.1
    after = client.get("/v1/twins", headers=alice)

    # Assert: at most the TTL of grace, then 401
    assert still.status_code == 200
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "unknown token"


def test_unknown_tokens_are_not_remembered(
    client: TestClient, service: ServiceState, clock: FakeClock, lookups: list[str]
) -> None:
    # Prepare
    stranger = {"Authorization": "Bearer twk_" + "x" * 43}

    # Execute
    answers = [client.get("/v1/twins", headers=stranger).status_code for _ in range(2)]

    # Assert: each one looked up, none kept
    assert answers == [401, 401]
    assert len(lookups) == 2
    assert service.tokens.get(token_sha256(_token(stranger))) is None


def test_the_cache_keeps_at_most_its_capacity() -> None:
    clock = FakeClock()
    cache = TokenCache(ttl_s=5.0, capacity=2, clock=clock)

    cache.put("a", "alice")
    cache.put("b", "bob")
    assert cache.get("a") == "alice"  # a is now the most recent
    cache.put("c", "carol")  # evicts b

    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("alice", None, "carol")


def test_a_ttl_of_zero_remembers_nothing() -> None:
    cache = TokenCache(ttl_s=0.0, clock=FakeClock())

    cache.put("a", "alice")

    assert cache.get("a") is None


def test_the_forecast_routes_owner_check_follows_the_store_at_once(
    client: TestClient,
    service: ServiceState,
    state_twin: Callable[[str, str], Headers],
    new_owner: Callable[[str], Headers],
    glucose_rows: list[dict[str, Any]],
    clock: FakeClock,
) -> None:
    # Prepare: alice's twin with a served forecast; then the twin handed over to bob in the
    # store, with no time passing (tokens stay remembered)
    alice = state_twin("alice", "p1")
    bob = new_owner("bob")
    client.post("/v1/twins/p1/observations", json={"rows": glucose_rows}, headers=alice)
    service.engine.fit("p1", model="persistence")
    assert client.get("/v1/twins/p1/forecast", headers=alice).status_code == 200
    assert client.get("/v1/twins/p1/forecast", headers=bob).status_code == 404
    with service.engine.store.write() as conn:
        conn.execute(
            tables.twins.update().where(tables.twins.c.id == "alice/p1").values(owner="bob")
        )

    # Execute
    for_alice = client.get("/v1/twins/p1/forecast", headers=alice)
    for_bob = client.get("/v1/twins/p1/forecast", headers=bob)

    # Assert: alice is refused at once; bob does not see it either, since a twin is found
    # in its owner's id space (its key names alice) and is not bob's
    assert for_alice.status_code == 404
    assert for_bob.status_code == 404
