"""Size limits of a read: too many rows, columns or cells are refused before decoding.

Also: wide decision files are read and hashed as before (their cost is linear in the cells,
which ``benchmarks/wide_decisions.py`` measures; tests never time anything).
"""

from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from twinkit.core.digest import canonical_json, features_json
from twinkit.core.errors import TooLargeError, ValidationError
from twinkit.data.importers import DecisionBatch, parse_batch, read_table_bytes
from twinkit.engine import TwinEngine

FORMATS = ["csv", "parquet", "jsonl"]


def encode(frame: pd.DataFrame, fmt: str) -> bytes:
    """``frame`` as the bytes of a CSV, Parquet or JSON-lines file."""
    if fmt == "csv":
        return frame.to_csv(index=False).encode("utf-8")
    if fmt == "parquet":
        out = io.BytesIO()
        frame.to_parquet(out, index=False)
        return out.getvalue()
    records = frame.to_dict(orient="records")
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def signals(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "time": pd.date_range("2026-01-01", periods=n, freq="1min").strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            ),
            "channel": "glucose",
            "value": 100.0,
        }
    )


def decisions(n_rows: int, n_features: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    features = pd.DataFrame(
        rng.random((n_rows, n_features)), columns=[f"f{j}" for j in range(n_features)]
    )
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_rows)]})
    labels = pd.DataFrame({"label": ["yes", "no"] * (n_rows // 2) + ["yes"] * (n_rows % 2)})
    return pd.concat([items, features, labels], axis=1)


def refuse_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every full decode of a file fail: a limit must be found before one."""

    def decoded(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the file was decoded before its size was checked")

    monkeypatch.setattr(pq, "read_table", decoded)
    monkeypatch.setattr(pq.ParquetFile, "read", decoded)
    monkeypatch.setattr(pq.ParquetFile, "read_row_group", decoded)
    monkeypatch.setattr(pq.ParquetFile, "iter_batches", decoded)
    monkeypatch.setattr(pa_csv, "read_csv", decoded)
    monkeypatch.setattr(pd, "read_json", decoded)


# -- rows ------------------------------------------------------------------------------------


def test_a_parquet_bomb_is_refused_from_its_footer(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: a million identical readings compress to a few KiB of Parquet
    bomb = encode(signals(1).loc[np.zeros(1_000_001, dtype=int)], "parquet")
    assert len(bomb) < 64 * 1024
    refuse_decoding(monkeypatch)

    # Execute
    with pytest.raises(TooLargeError) as caught:
        read_table_bytes(bomb, "bomb.parquet", max_rows=100_000)

    # Assert
    assert (caught.value.what, caught.value.limit) == ("rows", 100_000)
    assert "bomb.parquet: the upload has more than 100000 rows (the limit)" in str(caught.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_row_over_the_limit_is_refused_before_decoding(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare
    raw = encode(signals(51), fmt)
    refuse_decoding(monkeypatch)

    # Execute
    with pytest.raises(TooLargeError) as caught:
        read_table_bytes(raw, f"s.{fmt}", max_rows=50)

    # Assert
    assert (caught.value.what, caught.value.limit) == ("rows", 50)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_file_at_the_limits_is_read_whole(fmt: str) -> None:
    # Prepare: 50 rows of 3 columns; JSON lines with blank lines, which are not rows
    raw = encode(signals(50), fmt)
    if fmt == "jsonl":
        raw = raw.replace(b"\n", b"\n\n  \n")

    # Execute
    frame = read_table_bytes(raw, f"s.{fmt}", max_rows=50, max_columns=3, max_cells=150)

    # Assert
    assert frame.shape == (50, 3)


def test_csv_rows_are_counted_as_parsed_not_as_lines() -> None:
    # Prepare: a quoted comma and a trailing blank line are not rows nor columns
    raw = b'time,channel,value\n"2026-01-01T00:00:00Z",glucose,"1,5"\n\n'

    # Execute
    frame = read_table_bytes(raw, "s.csv", max_rows=1, max_columns=3)

    # Assert
    assert frame.shape == (1, 3)


def test_without_limits_nothing_is_refused() -> None:
    # The CLI reads local files with no limit.
    frame = read_table_bytes(encode(signals(300), "csv"), "s.csv")
    assert len(frame) == 300


# -- columns and cells -----------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_many_columns_are_refused_before_decoding(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: item_id, 2,000 features and label: 2,002 columns. Arrow takes seconds for
    # the schema of a header of 100,000s of columns: it must not even see the header.
    raw = encode(decisions(2, 2_000), fmt)
    refuse_decoding(monkeypatch)
    monkeypatch.setattr(pa_csv, "open_csv", pa_csv.read_csv)

    # Execute
    with pytest.raises(TooLargeError) as caught:
        read_table_bytes(raw, f"d.{fmt}", max_columns=2_000)

    # Assert
    assert (caught.value.what, caught.value.limit) == ("columns", 2_000)
    assert "more than 2000 columns" in str(caught.value)


def test_json_lines_count_the_keys_of_every_line() -> None:
    # Prepare: three keys per line, but ten distinct keys across the lines
    lines = [{"item_id": "i", "label": "y", f"f{k}": 1.0} for k in range(8)]
    raw = "".join(json.dumps(line) + "\n" for line in lines).encode()

    # Execute
    with pytest.raises(TooLargeError) as caught:
        read_table_bytes(raw, "d.jsonl", max_columns=9)

    # Assert
    assert caught.value.what == "columns"


@pytest.mark.parametrize("fmt", FORMATS)
def test_too_many_cells_are_refused_before_decoding(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: within the rows' and the columns' limits, 40 x 12 = 480 cells
    raw = encode(decisions(40, 10), fmt)
    refuse_decoding(monkeypatch)

    # Execute
    with pytest.raises(TooLargeError) as caught:
        read_table_bytes(raw, f"d.{fmt}", max_rows=40, max_columns=12, max_cells=479)

    # Assert
    assert (caught.value.what, caught.value.limit) == ("cells", 479)


def test_the_error_can_name_the_setting_of_its_limit() -> None:
    error = TooLargeError("api:alice:x.csv", "rows", 100_000).naming("TWINKIT_MAX_UPLOAD_ROWS")
    assert str(error) == (
        "api:alice:x.csv: the upload has more than 100000 rows (the limit, "
        "TWINKIT_MAX_UPLOAD_ROWS); nothing was stored: split it into smaller batches"
    )


# -- wide decision files ---------------------------------------------------------------------


def test_a_wide_decisions_file_is_validated_whole(engine: TwinEngine) -> None:
    # Prepare: 3,000 features (above the service's column limit; the CLI has none)
    frame = decisions(4, 3_000)
    raw = encode(frame, "csv")
    engine.create_twin("d1", "decision")

    # Execute
    batch = parse_batch(read_table_bytes(raw, "d.csv"), "d.csv", twin="d1")
    result = engine.ingest(read_table_bytes(raw, "d.csv"), twin="d1", source="d.csv")

    # Assert
    assert isinstance(batch, DecisionBatch)
    assert batch.features.shape == (4, 3_000)
    assert np.array_equal(batch.features, frame.drop(columns=["item_id", "label"]).to_numpy())
    assert result.n_stored == 4
    stored = engine.decisions("d1")
    assert json.loads(stored["features"].iloc[0]) == dict(
        zip(batch.feature_names, batch.features[0].tolist(), strict=True)
    )


def test_duplicated_columns_of_a_wide_file_are_named() -> None:
    # Prepare
    frame = decisions(2, 500)
    frame.insert(3, "f7", 0.0, allow_duplicates=True)
    frame.insert(9, "f42", 0.0, allow_duplicates=True)

    # Execute
    with pytest.raises(ValidationError) as caught:
        parse_batch(frame, "d.csv", twin="d1")

    # Assert
    assert "duplicated column(s) ['f42', 'f7']" in str(caught.value)


def _features_json_reference(names: list[str], values: np.ndarray) -> list[str]:
    """The definition: canonical JSON of a dict per row, a non-finite value as null."""
    return [
        canonical_json(
            {n: (v if math.isfinite(v) else None) for n, v in zip(names, row, strict=True)}
        )
        for row in values.tolist()
    ]


@pytest.mark.parametrize("seed", range(20))
def test_features_json_is_the_canonical_json_of_each_row(seed: int) -> None:
    # Prepare: names with quotes, escapes, non-ASCII and repeats; values of every kind
    rng = np.random.default_rng(seed)
    pool = ["a", "b", "é", 'q"x', "\\", "z\n", "日本", "A", "a b", "", "10", "9"]
    names = [str(rng.choice(pool)) + str(rng.integers(0, 3)) for _ in range(rng.integers(0, 12))]
    values = rng.normal(size=(4, len(names))) * 10.0 ** rng.integers(-320, 300, (4, len(names)))
    values[rng.random(values.shape) < 0.2] = np.nan
    values[rng.random(values.shape) < 0.1] = -np.inf
    values[rng.random(values.shape) < 0.1] = -0.0

    # Execute / Assert: byte for byte, since stored features and batch hashes depend on it
    assert features_json(names, values) == _features_json_reference(names, values)
