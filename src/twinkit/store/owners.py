"""Owners of twins in the store: a name and the sha256 of the token that proves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from twinkit.store import tables


@dataclass(frozen=True)
class Owner:
    """Someone who may use the service; their twins are those whose ``owner`` is ``name``."""

    name: str
    created_at: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "created_at": self.created_at}


def insert_owner(conn: Connection, name: str, token_sha256: str, created_at: str) -> None:
    conn.execute(
        tables.owners.insert().values(name=name, token_sha256=token_sha256, created_at=created_at)
    )


def get_owner(conn: Connection, name: str) -> Owner | None:
    row = conn.execute(select(tables.owners).where(tables.owners.c.name == name)).first()
    return None if row is None else Owner(row.name, row.created_at)


def owner_by_token(conn: Connection, token_sha256: str) -> tuple[Owner, str] | None:
    """The owner holding the token with this hash, and the hash as stored."""
    o = tables.owners.c
    row = conn.execute(select(tables.owners).where(o.token_sha256 == token_sha256)).first()
    return None if row is None else (Owner(row.name, row.created_at), row.token_sha256)


def list_owners(conn: Connection) -> list[Owner]:
    rows = conn.execute(select(tables.owners).order_by(tables.owners.c.name))
    return [Owner(r.name, r.created_at) for r in rows]
