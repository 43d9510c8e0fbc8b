"""The pages' login is a server-side session: the cookie holds a random id (never the
owner's token), the store only its sha256; logout, expiry and a removed owner end it in
every worker process at the next request; the CSRF token follows the session.

The clients talk to https://testserver, so the Secure login cookie is sent back.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from twinkit.engine.sessions import SESSION_LIFETIME
from twinkit.service.state import ServiceState
from twinkit.store import sessions, tables
from twinkit.store.timeutil import utc_now_iso

Headers = dict[str, str]
COOKIE = "twinkit_session"


# -- helpers --------------------------------------------------------------------------------


def over_https(client: TestClient) -> TestClient:
    client.base_url = httpx.URL("https://testserver")
    return client


@pytest.fixture
def web(client: TestClient) -> TestClient:
    return over_https(client)


def token_of(headers: Headers) -> str:
    return headers["Authorization"].removeprefix("Bearer ")


def csrf_in(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field in the page"
    return found.group(1)


def log_in(client: TestClient, headers: Headers) -> httpx.Response:
    form = client.get("/login")
    answer: httpx.Response = client.post(
        "/login",
        data={"token": token_of(headers), "csrf_token": csrf_in(form.text)},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return answer


def session_cookie(answer: httpx.Response) -> str:
    """The whole Set-Cookie header of the session cookie."""
    return next(c for c in answer.headers.get_list("set-cookie") if c.startswith(f"{COOKIE}="))


def log_in_elsewhere(client: TestClient, headers: Headers) -> str:
    """Log in, then forget the cookie in ``client``: the session id, as a copied cookie."""
    session_id = session_cookie(log_in(client, headers)).split(";")[0].split("=", 1)[1]
    client.cookies.clear()
    return session_id


def with_cookie(session_id: str) -> Headers:
    return {"cookie": f"{COOKIE}={session_id}"}


def get_as(client: TestClient, session_id: str, path: str) -> httpx.Response:
    """``path`` requested by a browser that holds only this session cookie."""
    client.cookies.clear()
    answer: httpx.Response = client.get(
        path, headers=with_cookie(session_id), follow_redirects=False
    )
    return answer


def logged_out(answer: httpx.Response) -> bool:
    return answer.status_code == 303 and answer.headers["location"] == "/login"


def make_twin(client: TestClient, headers: Headers, twin_id: str) -> None:
    body = {"id": twin_id, "kind": "state", "metadata": {"secret": f"marker-{twin_id}"}}
    answer = client.post("/v1/twins", json=body, headers=headers)
    assert answer.status_code == 201, answer.text


# -- the cookie -----------------------------------------------------------------------------


def test_the_cookie_holds_a_random_session_id_and_the_store_only_its_hash(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare
    alice = new_owner("alice")
    token = token_of(alice)

    # Execute: log in twice
    first = log_in(web, alice)
    second = log_in(web, alice)

    # Assert: the token is nowhere in the cookies; each login its own 256-bit id
    set_cookies = first.headers.get_list("set-cookie") + second.headers.get_list("set-cookie")
    assert not any(token in c for c in set_cookies)
    ids = [session_cookie(a).split(";")[0].split("=", 1)[1] for a in (first, second)]
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]{43}", i) for i in ids)
    assert token not in ids
    flags = {p.strip().lower() for p in session_cookie(first).split(";")[1:]}
    assert f"max-age={int(SESSION_LIFETIME.total_seconds())}" in flags
    with service.engine.store.read() as conn:
        rows = conn.execute(select(tables.sessions)).all()
        everything = " ".join(
            repr(tuple(row))
            for table in tables.metadata.sorted_tables
            for row in conn.execute(select(table))
        )
    assert {r.id_sha256 for r in rows} == {hashlib.sha256(i.encode()).hexdigest() for i in ids}
    assert not any(i in everything for i in ids)
    for row in rows:
        assert row.owner == "alice"
        assert row.revoked_at is None
        lasts = datetime.fromisoformat(row.expires_at) - datetime.fromisoformat(row.created_at)
        assert lasts == SESSION_LIFETIME
        assert datetime.fromisoformat(row.created_at) <= datetime.now(UTC)


def test_a_copied_cookie_stops_working_after_logout(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: Alice logs in; someone copies her cookie
    alice = new_owner("alice")
    make_twin(web, alice, "alice-p1")
    log_in(web, alice)
    copied = web.cookies[COOKIE]
    csrf = csrf_in(web.get("/twins").text)
    before = get_as(web, copied, "/twins")  # the copy, in a browser of its own

    # Execute: Alice logs out; the copy is used again
    out = web.post(
        "/logout", data={"csrf_token": csrf}, headers=with_cookie(copied), follow_redirects=False
    )
    after = get_as(web, copied, "/twins")
    twin_after = get_as(web, copied, "/twins/alice-p1")
    posted = web.post(
        "/twins/alice-p1/label/ask",
        data={"csrf_token": csrf},
        headers=with_cookie(copied),
        follow_redirects=False,
    )

    # Assert: the copy worked before, and opens nothing after
    assert before.status_code == 200
    assert "alice-p1" in before.text
    assert out.status_code == 303
    assert logged_out(after)
    assert any(
        c.startswith(f"{COOKIE}=") and "max-age=0" in c.lower()
        for c in after.headers.get_list("set-cookie")
    )
    assert logged_out(twin_after)
    assert "marker-" not in twin_after.text
    assert logged_out(posted)
    assert service.engine.jobs.of_twin("alice-p1") == []
    with service.engine.store.read() as conn:
        row = conn.execute(select(tables.sessions)).one()
    assert row.revoked_at is not None


def test_logout_in_one_worker_ends_the_session_in_another(
    make_client: Callable[..., TestClient], admin: Headers
) -> None:
    # Prepare: two apps over one store, as two server processes
    one, two = over_https(make_client()), over_https(make_client())
    token = one.post("/v1/owners", json={"name": "alice"}, headers=admin).json()["token"]
    session_id = log_in_elsewhere(one, {"Authorization": f"Bearer {token}"})
    opened_in_two = get_as(two, session_id, "/twins")
    csrf = csrf_in(opened_in_two.text)

    # Execute: log out through the second; use the session in the first
    two.cookies.clear()
    two.post("/logout", data={"csrf_token": csrf}, headers=with_cookie(session_id))
    in_one = get_as(one, session_id, "/twins")

    # Assert
    assert opened_in_two.status_code == 200
    assert logged_out(in_one)


def test_an_expired_session_is_logged_out(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare
    session_id = log_in_elsewhere(web, new_owner("alice"))
    digest = hashlib.sha256(session_id.encode()).hexdigest()
    assert get_as(web, session_id, "/twins").status_code == 200

    # Execute: the session's end moves to a moment ago
    with service.engine.store.write() as conn:
        sessions.set_expiry(conn, digest, utc_now_iso())
    answer = get_as(web, session_id, "/twins")

    # Assert
    assert logged_out(answer)
    assert service.engine.sessions.owner_of(session_id) is None


def test_expired_sessions_are_forgotten_at_the_next_login(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: one session expired, one live
    alice = new_owner("alice")
    old, live = log_in_elsewhere(web, alice), log_in_elsewhere(web, alice)
    old_digest = hashlib.sha256(old.encode()).hexdigest()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="microseconds")
    with service.engine.store.write() as conn:
        sessions.set_expiry(conn, old_digest, past)

    # Execute
    log_in(web, alice)

    # Assert
    with service.engine.store.read() as conn:
        digests = set(conn.execute(select(tables.sessions.c.id_sha256)).scalars())
    assert old_digest not in digests
    assert hashlib.sha256(live.encode()).hexdigest() in digests
    assert len(digests) == 2


# -- whose session it is -------------------------------------------------------------------


def test_a_session_of_one_owner_never_shows_another_owners_twins(
    web: TestClient, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: both log in; each session is used alone
    alice, bob = new_owner("alice"), new_owner("bob")
    make_twin(web, alice, "alice-p1")
    make_twin(web, bob, "bob-p1")
    alices, bobs = log_in_elsewhere(web, alice), log_in_elsewhere(web, bob)

    # Execute
    alice_list = get_as(web, alices, "/twins")
    bob_list = get_as(web, bobs, "/twins")
    alice_at_bobs = get_as(web, alices, "/twins/bob-p1")
    bob_at_alices = get_as(web, bobs, "/twins/alice-p1")

    # Assert
    assert 'href="/twins/alice-p1"' in alice_list.text
    assert "bob-p1" not in alice_list.text
    assert 'href="/twins/bob-p1"' in bob_list.text
    assert "alice-p1" not in bob_list.text
    assert alice_at_bobs.status_code == bob_at_alices.status_code == 404
    assert "marker-" not in alice_at_bobs.text + bob_at_alices.text


def test_an_owner_removed_from_the_store_takes_its_sessions_with_it(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: there is no route that deletes an owner; the store's cascade is what one
    # would rely on
    session_id = log_in_elsewhere(web, new_owner("alice"))

    # Execute
    with service.engine.store.write() as conn:
        conn.execute(delete(tables.owners).where(tables.owners.c.name == "alice"))
    answer = get_as(web, session_id, "/twins")

    # Assert
    assert logged_out(answer)
    with service.engine.store.read() as conn:
        assert conn.execute(select(tables.sessions)).all() == []


# -- CSRF follows the session --------------------------------------------------------------


def test_each_session_has_its_own_csrf_token(
    web: TestClient, service: ServiceState, new_owner: Callable[[str], Headers]
) -> None:
    # Prepare: the same owner logs in twice (two browsers)
    alice = new_owner("alice")
    first, second = log_in_elsewhere(web, alice), log_in_elsewhere(web, alice)
    first_csrf = csrf_in(get_as(web, first, "/twins").text)
    second_csrf = csrf_in(get_as(web, second, "/twins").text)

    # Execute: the second browser logs out with the first one's CSRF token, then its own
    web.cookies.clear()
    crossed = web.post(
        "/logout",
        data={"csrf_token": first_csrf},
        headers=with_cookie(second),
        follow_redirects=False,
    )
    own = web.post(
        "/logout",
        data={"csrf_token": second_csrf},
        headers=with_cookie(second),
        follow_redirects=False,
    )

    # Assert: only its own works, and it ends only that session
    assert first_csrf != second_csrf
    assert crossed.status_code == 403
    assert own.status_code == 303
    assert logged_out(get_as(web, second, "/twins"))
    assert get_as(web, first, "/twins").status_code == 200
