"""Opening the store: URL resolution, SQLite tuning, schema version, write transactions."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    inspect,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from twinkit.core.errors import SchemaVersionError, TwinkitError
from twinkit.store import tables
from twinkit.store.timeutil import utc_now_iso

#: an open transaction on the store, as the lifecycle passes it to the store's functions
#: (the engine names the type from here, and never imports SQLAlchemy itself)
Conn = Connection

DEFAULT_HOME = Path(".twinkit")
DEFAULT_DB_FILE = DEFAULT_HOME / "twinkit.db"


def resolve_url(url: str | None = None) -> str:
    """The store URL: the argument, else ``TWINKIT_DB``, else SQLite in ``./.twinkit``.

    A plain path is taken as a SQLite file.

    >>> resolve_url("sqlite:///x.db")
    'sqlite:///x.db'
    >>> resolve_url("data/t.db")
    'sqlite:///data/t.db'
    """
    chosen = url or os.environ.get("TWINKIT_DB") or str(DEFAULT_DB_FILE)
    if "://" not in chosen:
        chosen = f"sqlite:///{chosen}"
    return chosen


# One lock per store: the schema the connection writes to (a server may hold many stores).
# The first key only keeps twinkit's locks apart from any other application's.
_PG_WRITE_LOCK = text("SELECT pg_advisory_xact_lock(1953986926, hashtext(current_schema()))")


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    # Python's sqlite3 would open transactions lazily and only before DML; we take the
    # transaction boundaries ourselves so that a batch and its ledger entry commit as one.
    dbapi_conn.isolation_level = None
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a process kill
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # A write takes the database lock up front, so two writers cannot both read the
    # ledger head and then append conflicting entries.
    if conn.get_execution_options().get("twinkit_write"):
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.exec_driver_sql("BEGIN")


def _add_columns(conn: Connection, stored_version: int) -> None:
    """Add the columns of versions after ``stored_version`` (nullable) with their indexes,
    and fill in what must not stay empty (every twin's uid)."""
    for version, table, column in tables.ADDED_COLUMNS:
        if version > stored_version:
            # a table new since then was created whole, its new columns with it
            present = {c["name"] for c in inspect(conn).get_columns(table.name)}
            if column.name in present:
                continue
            kind = column.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {column.name} {kind}"))
    t = tables.twins.c
    if stored_version < 6:
        for (twin_id,) in conn.execute(select(t.id).where(t.uid.is_(None))).all():
            conn.execute(update(tables.twins).where(t.id == twin_id).values(uid=new_uid()))
    if stored_version < 7:
        if conn.dialect.name == "postgresql":
            for table, column in tables.KEY_COLUMNS:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(
                    text(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE {kind}")
                )
        # Ids were unique in the whole store: a twin's key stays its name.
        conn.execute(update(tables.twins).where(t.name.is_(None)).values(name=t.id))
        # A prior pooled the owners of its twins (those still there to tell).
        p = tables.population_models.c
        owner_of = {str(r.id): str(r.owner) for r in conn.execute(select(t.id, t.owner))}
        for row in conn.execute(select(p.id, p.twins)).all():
            pooled = sorted({owner_of[k] for k in json.loads(row.twins) if k in owner_of})
            conn.execute(
                update(tables.population_models)
                .where(p.id == row.id)
                .values(owners=json.dumps(pooled))
            )
    for version, table, column in tables.ADDED_COLUMNS:
        if version > stored_version:
            for index in table.indexes:
                if column.name in index.columns:
                    index.create(conn, checkfirst=True)
    for version, index in tables.ADDED_INDEXES:
        if version > stored_version:
            index.create(conn, checkfirst=True)


def new_uid() -> str:
    """A twin's internal identity: 128 random bits in hex, never reused."""
    return uuid.uuid4().hex


class Store:
    """A twinkit store: the database plus the artifact folder beside it."""

    def __init__(self, url: str | None = None, artifacts: Path | None = None) -> None:
        self.url = resolve_url(url)
        try:
            parsed = make_url(self.url)
        except ArgumentError as exc:
            raise TwinkitError(f"not a database URL ({exc})") from None
        #: the URL as messages and logs show it: the password hidden
        self.display_url = parsed.render_as_string(hide_password=True)
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        db_file = parsed.database if self.is_sqlite else None
        if db_file and db_file != ":memory:":
            Path(db_file).parent.mkdir(parents=True, exist_ok=True)
            home = Path(db_file).parent
        else:
            home = Path(os.environ.get("TWINKIT_HOME", str(DEFAULT_HOME)))
        self.artifacts_dir = artifacts or Path(
            os.environ.get("TWINKIT_ARTIFACTS", str(home / "artifacts"))
        )
        self.engine: Engine = create_engine(self.url)
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        self._ensure_schema()

    def _ensure_schema(self) -> None:
        try:
            with self.write() as conn:
                tables.metadata.create_all(conn)
                row = conn.execute(
                    select(tables.meta.c.value).where(tables.meta.c.key == "schema_version")
                ).first()
                if row is None:
                    conn.execute(
                        tables.meta.insert(),
                        [
                            {"key": "schema_version", "value": str(tables.SCHEMA_VERSION)},
                            {"key": "created_at", "value": utc_now_iso()},
                        ],
                    )
                elif int(row[0]) > tables.SCHEMA_VERSION:
                    raise SchemaVersionError(
                        f"the store at {self.display_url} has schema version {row[0]}, newer than "
                        f"this twinkit's {tables.SCHEMA_VERSION}: upgrade twinkit to open it"
                    )
                elif int(row[0]) < tables.SCHEMA_VERSION:
                    # New tables were just made by create_all; new columns are added here.
                    _add_columns(conn, int(row[0]))
                    conn.execute(
                        update(tables.meta)
                        .where(tables.meta.c.key == "schema_version")
                        .values(value=str(tables.SCHEMA_VERSION))
                    )
        except OperationalError as exc:
            raise TwinkitError(f"cannot open the store at {self.display_url}: {exc.orig}") from None

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction: everything inside commits together or not at all.

        Writers take turns, on every backend: SQLite's ``BEGIN IMMEDIATE`` takes the file's
        lock, and on PostgreSQL a transaction-scoped advisory lock of the store's schema does
        the same. The ingest pipeline reads (channels, stored values, the ledger head) and
        then writes on what it read, which two interleaved writers would get wrong.
        """
        with self.engine.connect() as conn:
            conn = conn.execution_options(twinkit_write=True)
            with conn.begin():
                if conn.dialect.name == "postgresql":
                    conn.execute(_PG_WRITE_LOCK)
                yield conn

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A connection for one statement, without a transaction around it: a single
        statement reads one consistent snapshot by itself, and skipping BEGIN and COMMIT
        matters on a path that runs one query per request."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction: a consistent snapshot of the store."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @property
    def is_memory(self) -> bool:
        """An in-memory SQLite database: private to one connection, so to one process."""
        database = make_url(self.url).database
        return self.is_sqlite and database in (None, "", ":memory:")

    def ping(self) -> str | None:
        """None if the database answers a query now, else what went wrong (for readiness)."""
        try:
            with self.read() as conn:
                conn.execute(select(literal(1))).scalar_one()
        except SQLAlchemyError as exc:
            return f"the store does not answer: {type(exc).__name__}"
        return None

    def dispose(self) -> None:
        self.engine.dispose()
