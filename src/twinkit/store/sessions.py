"""Login sessions of the web pages in the store: the sha256 of a session id, its owner and
its lifetime; never the id itself."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, delete, select, update

from twinkit.store import tables


@dataclass(frozen=True)
class LoginSession:
    """One login: whose it is, when it started, when it ends or ended.

    Times are ISO-8601 UTC strings as ``timeutil.utc_now_iso`` writes them, all of one
    length and offset, so that they compare as text in the same order as in time.
    """

    owner: str
    created_at: str
    expires_at: str
    revoked_at: str | None


def insert_session(
    conn: Connection, id_sha256: str, owner: str, created_at: str, expires_at: str
) -> None:
    conn.execute(
        tables.sessions.insert().values(
            id_sha256=id_sha256, owner=owner, created_at=created_at, expires_at=expires_at
        )
    )


def get_session(conn: Connection, id_sha256: str) -> LoginSession | None:
    """The session whose id has this hash, live or not (one primary-key lookup)."""
    s = tables.sessions.c
    row = conn.execute(
        select(s.owner, s.created_at, s.expires_at, s.revoked_at).where(s.id_sha256 == id_sha256)
    ).first()
    return None if row is None else LoginSession(*row)


def revoke_session(conn: Connection, id_sha256: str, revoked_at: str) -> bool:
    """End the session now; False if there is no such session or it had already ended."""
    s = tables.sessions.c
    done = conn.execute(
        update(tables.sessions)
        .where(s.id_sha256 == id_sha256, s.revoked_at.is_(None))
        .values(revoked_at=revoked_at)
    )
    return done.rowcount > 0


def set_expiry(conn: Connection, id_sha256: str, expires_at: str) -> None:
    """Move the end of a session (tests expire one this way)."""
    conn.execute(
        update(tables.sessions)
        .where(tables.sessions.c.id_sha256 == id_sha256)
        .values(expires_at=expires_at)
    )


def delete_expired(conn: Connection, now: str) -> int:
    """Forget sessions that have ended by expiring (revoked ones too, once past their
    expiry): no cookie can open them any more. The number deleted."""
    done = conn.execute(delete(tables.sessions).where(tables.sessions.c.expires_at <= now))
    return done.rowcount
