"""Shared fixtures: a fresh store per test, a small cohort, a file writer, store snapshots.

The helpers are served as fixtures (``snapshot``, ``write_frame``) because tests run with
``--import-mode=importlib``, where a test module cannot import ``conftest``. Annotate them
with ``SnapshotFn`` / ``WriteFrameFn`` spelled out (see below) in the test's signature.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import select

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.store import tables

#: a store's content: table name -> every row, sorted, as plain tuples
Snapshot = dict[str, list[tuple[Any, ...]]]
SnapshotFn = Callable[[TwinEngine], Snapshot]
WriteFrameFn = Callable[[pd.DataFrame, Path], Path]


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


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[TwinEngine]:
    """A TwinEngine on a fresh SQLite file; model artifacts go beside it."""
    eng = TwinEngine(f"sqlite:///{tmp_path}/t.db")
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


@pytest.fixture
def write_frame() -> WriteFrameFn:
    """``write_frame(frame, path)``: write CSV, Parquet or JSON lines by ``path``'s suffix."""
    return write_table
