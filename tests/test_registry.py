"""Model registry: promotion by holdout score, manual promote and rollback, twin deletion,
and refusing a store written by a newer schema."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import update

from twinkit.core.errors import NotFoundError, PromotionError, SchemaVersionError
from twinkit.engine import TwinEngine
from twinkit.store import tables
from twinkit.store.model_versions import Status

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

TWIN = "p1"
OTHER = "p2"


def wave(twin_id: str, n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two days of 5-minute glucose: a 2-hour sine plus a little noise.

    Linear AR extrapolates the swing; persistence lags it, so linear_ar clearly wins.
    """
    rng = np.random.default_rng(seed)
    steps = np.arange(n)
    return pd.DataFrame(
        {
            "twin_id": twin_id,
            "time": pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC"),
            "channel": "glucose",
            "value": 120.0 + 40.0 * np.sin(2 * np.pi * steps / 24) + rng.normal(0, 1.0, n),
        }
    )


def statuses(engine: TwinEngine, twin_id: str = TWIN) -> dict[int, str]:
    return {v.version: v.status for v in engine.models(twin_id)}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """p1 and p2 with data; p1 has v1 linear_ar (serving) and v2 persistence (refused)."""
    home = tmp_path_factory.mktemp("registry_template")
    engine = TwinEngine(f"sqlite:///{home}/t.db")
    for twin_id, seed in ((TWIN, 0), (OTHER, 1)):
        engine.create_twin(twin_id, "state")
        engine.ingest(wave(twin_id, seed=seed), source=f"{twin_id}.csv")
    first = engine.fit(TWIN, model="linear_ar")
    second = engine.fit(TWIN, model="persistence")
    assert (first.version, first.promoted, second.version, second.promoted) == (1, True, 2, False)
    engine.store.dispose()
    return home


@pytest.fixture
def fitted(template: Path, tmp_path: Path) -> Iterator[TwinEngine]:
    home = tmp_path / "store"
    shutil.copytree(template, home)
    engine = TwinEngine(f"sqlite:///{home}/t.db")
    yield engine
    engine.store.dispose()


def test_first_fit_is_promoted(engine: TwinEngine) -> None:
    # Prepare
    engine.create_twin(TWIN, "state")
    engine.ingest(wave(TWIN))

    # Execute
    result = engine.fit(TWIN, model="linear_ar")

    # Assert
    assert result.promoted
    assert result.version == 1
    assert result.serving_metrics is None
    assert "first version" in result.reason
    assert statuses(engine) == {1: Status.SERVING}
    assert [e.event for e in engine.history(TWIN)[-2:]] == ["model_registered", "model_promoted"]
    assert engine.predict(TWIN).version == 1
    assert engine.verify().ok


def test_worse_model_is_not_promoted_and_refusal_is_in_ledger(fitted: TwinEngine) -> None:
    # Prepare: the template's v1 is linear_ar (serving); v2 is persistence
    v1, v2 = fitted.models(TWIN)

    # Execute
    refused = [e for e in fitted.history(TWIN) if e.event == "promotion_refused"]

    # Assert
    assert (v1.model, v2.model) == ("linear_ar", "persistence")
    assert v2.metrics["score"] > v1.metrics["score"]
    assert statuses(fitted) == {1: Status.SERVING, 2: Status.REJECTED}
    (entry,) = refused
    assert entry.payload["version"] == 2
    assert entry.payload["previous"] == 1
    assert entry.payload["manual"] is False
    assert "worse" in entry.payload["reason"]
    assert "v1 stays" in entry.payload["reason"]
    assert fitted.predict(TWIN).version == 1
    assert fitted.verify().ok


def test_worse_model_is_not_promoted_when_serving_has_shorter_horizon(
    engine: TwinEngine,
) -> None:
    # Prepare: linear_ar serving, fitted for 30 minutes ahead only
    engine.create_twin(TWIN, "state")
    engine.ingest(wave(TWIN))
    engine.fit(TWIN, model="linear_ar", horizons=(30,), params={"max_horizon_min": 30})

    # Execute: persistence with its defaults (120 min, horizons 30 and 60)
    result = engine.fit(TWIN, model="persistence")

    # Assert
    assert result.metrics["score"] > 5 * engine.models(TWIN)[0].metrics["score"]
    assert not result.promoted, result.reason
    assert engine.predict(TWIN, horizons=(30,)).version == 1


