"""Bad input is rejected whole with a located ValidationError, or quarantined row by row.

A rejected batch leaves the store, ledger included, exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import TwinkitError, ValidationError
from twinkit.engine import TwinEngine

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`
WriteFrameFn = Callable[[pd.DataFrame, Path], Path]  # conftest `write_frame`

HEADER = "twin_id,time,channel,value\n"
PNG_BYTES = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01"
    b"\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\nIDATx\x9cc\x00\x01"
)


def signal_frame(rows: list[tuple[str, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["twin_id", "time", "channel", "value"])


def write_text(directory: Path, name: str, content: str | bytes) -> Path:
    path = directory / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def assert_problem(error: ValidationError, row: int | None, column: str | None, text: str) -> None:
    """The error holds a problem at (row, column) whose message contains ``text``."""
    matches = [
        p
        for p in error.problems
        if p.row == row and p.column == column and text.lower() in p.message.lower()
    ]
    assert matches, f"no problem at row={row} column={column} with {text!r}: {error.problems}"
    if row is not None:
        assert f"row {row}" in str(error)
    if column is not None:
        assert f"column '{column}'" in str(error)


@pytest.fixture
def store(engine: TwinEngine) -> TwinEngine:
    """p1: state twin, any channel; p2: state twin declaring glucose; d1: decision twin.

    p1 already holds one batch, so an unchanged store is a non-trivial claim.
    """
    engine.create_twin("p1", "state")
    engine.create_twin("p2", "state", channels=["glucose"])
    engine.create_twin("d1", "decision")
    base = signal_frame(
        [("p1", f"2026-01-01T00:{m:02d}:00Z", "glucose", 100.0 + m) for m in range(0, 30, 5)]
    )
    engine.ingest(base, source="base")
    return engine


# -- rejected batches ---------------------------------------------------------------------


@dataclass(frozen=True)
class BadFile:
    name: str
    content: str | bytes
    row: int | None
    column: str | None
    text: str


BAD_FILES = [
    BadFile(
        "missing_column.csv",
        "twin_id,time,channel\np1,2026-02-01T00:00:00Z,glucose\n",
        None,
        None,
        "missing column",
    ),
    BadFile(
        "non_numeric.csv",
        HEADER + "p1,2026-02-01T00:00:00Z,glucose,100\np1,2026-02-01T00:05:00Z,glucose,abc\n",
        2,
        "value",
        "not a number",
    ),
    BadFile(
        "missing_value.csv",
        HEADER + "p1,2026-02-01T00:00:00Z,glucose,100\np1,2026-02-01T00:05:00Z,glucose,\n",
        2,
        "value",
        "missing value",
    ),
    BadFile(
        "bad_time.csv",
        HEADER + "p1,2026-02-01T00:00:00,glucose,100\np1,yesterday,glucose,101\n",
        2,
        "time",
        "ISO-8601",
    ),
    BadFile(
        "bad_month.csv",
        HEADER + "p1,2026-02-01T00:00:00Z,glucose,100\np1,2026-13-01T00:05:00Z,glucose,101\n",
        2,
        "time",
        "ISO-8601",
    ),
    BadFile(
        "mixed_tz.csv",
        HEADER
        + "p1,2026-02-01T00:00:00Z,glucose,100\n"
        + "p1,2026-02-01T00:05:00,glucose,101\n"
        + "p1,2026-02-01T00:10:00+01:00,glucose,102\n",
        2,
        "time",
        "offset",
    ),
    BadFile(
        "unknown_twin.csv",
        HEADER + "p1,2026-02-01T00:00:00Z,glucose,100\nnobody,2026-02-01T00:05:00Z,glucose,1\n",
        2,
        "twin_id",
        "unknown twin 'nobody'",
    ),
    BadFile("empty.csv", b"", None, None, "empty"),
    BadFile("header_only.csv", HEADER, None, None, "no data rows"),
    BadFile("image.csv", PNG_BYTES, None, None, "cannot be read as csv"),
    BadFile("text.parquet", HEADER + "p1,2026-02-01T00:00:00Z,glucose,1\n", None, None, "Parquet"),
    BadFile("sheet.xlsx", HEADER + "p1,2026-02-01T00:00:00Z,glucose,1\n", None, None, ".xlsx"),
    BadFile(
        "signals_for_decision_twin.csv",
        HEADER + "d1,2026-02-01T00:00:00Z,glucose,100\n",
        1,
        "twin_id",
        "decision twin",
    ),
    BadFile(
        "undeclared_channel.csv",
        HEADER + "p2,2026-02-01T00:00:00Z,glucose,100\np2,2026-02-01T00:00:00Z,heart_rate,60\n",
        2,
        "channel",
        "not declared",
    ),
    BadFile(
        "decisions_for_state_twin.csv",
        "twin_id,item_id,f0,f1,label\np1,a,1.0,2.0,yes\n",
        1,
        "twin_id",
        "state twin",
    ),
    BadFile(
        "non_numeric_feature.csv",
        "twin_id,item_id,f0,f1,label\nd1,a,1.0,2.0,yes\nd1,b,0.5,lots,no\n",
        2,
        "f1",
        "not a number",
    ),
]


@pytest.mark.parametrize("bad", BAD_FILES, ids=[b.name for b in BAD_FILES])
def test_bad_file_is_rejected_whole_and_store_unchanged(
    store: TwinEngine, tmp_path: Path, bad: BadFile, snapshot: SnapshotFn
) -> None:
    # Prepare
    path = write_text(tmp_path, bad.name, bad.content)
    before = snapshot(store)

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.ingest(path)

    # Assert
    assert_problem(caught.value, bad.row, bad.column, bad.text)
    assert str(path) in str(caught.value)
    assert snapshot(store) == before
    assert store.verify().ok


def test_missing_column_error_names_the_missing_column(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare
    path = write_text(tmp_path, "m.csv", "twin_id,time,channel\np1,2026-02-01T00:00:00Z,g\n")

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.ingest(path)

    # Assert
    assert "'value'" in str(caught.value)


def test_rejected_dataframe_batch_leaves_store_unchanged(
    store: TwinEngine, snapshot: SnapshotFn
) -> None:
    # Prepare: one good row, one row of an unknown twin, in one batch
    frame = signal_frame(
        [
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("ghost", "2026-02-01T00:05:00Z", "glucose", 101.0),
        ]
    )
    before = snapshot(store)

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.ingest(frame)

    # Assert: the good row was not stored either
    assert_problem(caught.value, 2, "twin_id", "unknown twin")
    assert snapshot(store) == before


def test_unparseable_time_among_offset_times_is_named(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare
    path = write_text(
        tmp_path,
        "t.csv",
        HEADER + "p1,2026-02-01T00:00:00Z,glucose,100\np1,yesterday,glucose,101\n",
    )

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.ingest(path)

    # Assert: row 2 is the bad one, and the problem is its format, not its time zone
    assert_problem(caught.value, 2, "time", "ISO-8601")
    assert all(p.row != 1 for p in caught.value.problems)


@pytest.mark.parametrize("fmt", ["parquet", "dataframe"])
def test_missing_time_in_typed_column_is_rejected(
    store: TwinEngine, tmp_path: Path, fmt: str, snapshot: SnapshotFn, write_frame: WriteFrameFn
) -> None:
    # Prepare
    frame = pd.DataFrame(
        {
            "twin_id": ["p1", "p1"],
            "time": pd.Series([pd.Timestamp("2026-02-01T00:00:00Z"), pd.NaT]),
            "channel": ["glucose", "glucose"],
            "value": [100.0, 101.0],
        }
    )
    data: Path | pd.DataFrame = (
        write_frame(frame, tmp_path / "t.parquet") if fmt == "parquet" else frame
    )
    before = snapshot(store)

    # Execute
    with pytest.raises(ValidationError) as caught:
        store.ingest(data)

    # Assert
    assert_problem(caught.value, 2, "time", "missing")
    assert snapshot(store) == before


# -- quarantine -----------------------------------------------------------------------------


def test_nan_and_inf_are_quarantined_not_stored(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare
    path = write_text(
        tmp_path,
        "nan.csv",
        HEADER
        + "p1,2026-02-01T00:00:00Z,glucose,nan\n"
        + "p1,2026-02-01T00:05:00Z,glucose,inf\n"
        + "p1,2026-02-01T00:10:00Z,glucose,-inf\n"
        + "p1,2026-02-01T00:15:00Z,glucose,120\n",
    )
    stored_before = len(store.signals("p1"))

    # Execute
    result = store.ingest(path)

    # Assert
    assert (result.n_rows, result.n_stored, result.n_quarantined) == (4, 1, 3)
    assert result.quarantine_reasons == {"non_finite": 3}
    held = store.quarantine("p1")
    assert sorted(q["row"] for q in held) == [1, 2, 3]
    assert all("non-finite" in q["reason"] for q in held)
    signals = store.signals("p1")
    assert len(signals) == stored_before + 1
    assert np.isfinite(signals["glucose"].to_numpy()).all()
    assert store.verify().ok


def test_absurd_value_is_quarantined_out_of_range(store: TwinEngine) -> None:
    # Prepare
    frame = signal_frame(
        [
            ("p1", "2026-02-01T00:00:00Z", "glucose", 1e6),
            ("p1", "2026-02-01T00:05:00Z", "glucose", 110.0),
        ]
    )

    # Execute
    result = store.ingest(frame)

    # Assert
    assert (result.n_stored, result.n_quarantined) == (1, 1)
    assert result.quarantine_reasons == {"out_of_range": 1}
    (held,) = store.quarantine("p1")
    assert held["row"] == 1
    assert "range" in held["reason"]
    assert 1e6 not in store.signals("p1")["glucose"].to_numpy()
    assert store.verify().ok


def test_conflicting_values_in_one_batch_are_all_quarantined(store: TwinEngine) -> None:
    # Prepare: the 00:00 key three times with two different values; 00:05 is clean
    frame = signal_frame(
        [
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("p1", "2026-02-01T00:00:00Z", "glucose", 101.0),
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("p1", "2026-02-01T00:05:00Z", "glucose", 105.0),
        ]
    )

    # Execute
    result = store.ingest(frame)

    # Assert
    assert (result.n_stored, result.n_quarantined, result.n_duplicates) == (1, 3, 0)
    assert result.quarantine_reasons == {"conflicting_value": 3}
    assert sorted(q["row"] for q in store.quarantine("p1")) == [1, 2, 3]
    stored = store.signals("p1")["glucose"]
    assert pd.Timestamp("2026-02-01T00:00:00Z") not in stored.index
    assert stored[pd.Timestamp("2026-02-01T00:05:00Z")] == 105.0
    assert store.verify().ok


def test_exact_duplicates_in_one_batch_are_counted_and_stored_once(store: TwinEngine) -> None:
    # Prepare
    frame = signal_frame(
        [
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
            ("p1", "2026-02-01T00:05:00Z", "glucose", 105.0),
        ]
    )
    n_before = len(store.signals("p1"))

    # Execute
    result = store.ingest(frame)

    # Assert
    assert (result.n_stored, result.n_quarantined, result.n_duplicates) == (2, 0, 2)
    assert len(store.signals("p1")) == n_before + 2
    assert store.quarantine("p1") == []
    assert store.verify().ok


def test_value_conflicting_with_stored_value_is_quarantined(store: TwinEngine) -> None:
    # Prepare: base holds p1/glucose at 00:00 = 100.0
    frame = signal_frame(
        [
            ("p1", "2026-01-01T00:00:00Z", "glucose", 99.0),
            ("p1", "2026-01-01T00:02:00Z", "glucose", 101.0),
        ]
    )

    # Execute
    result = store.ingest(frame)

    # Assert
    assert (result.n_stored, result.n_quarantined) == (1, 1)
    assert result.quarantine_reasons == {"conflicting_value": 1}
    (held,) = store.quarantine("p1")
    assert "stored" in held["reason"]
    assert store.signals("p1")["glucose"][pd.Timestamp("2026-01-01T00:00:00Z")] == 100.0
    assert store.verify().ok


def test_exact_duplicate_of_stored_row_is_counted_not_stored_again(store: TwinEngine) -> None:
    # Prepare: 00:05 = 105.0 is already stored; 00:07 is new
    frame = signal_frame(
        [
            ("p1", "2026-01-01T00:05:00Z", "glucose", 105.0),
            ("p1", "2026-01-01T00:07:00Z", "glucose", 107.0),
        ]
    )
    n_before = len(store.signals("p1"))

    # Execute
    result = store.ingest(frame)

    # Assert
    assert (result.n_stored, result.n_quarantined, result.n_duplicates) == (1, 0, 1)
    assert len(store.signals("p1")) == n_before + 1
    assert store.verify().ok


# -- re-ingest and formats ------------------------------------------------------------------


def test_reingesting_same_content_is_a_no_op(
    engine: TwinEngine,
    cohort: pd.DataFrame,
    tmp_path: Path,
    snapshot: SnapshotFn,
    write_frame: WriteFrameFn,
) -> None:
    # Prepare: same rows, shuffled, from a file instead of a frame
    engine.create_twin("synth-001", "state")
    engine.create_twin("synth-002", "state")
    first = engine.ingest(cohort)
    before = snapshot(engine)
    shuffled = cohort.sample(frac=1.0, random_state=1)
    path = write_frame(shuffled, tmp_path / "again.csv")

    # Execute
    again = engine.ingest(path)

    # Assert
    assert again.already_ingested is True
    assert again.content_hash == first.content_hash
    assert again.batch_id == first.batch_id
    assert again.n_stored == 0
    assert snapshot(engine) == before


def test_same_content_from_csv_parquet_jsonl_has_same_hash(
    engine: TwinEngine, cohort: pd.DataFrame, tmp_path: Path, write_frame: WriteFrameFn
) -> None:
    # Prepare
    engine.create_twin("synth-001", "state")
    engine.create_twin("synth-002", "state")
    small = cohort.groupby(["twin_id", "channel"]).head(6).reset_index(drop=True)
    paths = [write_frame(small, tmp_path / f"s.{ext}") for ext in ("csv", "parquet", "jsonl")]

    # Execute
    results = [engine.ingest(p) for p in paths]

    # Assert
    assert len({r.content_hash for r in results}) == 1
    assert [r.already_ingested for r in results] == [False, True, True]
    assert results[0].n_stored == len(small)
    assert engine.verify().ok


# -- quarantine release ---------------------------------------------------------------------


def test_release_stores_the_row_and_verify_stays_ok(store: TwinEngine) -> None:
    # Prepare
    store.ingest(signal_frame([("p1", "2026-02-01T00:00:00Z", "glucose", 1e6)]))
    (held,) = store.quarantine("p1")

    # Execute
    n = store.release([held["id"]])

    # Assert
    assert n == 1
    assert store.signals("p1")["glucose"][pd.Timestamp("2026-02-01T00:00:00Z")] == 1e6
    assert store.quarantine("p1") == []
    (released,) = store.quarantine("p1", include_released=True)
    assert released["released_at"] is not None
    assert store.history()[-1].event == "quarantine_released"
    assert store.verify().ok


def test_release_of_one_conflicting_row_stores_it(store: TwinEngine) -> None:
    # Prepare
    store.ingest(
        signal_frame(
            [
                ("p1", "2026-02-01T00:00:00Z", "glucose", 100.0),
                ("p1", "2026-02-01T00:00:00Z", "glucose", 101.0),
            ]
        )
    )
    chosen = next(q for q in store.quarantine("p1") if q["record"]["value"] == "101.0")

    # Execute
    store.release([chosen["id"]])

    # Assert
    assert store.signals("p1")["glucose"][pd.Timestamp("2026-02-01T00:00:00Z")] == 101.0
    assert len(store.quarantine("p1")) == 1
    assert store.verify().ok


def test_release_of_nan_row_is_refused(store: TwinEngine, snapshot: SnapshotFn) -> None:
    # Prepare: one releasable row and one NaN row
    store.ingest(
        signal_frame(
            [
                ("p1", "2026-02-01T00:00:00Z", "glucose", float("nan")),
                ("p1", "2026-02-01T00:05:00Z", "glucose", 1e6),
            ]
        )
    )
    ids = [q["id"] for q in store.quarantine("p1")]
    before = snapshot(store)

    # Execute
    with pytest.raises(TwinkitError, match="non-finite"):
        store.release(ids)

    # Assert: refused as a whole; the finite row was not released either
    assert snapshot(store) == before
    assert store.verify().ok


# -- decisions ------------------------------------------------------------------------------


def test_decisions_csv_ingests_into_decision_twin(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare
    path = write_text(
        tmp_path,
        "decisions.csv",
        "twin_id,item_id,f0,f1,label\nd1,a,1.0,2.0,yes\nd1,b,0.5,-1,no\nd1,c,3,4.5,yes\n",
    )

    # Execute
    result = store.ingest(path)

    # Assert
    assert result.batch_id is not None
    assert (result.n_rows, result.n_stored, result.n_quarantined) == (3, 3, 0)
    assert store.twin_summary("d1")["decisions"] == 3
    assert store.history("d1")[-1].event == "batch_ingested"
    assert store.verify().ok


def test_decision_with_nan_feature_is_quarantined(store: TwinEngine, tmp_path: Path) -> None:
    # Prepare
    path = write_text(
        tmp_path, "d.csv", "twin_id,item_id,f0,f1,label\nd1,a,1.0,2.0,yes\nd1,b,nan,1,no\n"
    )

    # Execute
    result = store.ingest(path)

    # Assert
    assert (result.n_stored, result.n_quarantined) == (1, 1)
    (held,) = store.quarantine("d1")
    assert "f0" in held["reason"]
    assert store.verify().ok
