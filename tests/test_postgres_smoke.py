"""The whole lifecycle on PostgreSQL, when a server is given in TWINKIT_TEST_PG_URL.

CI does not start PostgreSQL yet (the service issue adds it); until then this runs where
a developer points it at a server, e.g.
``TWINKIT_TEST_PG_URL=postgresql+psycopg://twinkit:twinkit@127.0.0.1:5432/twinkit_test``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd
import pytest

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.store import tables
from twinkit.store.db import Store

PG_URL = os.environ.get("TWINKIT_TEST_PG_URL")
pytestmark = pytest.mark.skipif(not PG_URL, reason="TWINKIT_TEST_PG_URL is not set")


def test_lifecycle_on_postgresql(tmp_path: Path) -> None:
    # Prepare: fresh tables, unique twin ids so reruns do not collide
    assert PG_URL is not None
    store = Store(PG_URL, artifacts=tmp_path / "artifacts")
    tables.metadata.drop_all(store.engine)
    store = Store(PG_URL, artifacts=tmp_path / "artifacts")
    engine = TwinEngine(store)
    run = uuid.uuid4().hex[:6]
    frame = synthetic_cohort(n_twins=2, days=3, seed=0)
    frame["twin_id"] = frame["twin_id"] + f"-{run}"
    twin_ids = sorted(frame["twin_id"].unique())
    for twin_id in twin_ids:
        engine.create_twin(twin_id, "state", channels=["glucose", "carbs"])

    # Execute and Assert, step by step
    first = engine.ingest(frame)
    assert first.n_stored == len(frame)
    assert engine.ingest(frame).already_ingested

    assert engine.fit(twin_ids[0]).promoted
    refused = engine.fit(twin_ids[0], model="persistence")
    assert engine.predict(twin_ids[0], [30, 60]).version == 1
    engine.promote(twin_ids[0], refused.version)
    assert engine.rollback(twin_ids[0]) == 1

    late = pd.Timestamp("2030-01-01", tz="UTC")
    bad = pd.DataFrame(
        {
            "twin_id": [twin_ids[1]] * 2,
            "time": [late, late + pd.Timedelta(minutes=5)],
            "channel": ["glucose"] * 2,
            "value": [5e6, float("nan")],
        }
    )
    assert engine.ingest(bad).n_quarantined == 2
    held = engine.quarantine(twin_ids[1])
    engine.release([next(q["id"] for q in held if "plausible" in q["reason"])])

    engine.create_twin(f"d-{run}", "decision")
    decisions = pd.DataFrame(
        {"twin_id": [f"d-{run}"] * 2, "item_id": ["a", "b"], "f0": [1.0, 2.0], "label": ["x", "y"]}
    )
    assert engine.ingest(decisions).n_stored == 2

    engine.delete_twin(twin_ids[1])
    report = engine.verify()
    assert report.ok, report.problems
