"""Shared fixtures: a fresh store per test, a small cohort, a file writer, store snapshots.

Store fixtures (``db_url``, ``make_db_url``, ``engine``) run each test once per backend:
always on a SQLite file, and also on PostgreSQL when ``TWINKIT_TEST_PG_URL`` names a server
(``make test`` sets it when ``.ci/services`` started one). Each PostgreSQL store is a schema
of its own, named in the URL's ``search_path``, so concurrent tests and the processes a test
starts (fit jobs, ``twinkit serve`` workers) all see that store and no other.

The helpers are served as fixtures (``snapshot``, ``write_frame``, ``readings``) because
tests run with ``--import-mode=importlib``, where a test module cannot import ``conftest``.
Annotate them with ``SnapshotFn`` / ``WriteFrameFn`` / ``ReadingsFn`` spelled out (see
below) in the test's signature.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.store import tables

#: a store's content: table name -> every row, sorted, as plain tuples
Snapshot = dict[str, list[tuple[Any, ...]]]
SnapshotFn = Callable[[TwinEngine], Snapshot]
WriteFrameFn = Callable[[pd.DataFrame, Path], Path]
ReadingsFn = Callable[[int, float], pd.DataFrame]
MakeDbUrlFn = Callable[[str], str]

#: the PostgreSQL database the tests may use (each test in a fresh schema of it)
PG_URL = os.environ.get("TWINKIT_TEST_PG_URL") or None
BACKENDS = ["sqlite", "postgresql"] if PG_URL else ["sqlite"]
_FAST_COMMIT = "-csynchronous_commit=off"


def _sort_key(row: tuple[Any, ...]) -> tuple[tuple[int, str], ...]:
    # None and mixed types sort deterministically; repr keeps floats exact.
    return tuple((0, "") if v is None else (1, repr(v)) for v in row)


def store_snapshot(engine: TwinEngine) -> Snapshot:
    """Every row of every table in the store, sorted: equal snapshots mean an unchanged store."""
    with engine.store.read() as conn:
        return {
            table.name: sorted(
                (tuple(row) for row in conn.execute(select(table)).all()), key=_sort_key
            )
            for table in tables.metadata.sorted_tables
        }


def _json_value(value: Any) -> Any:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; the importer reads the text as a number
    return value


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write ``frame`` as CSV, Parquet or JSON lines, chosen by ``path``'s suffix.

    JSON lines are written with :mod:`json` (floats as their exact repr, times as ISO-8601),
    so all three formats carry exactly the same values.
    """
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        lines = [
            json.dumps({str(k): _json_value(v) for k, v in record.items()})
            for record in frame.to_dict(orient="records")
        ]
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    else:
        raise ValueError(f"write_frame: unsupported suffix {suffix!r}")
    return path


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    """A connection pool to ``TWINKIT_TEST_PG_URL``'s database, to make and drop schemas.

    Fails (never skips) when the variable is set but the server does not answer: a run
    that was asked to cover PostgreSQL must not pass without it.
    """
    if PG_URL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("TWINKIT_TEST_PG_URL is not set in CI: .ci/run must export it")
        pytest.skip("TWINKIT_TEST_PG_URL is not set (make test sets it when PostgreSQL runs)")
    admin = create_engine(PG_URL, poolclass=NullPool, connect_args={"options": _FAST_COMMIT})
    try:
        with admin.connect() as conn:
            conn.execute(text("select 1"))
    except OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"TWINKIT_TEST_PG_URL is set but PostgreSQL does not answer ({exc.orig}); "
            "start it with `sudo bash .ci/services`, or unset the variable to test SQLite only"
        )
    yield admin
    admin.dispose()


def _fresh_pg_store(admin: Engine, pg_url: str) -> tuple[str, str]:
    """A new empty schema; the URL whose connections use it (and only it), and its name."""
    schema = f"twinkit_test_{uuid.uuid4().hex[:16]}"
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    # The driver passes ``options`` to the server at connect time, so every process that
    # opens this URL (fit children, serve workers) lands in the same schema. Commits need
    # not wait for the disk: a test store need not survive a crash of the server itself.
    options = f"-csearch_path={schema} {_FAST_COMMIT}"
    url = make_url(pg_url).update_query_dict({"options": options})
    return url.render_as_string(hide_password=False), schema


