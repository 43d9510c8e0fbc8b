"""Dexcom Clarity CSV: the well-formed export, the other unit, sensor markers, a DST change,
a clock correction, and truncated or corrupted files (clear error, store unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ValidationError
from twinkit.engine import TwinEngine
from twinkit.importers import dexcom

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

BERLIN = ZoneInfo("Europe/Berlin")


def local(times_utc: list[datetime], tz: ZoneInfo = BERLIN) -> list[datetime]:
    """What a phone in ``tz`` writes for these instants: wall-clock time, no zone."""
    return [t.astimezone(tz).replace(tzinfo=None) for t in times_utc]


def utc_every(start: datetime, minutes: int, n: int) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(n)]


def stored(engine: TwinEngine, twin: str, channel: str = "glucose") -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def test_well_formed_export_lands_in_utc_with_events_and_ledger(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 6, 1, tzinfo=UTC), 5, 288)
    values = [100 + (i % 40) for i in range(288)]
    path = files.dexcom(
        tmp_path / "clarity.csv",
        list(zip(local(instants), values, strict=True)),
        insulin=[(datetime(2026, 6, 1, 8, 0), 4.5)],
        carbs=[(datetime(2026, 6, 1, 8, 0), 45)],
    )
    engine.create_twin("p1", "state")
    result = engine.import_data("dexcom", path, "p1", tz="Europe/Berlin")
    assert (result.n_stored, result.n_quarantined) == (290, 0)
    glucose = stored(engine, "p1")
    assert list(glucose.index) == [pd.Timestamp(t) for t in instants]
    assert glucose.to_numpy().tolist() == values
    # 08:00 in Berlin in June is 06:00 UTC
    assert stored(engine, "p1", "insulin").to_dict() == {pd.Timestamp("2026-06-01 06:00Z"): 4.5}
    assert stored(engine, "p1", "carbs").iloc[0] == 45
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "dexcom-clarity"
    assert "Dexcom G6 Mobile App" in entry.payload["import"]["version"]
    assert entry.payload["import"]["options"]["tz"] == "Europe/Berlin"
    again = engine.import_data("dexcom", path, "p1", tz="Europe/Berlin")
    assert again.already_ingested


def test_mmol_file_converts_to_the_twins_unit(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 6, 1, tzinfo=UTC), 5, 12)
    path = files.dexcom(tmp_path / "mmol.csv", [(t, 5.5) for t in local(instants)], unit="mmol/L")
    engine.create_twin("p1", "state", channels=["glucose:mg/dL:10:1000"])
    result = engine.import_data("dexcom", path, "p1", tz="Europe/Berlin")
    assert result.conversions == {"glucose": "mmol/L -> mg/dL"}
    assert np.allclose(stored(engine, "p1").to_numpy(), 5.5 * 18.0156)
    engine.create_twin("p2", "state", channels=["glucose:mmol/L:1:40"])
    path = files.dexcom(tmp_path / "mg.csv", [(t, 180) for t in local(instants)])
    engine.import_data("dexcom", path, "p2", tz="Europe/Berlin")
    assert np.allclose(stored(engine, "p2").to_numpy(), 180 / 18.0156)


def test_a_glucose_column_without_a_unit_is_refused_with_the_reason(
    files: ModuleType, tmp_path: Path
) -> None:
    path = files.dexcom(tmp_path / "x.csv", [(datetime(2026, 6, 1), 100)], unit=None)
    with pytest.raises(ValidationError, match=r"does not name its unit \(mg/dL or mmol/L\)"):
        dexcom.read(str(path), tz="UTC")
    assert dexcom.read(str(path), tz="UTC", unit="mg/dL").units == {"glucose": "mg/dL"}


def test_local_times_without_a_zone_are_refused(files: ModuleType, tmp_path: Path) -> None:
    path = files.dexcom(tmp_path / "x.csv", [(datetime(2026, 6, 1), 100)])
    with pytest.raises(ValidationError, match="--tz Europe/Berlin"):
        dexcom.read(str(path))
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Berln'"):
        dexcom.read(str(path), tz="Europe/Berln")


def test_low_and_high_markers_are_quarantined_with_the_reason(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    readings = [
        (datetime(2026, 6, 1, 0, 5 * i), v) for i, v in enumerate([90, "Low", 85, "High", 300])
    ]
    path = files.dexcom(tmp_path / "markers.csv", readings)
    engine.create_twin("p1", "state")
    result = engine.import_data("dexcom", path, "p1", tz="UTC")
    assert (result.n_stored, result.n_quarantined) == (3, 2)
    assert stored(engine, "p1").tolist() == [90, 85, 300]
    held = sorted(engine.quarantine("p1"), key=lambda r: r["row"])
    assert [float(r["record"]["value"]) for r in held] == [40.0, 400.0]
    assert "sensor marker 'Low'" in held[0]["reason"] and "below" in held[0]["reason"]
    assert "sensor marker 'High'" in held[1]["reason"]
    # the row is the file's line: header, five metadata rows, then the readings
    assert [r["row"] for r in held] == [8, 10]


@pytest.mark.parametrize(
    ("start", "what"),
    [(datetime(2026, 10, 24, 22, 0, tzinfo=UTC), "dst_repeated_hour_rows"),
     (datetime(2026, 3, 28, 22, 0, tzinfo=UTC), None)],
)  # fmt: skip
def test_a_dst_change_keeps_every_reading_in_order(
    start: datetime, what: str | None, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(start, 5, 12 * 8)  # 8 hours across the change
    path = files.dexcom(tmp_path / "dst.csv", [(t, 100 + i) for i, t in enumerate(local(instants))])
    readings = dexcom.read(str(path), tz="Europe/Berlin")
    glucose = readings.channel == "glucose"
    expected = [int(t.timestamp() * 1_000_000) for t in instants]
    assert readings.t[glucose].tolist() == expected
    if what:
        assert readings.notes[what] == 24  # the repeated hour, twice over, 12 readings each


def test_a_clock_correction_is_undone_by_the_transmitters_clock(
    files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 6, 1, tzinfo=UTC), 5, 48)
    wall = local(instants)
    # the phone's clock ran an hour fast for the first 20 readings, then was corrected
    wall = [w + timedelta(hours=1) if i < 20 else w for i, w in enumerate(wall)]
    transmitter = [1_000_000 + 300 * i for i in range(48)]
    path = files.dexcom(tmp_path / "clock.csv", [(w, 100) for w in wall], transmitter_s=transmitter)
    readings = dexcom.read(str(path), tz="Europe/Berlin")
    assert readings.t.tolist() == [int(t.timestamp() * 1_000_000) for t in instants]
    assert readings.notes["clock_corrections"]["rows_retimed"] == 20
    assert readings.notes["clock_corrections"]["steps_minutes"] == [-60.0]


def test_a_truncated_file_is_refused_naming_the_line_and_stores_nothing(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    path = files.dexcom(
        tmp_path / "cut.csv", [(datetime(2026, 6, 1, 0, 5 * i), 100) for i in range(10)]
    )
    text = path.read_text()
    path.write_text(text[: text.rindex("EGV") + 3])  # the last row stops mid-way
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=r"line 16: .*ends after 3 field\(s\).*truncated"):
        engine.import_data("dexcom", path, "p1", tz="UTC")
    assert snapshot(engine) == before


def test_a_corrupted_file_is_refused_naming_the_line(files: ModuleType, tmp_path: Path) -> None:
    path = files.dexcom(
        tmp_path / "bad.csv", [(datetime(2026, 6, 1, 0, 5 * i), 100) for i in range(10)]
    )
    raw = path.read_bytes()
    at = raw.index(b"EGV", raw.index(b"EGV") + 1)
    path.write_bytes(raw[:at] + b"\xff\xfe\x00garbage" + raw[at:])
    with pytest.raises(ValidationError, match=r"line 8: not a UTF-8 text file"):
        dexcom.read(str(path), tz="UTC")
    path.write_text(
        path.read_bytes()
        .replace(b"\xff\xfe\x00", b"")
        .decode()
        .replace("2026-06-01T00:10", "2026-13-01T00:10")
    )
    with pytest.raises(ValidationError, match=r"line 9, column 'Timestamp .*not a valid date"):
        dexcom.read(str(path), tz="UTC")


def test_undeclared_channels_are_left_out_and_counted(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    path = files.dexcom(
        tmp_path / "x.csv", [(datetime(2026, 6, 1), 100)], carbs=[(datetime(2026, 6, 1), 30)]
    )
    engine.create_twin("p1", "state", channels=["glucose"])
    result = engine.import_data("dexcom", path, "p1", tz="UTC")
    assert result.left_out == {"carbs": 1}
    assert list(engine.signals("p1").columns) == ["glucose"]
