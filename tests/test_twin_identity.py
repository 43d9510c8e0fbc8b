"""A twin's internal identity: work started for a twin never lands on a later twin of the
same id (issue #16, second defect: a fit of a deleted twin was promoted on another owner's
new twin of that id, which was then served a model of the first owner's data)."""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing import Pipe
from typing import Any

import pandas as pd
import pytest

from twinkit.core.errors import TwinGoneError
from twinkit.engine import TwinEngine, fitting
from twinkit.models import evaluate
from twinkit.service.worker import TWIN_UID, run_fit
from twinkit.store.jobs import JobStatus

ReadingsFn = Callable[[int, float], pd.DataFrame]


def recreate_as_bob(engine: TwinEngine, readings: ReadingsFn) -> None:
    engine.delete_twin("race-1")
    engine.create_twin("race-1", "state", owner="bob", channels=["glucose"])
    engine.ingest(readings(288, 150.0), twin="race-1")


def test_each_creation_gets_a_new_uid(engine: TwinEngine) -> None:
    first = engine.create_twin("p1", "state")
    engine.delete_twin("p1")
    second = engine.create_twin("p1", "state")

    assert len(first.uid) == 32
    assert first.uid != second.uid
    assert engine.get_twin("p1").uid == second.uid
    created = [e for e in engine.history("p1") if e.event == "twin_created"]
    assert [e.payload["uid"] for e in created] == [first.uid, second.uid]


def test_a_fit_whose_twin_is_replaced_meanwhile_registers_nothing(
    engine: TwinEngine, monkeypatch: pytest.MonkeyPatch, readings: ReadingsFn
) -> None:
    # Prepare: alice's twin with three days; while its fit scores, the twin is deleted and
    # bob creates a twin of the same id with one day
    engine.create_twin("race-1", "state", owner="alice", channels=["glucose"])
    engine.ingest(readings(864, 110.0), twin="race-1")
    scores = evaluate.rolling_scores
    replaced: list[bool] = []

    def scores_then_replace(*args: Any, **kwargs: Any) -> dict[str, float]:
        if not replaced:
            recreate_as_bob(engine, readings)
            replaced.append(True)
        return scores(*args, **kwargs)

    monkeypatch.setattr(fitting, "rolling_scores", scores_then_replace)

    # Execute
    with pytest.raises(TwinGoneError, match="deleted while it was fitted"):
        engine.fit("race-1", model="linear_ar")

    # Assert: bob's twin has no model of alice's data; the ledger says nothing of one
    assert engine.models("race-1") == []
    assert not [e for e in engine.history("race-1") if e.event == "model_registered"]
    assert engine.verify().ok


def test_a_fit_job_for_a_deleted_twin_is_cancelled_before_it_reads(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare: the job was asked for alice's twin; bob's twin of the same id replaced it
    alice = engine.create_twin("race-1", "state", owner="alice", channels=["glucose"])
    engine.ingest(readings(864, 110.0), twin="race-1")
    job = engine.jobs.create(alice.key, "alice", "fit", {"model": "linear_ar"}, "h:1", alice.uid)
    cancelled = engine.delete_twin("race-1")
    engine.create_twin("race-1", "state", owner="bob", channels=["glucose"])
    engine.ingest(readings(288, 150.0), twin="bob/race-1")
    reader, writer = Pipe(duplex=False)

    # Execute: the job's child runs anyway (another server process had started it)
    params = {"model": "linear_ar", TWIN_UID: alice.uid}
    run_fit(engine.store.url, str(engine.store.artifacts_dir), "alice/race-1", params, writer)
    answer = reader.recv()

    # Assert
    assert cancelled == [job.id]
    assert engine.jobs.get(job.id).status is JobStatus.CANCELLED
    assert "was deleted" in (engine.jobs.get(job.id).error or "")
    assert answer["status"] == "cancelled"
    assert engine.models("race-1") == []
    assert engine.jobs.of_twin("race-1", engine.get_twin("race-1").uid) == []


def test_a_store_of_schema_5_gets_uids_on_open(tmp_path: Any) -> None:
    import sqlite3

    from twinkit.store import tables

    url = f"sqlite:///{tmp_path}/old.db"
    engine = TwinEngine(url)
    engine.create_twin("p1", "state")
    engine.create_twin("p2", "decision")
    engine.store.dispose()
    # Make it a version-5 store: no uid columns, no uids
    with sqlite3.connect(tmp_path / "old.db") as db:
        for drop in (
            "UPDATE twins SET id = name",  # ids were the keys
            "UPDATE channels SET twin_id = replace(twin_id, 'local/', '')",
            "DROP INDEX ux_twins_owner_name",
            "DROP INDEX ix_twins_name",
            "ALTER TABLE twins DROP COLUMN name",
            "ALTER TABLE population_models DROP COLUMN owners",
            "DROP TABLE population_sharing",
        ):
            db.execute(drop)
        db.execute("DROP INDEX ux_twins_uid")
        db.execute("DROP INDEX ix_jobs_twin_uid")
        db.execute("ALTER TABLE twins DROP COLUMN uid")
        db.execute("ALTER TABLE jobs DROP COLUMN twin_uid")
        db.execute("DROP TABLE sessions")
        db.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")

    reopened = TwinEngine(url)

    uids = {t.id: t.uid for t in reopened.list_twins()}
    assert all(len(u) == 32 for u in uids.values())
    assert len(set(uids.values())) == 2
    with reopened.store.read() as conn:
        version = conn.execute(
            tables.meta.select().where(tables.meta.c.key == "schema_version")
        ).first()
    assert version is not None
    assert version.value == str(tables.SCHEMA_VERSION)
    reopened.store.dispose()