def test_manual_promote_and_rollback_change_serving_and_are_logged(fitted: TwinEngine) -> None:
    # Execute: promote the refused v2 by hand
    fitted.promote(TWIN, 2)

    # Assert
    assert statuses(fitted) == {1: Status.RETIRED, 2: Status.SERVING}
    promoted = fitted.history(TWIN)[-1]
    assert promoted.event == "model_promoted"
    assert promoted.payload == {
        "version": 2,
        "previous": 1,
        "reason": "manual promotion",
        "manual": True,
    }
    assert fitted.predict(TWIN).version == 2

    # Execute: and roll it back
    back_to = fitted.rollback(TWIN)

    # Assert
    assert back_to == 1
    assert statuses(fitted) == {1: Status.SERVING, 2: Status.ROLLED_BACK}
    rolled = fitted.history(TWIN)[-1]
    assert rolled.event == "model_rolled_back"
    assert rolled.payload == {"from_version": 2, "to_version": 1}
    assert fitted.predict(TWIN).version == 1
    assert fitted.verify().ok


def test_rollback_with_nothing_earlier_raises(fitted: TwinEngine, snapshot: SnapshotFn) -> None:
    # Prepare: v1 serves and nothing served before it
    before = snapshot(fitted)

    # Execute / Assert
    with pytest.raises(PromotionError, match="no earlier version"):
        fitted.rollback(TWIN)
    assert snapshot(fitted) == before


def test_rollback_without_serving_model_raises(fitted: TwinEngine) -> None:
    # Execute / Assert
    with pytest.raises(PromotionError, match="no serving model"):
        fitted.rollback(OTHER)


@pytest.mark.parametrize(("version", "text"), [(1, "already serving"), (9, "no model version")])
def test_bad_promote_raises_and_changes_nothing(
    fitted: TwinEngine, version: int, text: str, snapshot: SnapshotFn
) -> None:
    # Prepare
    before = snapshot(fitted)

    # Execute / Assert
    with pytest.raises(PromotionError, match=text):
        fitted.promote(TWIN, version)
    assert snapshot(fitted) == before


def test_rollback_after_promoting_an_older_version_returns_to_newer(fitted: TwinEngine) -> None:
    # Prepare: v2 serves, then v1 is promoted back by hand
    fitted.promote(TWIN, 2)
    fitted.promote(TWIN, 1)

    # Execute
    back_to = fitted.rollback(TWIN)

    # Assert
    assert back_to == 2
    assert fitted.predict(TWIN).version == 2


def test_delete_twin_removes_its_data_and_verify_passes(fitted: TwinEngine) -> None:
    # Prepare: p1 also has a quarantined row
    fitted.ingest(wave(TWIN, n=1).assign(value=1e6, time=pd.Timestamp("2025-01-01", tz="UTC")))
    assert fitted.quarantine(TWIN)
    other_before = fitted.signals(OTHER)

    key = fitted.get_twin(TWIN).key

    # Execute
    fitted.delete_twin(TWIN)

    # Assert
    with pytest.raises(NotFoundError):
        fitted.get_twin(TWIN)
    assert [t.id for t in fitted.list_twins()] == [OTHER]
    assert [q for q in fitted.quarantine() if q["twin_id"] == key] == []
    with fitted.store.read() as conn:
        for table in (tables.channels, tables.decisions, tables.model_versions):
            rows = conn.execute(table.select().where(table.c.twin_id == key)).all()
            assert rows == [], table.name
        assert conn.execute(tables.observations.select()).all()  # p2's rows remain
    pd.testing.assert_frame_equal(fitted.signals(OTHER), other_before)
    assert fitted.history()[-1].event == "twin_deleted"
    report = fitted.verify()
    assert report.ok, report.problems
    assert report.models == 0


def test_delete_unknown_twin_raises(fitted: TwinEngine) -> None:
    # Execute / Assert
    with pytest.raises(NotFoundError):
        fitted.delete_twin("nobody")


def test_recreated_twin_can_reingest_its_data(engine: TwinEngine) -> None:
    # Prepare
    engine.create_twin(TWIN, "state")
    engine.ingest(wave(TWIN))
    engine.delete_twin(TWIN)
    engine.create_twin(TWIN, "state")

    # Execute
    result = engine.ingest(wave(TWIN))

    # Assert
    assert len(engine.signals(TWIN)) == len(wave(TWIN))
    assert not result.already_ingested
    assert engine.verify().ok


def test_newer_schema_version_refuses_to_open(db_url: str) -> None:
    # Prepare: a store that a newer twinkit wrote
    first = TwinEngine(db_url)
    with first.store.write() as conn:
        conn.execute(
            update(tables.meta)
            .where(tables.meta.c.key == "schema_version")
            .values(value=str(tables.SCHEMA_VERSION + 1))
        )
    first.store.dispose()

    # Execute / Assert
    with pytest.raises(SchemaVersionError, match="upgrade twinkit"):
        TwinEngine(db_url)


def test_same_schema_version_reopens(db_url: str) -> None:
    # Prepare
    first = TwinEngine(db_url)
    first.create_twin(TWIN, "state")
    first.store.dispose()

    # Execute
    again = TwinEngine(db_url)

    # Assert
    assert [t.id for t in again.list_twins()] == [TWIN]
    assert again.verify().ok
    again.store.dispose()