def _drop_pg_schema(admin: Engine, schema: str) -> None:
    with admin.begin() as conn:
        # A connection a test left in a transaction would hold locks: fail, not hang.
        conn.execute(text("SET LOCAL lock_timeout = '30s'"))
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database behind the test's stores: ``sqlite``, or ``postgresql``."""
    return str(request.param)


@pytest.fixture
def make_db_url(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[MakeDbUrlFn]:
    """``make_db_url(name)``: the URL of a fresh, empty store on the test's backend.

    SQLite: ``tmp_path/<name>.db``. PostgreSQL: a new schema, dropped after the test; model
    artifacts go to ``tmp_path/artifacts`` (``TWINKIT_ARTIFACTS``), as they would beside
    a SQLite file.
    """
    schemas: list[str] = []
    admin: Engine | None = None
    if backend == "postgresql":
        admin = request.getfixturevalue("pg_admin")
        monkeypatch.setenv("TWINKIT_ARTIFACTS", str(tmp_path / "artifacts"))

    def make(name: str) -> str:
        if admin is None:
            return f"sqlite:///{tmp_path}/{name}.db"
        assert PG_URL is not None
        url, schema = _fresh_pg_store(admin, PG_URL)
        schemas.append(schema)
        return url

    yield make
    if admin is not None:
        for schema in schemas:
            _drop_pg_schema(admin, schema)


@pytest.fixture
def pg_store_url(
    pg_admin: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A fresh store on PostgreSQL alone, for tests of what only a server allows (several
    processes serving one store); skipped without ``TWINKIT_TEST_PG_URL``, failed in CI."""
    assert PG_URL is not None
    monkeypatch.setenv("TWINKIT_ARTIFACTS", str(tmp_path / "artifacts"))
    url, schema = _fresh_pg_store(pg_admin, PG_URL)
    yield url
    _drop_pg_schema(pg_admin, schema)


@pytest.fixture
def db_url(make_db_url: MakeDbUrlFn) -> str:
    """The URL of a fresh, empty store: a SQLite file, or a PostgreSQL schema."""
    return make_db_url("t")


@pytest.fixture
def engine(db_url: str) -> Iterator[TwinEngine]:
    """A TwinEngine on a fresh store (each backend in turn); model artifacts in tmp_path."""
    eng = TwinEngine(db_url)
    yield eng
    eng.store.dispose()


@pytest.fixture(scope="session")
def cohort_frame() -> pd.DataFrame:
    """The ``cohort`` frame, built once per session: read it, never modify it."""
    return synthetic_cohort(n_twins=2, days=2, seed=0)


@pytest.fixture
def cohort(cohort_frame: pd.DataFrame) -> pd.DataFrame:
    """Two synthetic twins (``synth-001``, ``synth-002``), two days of glucose and carbs."""
    return cohort_frame.copy()


@pytest.fixture
def snapshot() -> SnapshotFn:
    """``snapshot(engine)``: every table of the store, all rows sorted; compare with ``==``."""
    return store_snapshot


def glucose_readings(n: int, level: float) -> pd.DataFrame:
    """``n`` 5-minute glucose readings from 2026-01-01 UTC, a slow wave around ``level``
    (a file without a ``twin_id`` column: ingest it with ``twin=``)."""
    times = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    return pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": "glucose",
            "value": level + 20.0 * np.sin(np.arange(n) / 24.0),
        }
    )


def drifting_readings(days: int, change_day: int | None, seed: int) -> pd.DataFrame:
    """``days`` of 5-minute glucose from 2026-01-01 UTC (a file without ``twin_id``); from
    ``change_day`` on, the readings swing four times as much from one to the next (as after
    an illness), which a model fitted before cannot know."""
    rng = np.random.default_rng(seed)
    n = 288 * days
    noise = rng.normal(0, 3, n)
    if change_day is not None:
        noise[288 * change_day :] *= 4
    values = 130 + 30 * np.sin(np.arange(n) / 24.0) + noise
    times = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    return pd.DataFrame(
        {"time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "glucose", "value": values}
    )


@pytest.fixture
def drifting() -> Callable[[int, int | None, int], pd.DataFrame]:
    """``drifting(days, change_day, seed)``: see :func:`drifting_readings`."""
    return drifting_readings


@pytest.fixture
def readings() -> ReadingsFn:
    """``readings(n, level)``: see :func:`glucose_readings`."""
    return glucose_readings


@pytest.fixture
def write_frame() -> WriteFrameFn:
    """``write_frame(frame, path)``: write CSV, Parquet or JSON lines by ``path``'s suffix."""
    return write_table
