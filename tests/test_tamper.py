"""Tampering with the store behind twinkit's back is caught by ``verify`` and named.

The store under test: two twins, each ingested as its own batch (batches 1 and 2), and one
fitted model for ``synth-001``. Ledger: 1-2 twin_created, 3-4 batch_ingested,
5 model_registered, 6 model_promoted.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from twinkit.core.errors import IntegrityError
from twinkit.engine import TwinEngine

TWIN = "synth-001"
KEY = f"local/{TWIN}"  # its row in the store: ids are unique per owner


@dataclass
class Tamperable:
    engine: TwinEngine
    db: Path

    def sql(self, statement: str, *params: object) -> None:
        """Run one raw SQL statement on the database file, as an attacker would."""
        conn = sqlite3.connect(self.db)
        try:
            conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    def last_seq(self) -> int:
        conn = sqlite3.connect(self.db)
        try:
            (seq,) = conn.execute("SELECT max(seq) FROM ledger").fetchone()
        finally:
            conn.close()
        return int(seq)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, cohort_frame: pd.DataFrame) -> Path:
    """Build the store once per module; each test gets its own copy."""
    home = tmp_path_factory.mktemp("tamper_template")
    engine = TwinEngine(f"sqlite:///{home}/t.db")
    for twin_id in sorted(cohort_frame["twin_id"].unique()):
        engine.create_twin(str(twin_id), "state")
    for twin_id, rows in cohort_frame.groupby("twin_id"):
        engine.ingest(rows, source=f"{twin_id!s}.csv")
    engine.fit(TWIN)
    assert engine.verify().ok
    engine.store.dispose()  # checkpoints the WAL, so the copy is the whole database
    return home


@pytest.fixture
def store(template: Path, tmp_path: Path) -> Iterator[Tamperable]:
    home = tmp_path / "store"
    shutil.copytree(template, home)
    engine = TwinEngine(f"sqlite:///{home}/t.db")
    yield Tamperable(engine, home / "t.db")
    engine.store.dispose()


def test_untouched_store_verifies(store: Tamperable) -> None:
    # Execute
    report = store.engine.verify()

    # Assert
    assert report.ok, report.problems
    assert (report.entries, report.batches, report.models) == (6, 2, 1)


# name -> (raw SQL, the batches whose digests it breaks)
TAMPER_OBSERVATIONS: dict[str, tuple[str, set[int]]] = {
    "value_changed": (
        "UPDATE observations SET value = value + 0.5 WHERE batch_id = 2 AND t = "
        "(SELECT min(t) FROM observations WHERE batch_id = 2)",
        {2},
    ),
    "row_deleted": (
        "DELETE FROM observations WHERE batch_id = 2 AND t = "
        "(SELECT max(t) FROM observations WHERE batch_id = 2)",
        {2},
    ),
    "row_added": (
        "INSERT INTO observations (channel_id, t, value, batch_id) "
        "SELECT channel_id, max(t) + 300000000, 123.0, 2 FROM observations WHERE batch_id = 2",
        {2},
    ),
    "row_moved_to_other_batch": (
        "UPDATE observations SET batch_id = 1 WHERE batch_id = 2 AND t = "
        "(SELECT min(t) FROM observations WHERE batch_id = 2)",
        {1, 2},
    ),
}


@pytest.mark.parametrize(
    ("statement", "broken"), TAMPER_OBSERVATIONS.values(), ids=TAMPER_OBSERVATIONS
)
def test_tampered_observation_is_detected_and_batch_named(
    store: Tamperable, statement: str, broken: set[int]
) -> None:
    # Prepare
    store.sql(statement)

    # Execute
    report = store.engine.verify()

    # Assert: exactly the tampered batches are named
    assert not report.ok
    named = {int(p.split(":")[0].removeprefix("batch ")) for p in report.problems}
    assert named == broken, report.problems
    assert all("ledger entry" in p for p in report.problems)


def test_deleted_middle_ledger_entry_is_named(store: Tamperable) -> None:
    # Prepare
    store.sql("DELETE FROM ledger WHERE seq = 3")

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert "ledger entry 3 is missing" in report.problems[0]


def test_deleted_last_ledger_entry_is_detected(store: Tamperable) -> None:
    # Prepare
    last = store.last_seq()
    store.sql("DELETE FROM ledger WHERE seq = ?", last)

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert f"ends at entry {last - 1}" in report.problems[0]
    assert str(last) in report.problems[0]


def test_deleted_last_ledger_entry_and_head_is_detected(store: Tamperable) -> None:
    # Prepare: the attacker also drops the head record
    store.sql("DELETE FROM ledger WHERE seq = ?", store.last_seq())
    store.sql("DELETE FROM meta WHERE key = 'ledger_head'")

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert "head" in report.problems[0]


def test_swapped_ledger_payloads_are_detected_and_entry_named(store: Tamperable) -> None:
    # Prepare: entries 3 and 4 are both batch_ingested, with different payloads
    store.sql(
        "UPDATE ledger SET payload = CASE seq "
        "WHEN 3 THEN (SELECT payload FROM ledger WHERE seq = 4) "
        "WHEN 4 THEN (SELECT payload FROM ledger WHERE seq = 3) END "
        "WHERE seq IN (3, 4)"
    )

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert "ledger entry 3" in report.problems[0]
    assert "modified" in report.problems[0]


def test_registry_sha_swapped_is_detected(store: Tamperable) -> None:
    # Prepare
    store.sql("UPDATE model_versions SET sha256 = ? WHERE twin_id = ?", "0" * 64, KEY)

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert any(f"model {KEY} v1" in p for p in report.problems), report.problems


def test_flipped_artifact_byte_is_detected_and_predict_refuses(store: Tamperable) -> None:
    # Prepare
    (version,) = store.engine.models(TWIN)
    path = store.engine.artifacts.path(version.sha256)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert any(f"model {KEY} v1" in p and "modified" in p for p in report.problems)
    with pytest.raises(IntegrityError, match="modified"):
        store.engine.predict(TWIN)


def test_deleted_artifact_is_detected_and_predict_refuses(store: Tamperable) -> None:
    # Prepare
    (version,) = store.engine.models(TWIN)
    store.engine.artifacts.path(version.sha256).unlink()

    # Execute
    report = store.engine.verify()

    # Assert
    assert any(f"model {KEY} v1" in p and "missing" in p for p in report.problems)
    with pytest.raises(IntegrityError, match="missing"):
        store.engine.predict(TWIN)


def test_serving_status_swapped_behind_the_ledger_is_detected(store: Tamperable) -> None:
    # Prepare: a second version, refused or promoted, then the statuses flipped by hand
    store.engine.fit(TWIN, model="persistence")
    assert store.engine.verify().ok
    store.sql(
        "UPDATE model_versions SET status = CASE status WHEN 'serving' THEN 'retired' "
        "ELSE 'serving' END WHERE twin_id = ?",
        KEY,
    )

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert any(TWIN in p and "ledger's last promotion" in p for p in report.problems)


def test_edited_quarantined_row_is_detected(store: Tamperable) -> None:
    # Prepare: hold one absurd value, then edit what the quarantine says was sent
    start = pd.Timestamp("2026-06-01", tz="UTC")
    absurd = pd.DataFrame(
        {"twin_id": [TWIN], "time": [start], "channel": ["glucose"], "value": [5e6]}
    )
    result = store.engine.ingest(absurd)
    assert result.n_quarantined == 1
    store.sql("UPDATE quarantine SET record = replace(record, '5000000.0', '150.0')")

    # Execute
    report = store.engine.verify()

    # Assert
    assert not report.ok
    assert any(f"batch {result.batch_id}" in p and "quarantined rows" in p for p in report.problems)
