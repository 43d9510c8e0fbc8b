"""Login sessions of the web pages: a random id in the browser's cookie, only its sha256 in
the store, so that every server process sees a logout at once."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from twinkit.core.errors import NotFoundError
from twinkit.engine.owners import token_sha256
from twinkit.store import owners, sessions
from twinkit.store.db import Store
from twinkit.store.timeutil import utc_now_iso

#: how long a login lasts; the cookie's Max-Age says the same
SESSION_LIFETIME = timedelta(hours=12)
_SESSION_ID_BYTES = 32  # 256 bits of randomness


def new_session_id() -> str:
    """A fresh random session id (256 bits, URL-safe, 43 characters).

    >>> len(new_session_id()), new_session_id() == new_session_id()
    (43, False)
    """
    return secrets.token_urlsafe(_SESSION_ID_BYTES)


def _later(iso: str, delta: timedelta) -> str:
    return (datetime.fromisoformat(iso) + delta).isoformat(timespec="microseconds")


class Sessions:
    """Start, look up and end owners' login sessions.

    >>> from twinkit.engine.owners import Owners
    >>> store = Store("sqlite://")
    >>> _ = Owners(store).create("clinic-a")
    >>> book = Sessions(store)
    >>> session_id = book.start("clinic-a")
    >>> book.owner_of(session_id), book.end(session_id), book.owner_of(session_id)
    ('clinic-a', True, None)
    """

    def __init__(self, store: Store, lifetime: timedelta = SESSION_LIFETIME) -> None:
        if lifetime <= timedelta(0):
            raise ValueError("a session's lifetime must be positive")
        self.store = store
        self.lifetime = lifetime

    def start(self, owner: str) -> str:
        """A new session of ``owner``; its id is not kept and cannot be shown again.

        Sessions that have expired are forgotten here, so the table holds about as many
        rows as there are logins within one lifetime.
        """
        now = utc_now_iso()
        session_id = new_session_id()
        with self.store.write() as conn:
            if owners.get_owner(conn, owner) is None:
                raise NotFoundError(f"no owner {owner!r}: create it first (POST /v1/owners)")
            sessions.delete_expired(conn, now)
            sessions.insert_session(
                conn, token_sha256(session_id), owner, now, _later(now, self.lifetime)
            )
        return session_id

    def owner_of(self, session_id: str) -> str | None:
        """The owner of this session while it lasts; None once it has expired or ended, or
        if there is no such session."""
        with self.store.read() as conn:
            found = sessions.get_session(conn, token_sha256(session_id))
        if found is None or found.revoked_at is not None or found.expires_at <= utc_now_iso():
            return None
        return found.owner

    def end(self, session_id: str) -> bool:
        """End the session (logout): its id opens nothing any more, in any process.
        False if it had already ended or never existed."""
        with self.store.write() as conn:
            return sessions.revoke_session(conn, token_sha256(session_id), utc_now_iso())
