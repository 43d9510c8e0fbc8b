"""The whole lifecycle of twins, step by step, on each backend (SQLite, and PostgreSQL when
``TWINKIT_TEST_PG_URL`` is set): create, ingest, re-ingest, fit, refuse, promote, roll back,
quarantine and release, decisions, delete, verify.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine

WRITERS = 4


def test_lifecycle_on_each_backend(engine: TwinEngine, backend: str) -> None:
    # Prepare
    frame = synthetic_cohort(n_twins=2, days=3, seed=0)
    twin_ids = sorted(frame["twin_id"].unique())
    for twin_id in twin_ids:
        engine.create_twin(twin_id, "state", channels=["glucose", "carbs"])
    assert engine.store.engine.dialect.name == backend

    # Execute and Assert, step by step
    first = engine.ingest(frame)
    assert first.n_stored == len(frame)
    assert engine.ingest(frame).already_ingested

    assert engine.fit(twin_ids[0]).promoted
    refused = engine.fit(twin_ids[0], model="persistence")
    assert engine.predict(twin_ids[0], [30, 60]).version == 1
    engine.promote(twin_ids[0], refused.version)
    assert engine.rollback(twin_ids[0]) == 1

    late = pd.Timestamp("2026-06-01", tz="UTC")
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

    engine.create_twin("d-1", "decision")
    decisions = pd.DataFrame(
        {"twin_id": ["d-1"] * 2, "item_id": ["a", "b"], "f0": [1.0, 2.0], "label": ["x", "y"]}
    )
    assert engine.ingest(decisions).n_stored == 2

    engine.delete_twin(twin_ids[1])
    report = engine.verify()
    assert report.ok, report.problems


def test_concurrent_writers_keep_the_store_whole(engine: TwinEngine) -> None:
    # Prepare: one twin; each writer brings its own days of a channel no one has stored yet,
    # so every writer reads the channels, adds the same one and appends to the ledger
    engine.create_twin("p1", "state")
    start = pd.Timestamp("2026-03-01", tz="UTC")
    batches = [
        pd.DataFrame(
            {
                "twin_id": "p1",
                "time": pd.date_range(start + pd.Timedelta(days=i), periods=288, freq="5min"),
                "channel": "steps",
                "value": [float(i)] * 288,
            }
        )
        for i in range(WRITERS)
    ]

    # Execute: all at once, each on its own connection
    with ThreadPoolExecutor(max_workers=WRITERS) as pool:
        results = list(pool.map(engine.ingest, batches))

    # Assert: every batch whole, one channel, an unbroken ledger
    assert [r.n_stored for r in results] == [288] * WRITERS
    assert engine.twin_summary("p1")["observations"] == 288 * WRITERS
    assert list(engine.signals("p1").columns) == ["steps"]
    ingested = [e for e in engine.history("p1") if e.event == "batch_ingested"]
    assert len(ingested) == WRITERS
    report = engine.verify()
    assert report.ok, report.problems


def test_messages_hide_the_store_password(tmp_path: Path) -> None:
    from twinkit.core.errors import TwinkitError
    from twinkit.store.db import Store

    url = "postgresql+psycopg://twinkit:s3cret-pw@127.0.0.1:1/nowhere?connect_timeout=1"
    with pytest.raises(TwinkitError) as refused:
        Store(url, artifacts=tmp_path)
    assert "s3cret-pw" not in str(refused.value)
    assert "twinkit:***@127.0.0.1:1/nowhere" in str(refused.value)
