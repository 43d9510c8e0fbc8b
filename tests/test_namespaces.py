"""Per-owner id namespaces and per-owner population priors (issue #16, defects 6 and 7).

Twin ids are unique per owner: two owners may both have a ``p1``. The engine names a
twin as ``owner/id``, or by its bare id when one owner uses it. A population prior pools
one owner's twins unless every owner in it shares, and an owner's view of the ledger
shows other owners' twins only as a count.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from sqlalchemy import text

from twinkit import TwinEngine
from twinkit.core.errors import AmbiguousTwinError, NotFoundError, TwinkitError, ValidationError
from twinkit.store import tables

TINY_GRU = {"hidden": 8, "epochs": 2, "context_min": 60, "batch_size": 128, "max_horizon_min": 30}


ReadingsFn = Callable[[int, float], pd.DataFrame]


def two_owners_p1(engine: TwinEngine, readings: ReadingsFn) -> None:
    """alice/p1 (a day at 100 mg/dL) and bob/p1 (two days at 200 mg/dL)."""
    engine.create_twin("p1", "state", owner="alice", channels=["glucose"])
    engine.create_twin("bob/p1", "state", channels=["glucose"])
    engine.ingest(readings(288, 100.0), twin="alice/p1")
    engine.ingest(readings(576, 200.0), twin="p1", owner="bob")


# -- namespaces ------------------------------------------------------------------------------


def test_two_owners_have_twins_of_the_same_id_with_their_own_data_and_models(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    two_owners_p1(engine, readings)

    # Execute
    fits = [engine.fit(ref, model="linear_ar") for ref in ("alice/p1", "bob/p1")]

    # Assert
    assert [(t.id, t.owner, t.key) for t in engine.list_twins()] == [
        ("p1", "alice", "alice/p1"),
        ("p1", "bob", "bob/p1"),
    ]
    assert len(engine.signals("alice/p1")) == 288
    assert len(engine.signals("bob/p1")) == 576
    assert [f.twin_id for f in fits] == ["p1", "p1"]
    assert engine.models("alice/p1")[0].data_hash != engine.models("bob/p1")[0].data_hash
    alice_level = engine.predict("alice/p1").mean[0]
    bob_level = engine.predict("bob/p1").mean[0]
    assert alice_level < 150 < bob_level
    assert engine.verify().ok


def test_a_bare_id_names_the_one_owners_twin_and_is_refused_when_several_own_it(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    engine.create_twin("solo", "state", owner="alice")
    two_owners_p1(engine, readings)

    # Execute / Assert: unique ids need no owner
    assert engine.get_twin("solo").owner == "alice"
    with pytest.raises(AmbiguousTwinError, match=r"several owners \(alice, bob\).*owner/p1"):
        engine.get_twin("p1")
    with pytest.raises(NotFoundError):
        engine.get_twin("carol/p1")
    with pytest.raises(AmbiguousTwinError):
        engine.fit("p1", model="linear_ar")


def test_a_batch_naming_an_id_of_several_owners_needs_the_owner_and_stores_nothing(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    two_owners_p1(engine, readings)
    batch = readings(1, 120.0).assign(twin_id="p1")
    before = engine.twin_summary("alice/p1")["observations"]

    # Execute
    with pytest.raises(ValidationError) as refused:
        engine.ingest(batch.assign(time=pd.Timestamp("2026-02-01", tz="UTC")))
    stored = engine.ingest(batch.assign(time="2026-02-01T00:00:00Z"), owner="alice")

    # Assert
    problem = refused.value.problems[0]
    assert (problem.row, problem.column) == (1, "twin_id")
    assert "several owners (alice, bob)" in problem.message
    assert stored.n_stored == 1
    assert engine.twin_summary("alice/p1")["observations"] == before + 1
    assert engine.twin_summary("bob/p1")["observations"] == 576


def test_the_same_file_for_two_owners_twins_of_one_id_is_two_batches(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    for owner in ("alice", "bob"):
        engine.create_twin("p1", "state", owner=owner)
    data = readings(12, 110.0)

    # Execute
    first = engine.ingest(data, twin="alice/p1")
    second = engine.ingest(data, twin="bob/p1")

    # Assert: not "already ingested": the batch of one owner's twin is not the other's
    assert not second.already_ingested
    assert first.content_hash != second.content_hash
    assert (first.n_stored, second.n_stored) == (12, 12)


def test_deleting_one_owners_twin_leaves_the_other_owners_twin_of_that_id(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    two_owners_p1(engine, readings)
    engine.fit("bob/p1", model="linear_ar")

    # Execute
    engine.delete_twin("alice/p1")

    # Assert
    assert engine.get_twin("p1").owner == "bob"  # now unique again
    assert len(engine.signals("p1")) == 576
    assert engine.models("p1")[0].status == "serving"
    assert engine.verify().ok


def test_an_owner_name_in_a_twins_reference_must_be_a_valid_owner(engine: TwinEngine) -> None:
    with pytest.raises(TwinkitError, match="invalid owner name"):
        engine.create_twin("p1", "state", owner="a b")
    with pytest.raises(TwinkitError, match="cannot be owned by"):
        engine.create_twin("alice/p1", "state", owner="bob")


def test_a_store_of_schema_6_keeps_its_twins_under_their_ids_and_gains_namespaces(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare: a version-6 store (twins keyed by their bare id) with alice's twin "old"
    with engine.store.write() as conn:
        for statement in (
            "DROP INDEX ux_twins_owner_name",
            "DROP INDEX ix_twins_name",
            "ALTER TABLE twins DROP COLUMN name",
            "ALTER TABLE population_models DROP COLUMN owners",
            "DROP TABLE population_sharing",
        ):
            conn.execute(text(statement))
        if conn.dialect.name == "postgresql":  # and the key columns as version 6 made them
            for table, column in tables.KEY_COLUMNS:
                conn.execute(
                    text(f"ALTER TABLE {table.name} ALTER COLUMN {column.name} TYPE VARCHAR(128)")
                )
        conn.execute(
            text(
                "INSERT INTO twins (id, kind, owner, metadata, created_at, uid) VALUES "
                "('old', 'state', 'alice', '{}', '2026-01-01T00:00:00+00:00', 'u1')"
            )
        )
        conn.execute(text("UPDATE meta SET value = '6' WHERE key = 'schema_version'"))
    url = engine.store.url
    engine.store.dispose()

    # Execute
    reopened = TwinEngine(url)
    reopened.ingest(readings(288, 130.0), twin="alice/old")
    reopened.create_twin("old", "state", owner="bob")
    long_id = "x" * 128
    made = reopened.create_twin(long_id, "state", owner="o" * 128)

    # Assert: the old twin keeps its key; the new one of the same id is bob's own
    old = reopened.get_twin("alice/old")
    assert (old.id, old.key, old.uid) == ("old", "old", "u1")
    assert reopened.get_twin("bob/old").key == "bob/old"
    assert len(reopened.signals("alice/old")) == 288
    assert reopened.fit("alice/old", model="linear_ar").version == 1
    assert [e.event for e in reopened.history("alice/old")][-3:] == [
        "batch_ingested",
        "model_registered",
        "model_promoted",
    ]
    assert reopened.get_twin(made.ref).key == f"{'o' * 128}/{long_id}"  # 257 characters
    assert reopened.verify().ok


# -- population priors per owner -------------------------------------------------------------


def test_a_population_prior_pools_one_owners_twins_by_default(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    two_owners_p1(engine, readings)
    engine.create_twin("p2", "state", owner="alice", channels=["glucose"])
    engine.ingest(readings(288, 110.0), twin="alice/p2")

    # Execute
    with pytest.raises(TwinkitError, match=r"several owners \(alice, bob\).*--owner"):
        engine.fit_population("gru", params=TINY_GRU)
    with pytest.raises(TwinkitError, match="bob do\\(es\\) not share"):
        engine.fit_population("gru", twin_ids=["alice/p1", "bob/p1"], params=TINY_GRU)
    alices = engine.fit_population("gru", params=TINY_GRU, owner="alice")

    # Assert: bob's fit does not start from alice's prior; alice's does
    assert (alices.owners, alices.twins) == (["alice"], ["alice/p1", "alice/p2"])
    bob_fit = engine.fit("bob/p1", candidates=["linear_ar", "population"])
    alice_fit = engine.fit("alice/p1", candidates=["linear_ar", "population"])
    assert bob_fit.selection is not None and alice_fit.selection is not None
    assert bob_fit.selection["population_version"] is None
    assert alice_fit.selection["population_version"] == alices.version
    registered = [e for e in engine.history() if e.event == "population_registered"]
    assert registered[0].payload["owners"] == ["alice"]
    assert registered[0].payload["pooling"] == "owner"


def test_owners_who_share_get_a_pooled_prior_until_one_stops_sharing(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare
    two_owners_p1(engine, readings)
    assert engine.share_population("alice") and engine.share_population("bob")
    assert not engine.share_population("bob")  # already

    # Execute
    shared = engine.fit_population("gru", params=TINY_GRU, owner="bob")
    with_sharing = engine.population(owner="alice")
    engine.share_population("alice", False)
    without = (engine.population(owner="alice"), engine.population(owner="bob"))

    # Assert
    assert shared.owners == ["alice", "bob"]
    assert sorted(shared.twins) == ["alice/p1", "bob/p1"]
    assert with_sharing is not None and with_sharing[0].version == shared.version
    assert without == (None, None)  # alice withdrew: the pooled prior serves no one
    events = [(e.event, e.payload) for e in engine.history() if e.event == "population_sharing"]
    assert events == [
        ("population_sharing", {"owner": "alice", "share": True}),
        ("population_sharing", {"owner": "bob", "share": True}),
        ("population_sharing", {"owner": "alice", "share": False}),
    ]


def test_an_owners_view_of_the_ledger_shows_other_owners_twins_only_as_counts(
    engine: TwinEngine, readings: ReadingsFn
) -> None:
    # Prepare: a prior pooled over both owners (who share), and one file spanning them
    two_owners_p1(engine, readings)
    engine.create_twin("a2", "state", owner="alice")
    engine.create_twin("q9", "state", owner="bob")
    for owner in ("alice", "bob"):
        engine.share_population(owner)
    engine.fit_population("gru", params=TINY_GRU, owner="alice")
    spanning = pd.concat([readings(2, 90.0).assign(twin_id=t) for t in ("a2", "q9")])
    engine.ingest(spanning)

    # Execute
    full = engine.history("alice/p1") + engine.history("alice/a2")
    seen = engine.history("alice/p1", owner="alice") + engine.history("alice/a2", owner="alice")

    # Assert
    prior = next(e for e in seen if e.event == "population_registered")
    assert prior.payload["twins"] == ["alice/p1"]
    assert prior.payload["other_twins"] == 1
    assert (prior.payload["owners"], prior.payload["other_owners"]) == (["alice"], 1)
    assert prior.payload["redacted"] is True
    batch = next(e for e in seen if e.event == "batch_ingested" and e.twin_id is None)
    assert (batch.payload["twins"], batch.payload["other_twins"]) == (["alice/a2"], 1)
    unredacted = next(e for e in full if e.event == "population_registered")
    assert sorted(unredacted.payload["twins"]) == ["alice/p1", "bob/p1"]
    shown = repr([e.payload for e in seen])
    assert "bob" not in shown and "q9" not in shown
