"""LibreView CSV: the well-formed export, either date order (from the values or from the
rows' order), the other unit, sensor markers, a DST change, and truncated or corrupted
files (clear error, store unchanged)."""

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
from twinkit.importers import libre

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

BERLIN = ZoneInfo("Europe/Berlin")


def local(times_utc: list[datetime], tz: ZoneInfo = BERLIN) -> list[datetime]:
    """What a phone in ``tz`` writes for these instants: wall-clock time, no zone."""
    return [t.astimezone(tz).replace(tzinfo=None) for t in times_utc]


def utc_every(start: datetime, minutes: int, n: int) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(n)]


def micros(times_utc: list[datetime]) -> list[int]:
    return [int(t.timestamp() * 1_000_000) for t in times_utc]


def stored(engine: TwinEngine, twin: str, channel: str = "glucose") -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def test_well_formed_export_lands_in_utc_with_scans_insulin_carbs_and_ledger(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    # two days from 14 June: the day (14, 15) decides the date order from the values
    instants = utc_every(datetime(2026, 6, 13, 22, 0, tzinfo=UTC), 15, 96 * 2)
    values = [90 + (i % 60) for i in range(len(instants))]
    scans = [datetime(2026, 6, 14, 5, 7, tzinfo=UTC), datetime(2026, 6, 15, 11, 52, tzinfo=UTC)]
    path = files.libre(
        tmp_path / "libreview.csv",
        list(zip(local(instants), values, strict=True)),
        scans=list(zip(local(scans), [101, 187], strict=True)),
        insulin=[(datetime(2026, 6, 14, 8, 0), 4.5)],
        carbs=[(datetime(2026, 6, 14, 8, 5), 45)],
    )
    assert "14-06-2026 00:00" in path.read_text()  # day first, as the writer's locale
    engine.create_twin("p1", "state")
    result = engine.import_data("libre", path, "p1", tz="Europe/Berlin")
    assert (result.n_stored, result.n_quarantined) == (len(instants) + 4, 0)
    assert result.channels == {"glucose": 192, "glucose_scan": 2, "insulin": 1, "carbs": 1}
    glucose = stored(engine, "p1")
    assert list(glucose.index) == [pd.Timestamp(t) for t in instants]
    assert glucose.to_numpy().tolist() == values
    assert stored(engine, "p1", "glucose_scan").to_dict() == {
        pd.Timestamp(scans[0]): 101,
        pd.Timestamp(scans[1]): 187,
    }
    # 08:00 and 08:05 in Berlin in June (CEST, UTC+2) are 06:00 and 06:05 UTC
    assert stored(engine, "p1", "insulin").to_dict() == {pd.Timestamp("2026-06-14 06:00Z"): 4.5}
    assert stored(engine, "p1", "carbs").to_dict() == {pd.Timestamp("2026-06-14 06:05Z"): 45}
    assert list(result.notes["date_order"].values()) == ["day first"]
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "libreview"
    assert "FreeStyle LibreLink" in entry.payload["import"]["version"]
    assert entry.payload["import"]["options"]["tz"] == "Europe/Berlin"
    assert entry.payload["import"]["notes"]["time_zone"] == "Europe/Berlin"
    assert engine.import_data("libre", path, "p1", tz="Europe/Berlin").already_ingested


def test_a_month_first_file_is_decided_from_the_values(files: ModuleType, tmp_path: Path) -> None:
    instants = utc_every(datetime(2026, 6, 14, 10, 0, tzinfo=UTC), 15, 8)
    path = files.libre(tmp_path / "us.csv", [(t, 120) for t in local(instants)], day_first=False)
    assert "06-14-2026 12:00" in path.read_text()
    readings = libre.read(str(path), tz="Europe/Berlin")
    assert readings.t.tolist() == micros(instants)
    assert list(readings.notes["date_order"].values()) == ["month first"]


@pytest.mark.parametrize(("day_first", "decided"), [(True, "day first"), (False, "month first")])
def test_ambiguous_dates_are_decided_from_the_order_of_the_rows(
    day_first: bool, decided: str, files: ModuleType, tmp_path: Path
) -> None:
    # 1 and 2 June: every date reads both ways (01-06 or 06-01); only one order keeps the
    # rows 15 minutes apart, the other jumps a month at midnight
    instants = utc_every(datetime(2026, 5, 31, 22, 0, tzinfo=UTC), 15, 96 * 2)
    path = files.libre(tmp_path / "x.csv", [(t, 100) for t in local(instants)], day_first=day_first)
    readings = libre.read(str(path), tz="Europe/Berlin")
    assert readings.t.tolist() == micros(instants)
    assert list(readings.notes["date_order"].values()) == [
        f"{decided} (from the order of the rows)"
    ]
    # told, the reader does not guess
    told = libre.read(str(path), tz="Europe/Berlin", dayfirst=day_first)
    assert told.t.tolist() == micros(instants)


def test_mmol_file_converts_to_the_twins_unit(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 6, 14, tzinfo=UTC), 15, 8)
    path = files.libre(
        tmp_path / "mmol.csv",
        [(t, 5.5) for t in local(instants)],
        unit="mmol/L",
        scans=[(datetime(2026, 6, 14, 3, 7), 7.0)],
    )
    readings = libre.read(str(path), tz="Europe/Berlin")
    assert readings.units == {"glucose": "mmol/L", "glucose_scan": "mmol/L"}
    engine.create_twin(
        "p1", "state", channels=["glucose:mg/dL:10:1000", "glucose_scan:mg/dL:10:1000"]
    )
    result = engine.import_data("libre", path, "p1", tz="Europe/Berlin")
    assert result.conversions == {
        "glucose": "mmol/L -> mg/dL",
        "glucose_scan": "mmol/L -> mg/dL",
    }
    assert np.allclose(stored(engine, "p1").to_numpy(), 5.5 * 18.0156)
    assert np.allclose(stored(engine, "p1", "glucose_scan").to_numpy(), 7.0 * 18.0156)


def test_lo_and_hi_markers_are_quarantined_with_the_reason_and_the_line(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    historic = [(datetime(2026, 6, 14, 0, 15 * i), v) for i, v in enumerate([90, "LO", 85, "HI"])]
    path = files.libre(
        tmp_path / "markers.csv", historic, scans=[(datetime(2026, 6, 14, 0, 50), "HI")]
    )
    engine.create_twin("p1", "state")
    result = engine.import_data("libre", path, "p1", tz="UTC")
    assert (result.n_stored, result.n_quarantined) == (2, 3)
    assert stored(engine, "p1").tolist() == [90, 85]
    held = sorted(engine.quarantine("p1"), key=lambda r: r["row"])
    assert [float(r["record"]["value"]) for r in held] == [40.0, 500.0, 500.0]
    assert "sensor marker 'LO'" in held[0]["reason"] and "below" in held[0]["reason"]
    assert "sensor marker 'HI'" in held[1]["reason"] and "above" in held[1]["reason"]
    assert "40-500 mg/dL" in held[1]["reason"]
    # the row is the file's line: the title, the header, then the records in file order
    assert [r["row"] for r in held] == [4, 6, 7]


#: scans through the 8 hours across the fall-back change: 00:30Z is 02:30 CEST, in the
#: first pass of the repeated hour, and 01:20Z is 02:20 CET, in the second
SCANS = [(22, 40), (23, 50), (0, 30), (1, 20), (2, 45), (4, 10)]


@pytest.mark.parametrize("scans", [False, True])
def test_the_fall_back_dst_change_keeps_every_reading_in_place(
    scans: bool, files: ModuleType, tmp_path: Path
) -> None:
    # 8 hours across 25 October 2026, when Berlin's clocks go from 03:00 CEST to 02:00 CET
    instants = utc_every(datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 15, 4 * 8)
    scan_at = [datetime(2026, 10, 24 if h >= 22 else 25, h, m, tzinfo=UTC) for h, m in SCANS]
    path = files.libre(
        tmp_path / "dst.csv",
        [(t, 100 + i) for i, t in enumerate(local(instants))],
        scans=[(t, 150) for t in local(scan_at)] if scans else (),
    )
    readings = libre.read(str(path), tz="Europe/Berlin")
    glucose = readings.channel == "glucose"
    assert readings.t[glucose].tolist() == micros(instants)
    assert readings.value[glucose].tolist() == [100 + i for i in range(len(instants))]
    # the repeated hour (02:00-02:59), twice over, four historic readings each, and scans
    assert readings.notes["dst_repeated_hour_rows"] == 8 + 2 * scans
    if scans:
        assert readings.t[readings.channel == "glucose_scan"].tolist() == micros(scan_at)


def test_two_scans_in_the_repeated_hour_are_placed_by_the_files_order(
    files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 10, 24, 22, 0, tzinfo=UTC), 15, 4 * 8)
    scan_at = [datetime(2026, 10, 25, 0, 30, tzinfo=UTC), datetime(2026, 10, 25, 1, 20, tzinfo=UTC)]
    path = files.libre(
        tmp_path / "dst.csv",
        [(t, 100) for t in local(instants)],
        scans=[(t, 150) for t in local(scan_at)],
    )
    readings = libre.read(str(path), tz="Europe/Berlin")
    assert readings.t[readings.channel == "glucose_scan"].tolist() == micros(scan_at)


def test_the_spring_forward_dst_change_keeps_every_reading_in_place(
    files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 3, 28, 22, 0, tzinfo=UTC), 15, 4 * 8)
    path = files.libre(tmp_path / "dst.csv", [(t, 100) for t in local(instants)])
    readings = libre.read(str(path), tz="Europe/Berlin")
    assert readings.t.tolist() == micros(instants)
    assert "dst_skipped_hour_rows" not in readings.notes


def test_a_historic_record_without_a_value_is_refused_naming_the_line_and_stores_nothing(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    historic = [(datetime(2026, 6, 14, 0, 15 * i), 100) for i in range(4)]
    path = files.libre(tmp_path / "cut.csv", historic)
    lines = path.read_text().splitlines()
    lines[4] = lines[4].replace(",100,", ",,")  # the third reading, line 5, lost its value
    path.write_text("\n".join(lines) + "\n")
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(
        ValidationError,
        match=r"line 5, column 'Historic Glucose mg/dL': a historic glucose record without a "
        r"value \(a truncated file\?\)",
    ):
        engine.import_data("libre", path, "p1", tz="UTC")
    assert snapshot(engine) == before


@pytest.mark.parametrize(
    ("cut_after", "where"),
    [("14-06-2026 00:4", "line 6, column 'Record Type'"),  # inside the time
     ("14-06-2026 00:45,", "line 6, column 'Record Type'"),  # before the record type
     ("14-06-2026 00:45,0,", "line 6, column 'Historic Glucose mg/dL'")],  # before the value
)  # fmt: skip
def test_a_row_cut_mid_way_is_refused_naming_the_line_and_stores_nothing(
    cut_after: str,
    where: str,
    engine: TwinEngine,
    files: ModuleType,
    tmp_path: Path,
    snapshot: SnapshotFn,
) -> None:
    historic = [(datetime(2026, 6, 14, 0, 15 * i), 100) for i in range(4)]
    path = files.libre(tmp_path / "cut.csv", historic)
    text = path.read_text()
    path.write_text(text[: text.index(cut_after) + len(cut_after)])  # the last row stops
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=rf"{where}: .*truncated"):
        engine.import_data("libre", path, "p1", tz="UTC")
    assert snapshot(engine) == before


def test_a_corrupted_value_is_refused_naming_the_line_and_column(
    files: ModuleType, tmp_path: Path
) -> None:
    historic = [(datetime(2026, 6, 14, 0, 15 * i), 100 + i) for i in range(4)]
    path = files.libre(tmp_path / "bad.csv", historic)
    path.write_text(path.read_text().replace(",102,", ",1O2,"))  # a letter O for a zero
    with pytest.raises(
        ValidationError,
        match=r"line 5, column 'Historic Glucose mg/dL': not a glucose value: '1O2'",
    ):
        libre.read(str(path), tz="UTC")
    path.write_text(
        path.read_text().replace(",1O2,", ",102,").replace("14-06-2026 00:30", "31-06-2026 00:30")
    )
    with pytest.raises(
        ValidationError, match=r"line 5, column 'Device Timestamp'.*not a valid date"
    ):
        libre.read(str(path), tz="UTC")


def test_scans_merge_into_glucose_when_renamed(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(datetime(2026, 6, 14, tzinfo=UTC), 15, 8)
    scan_at = [datetime(2026, 6, 14, 0, 7, tzinfo=UTC), datetime(2026, 6, 14, 1, 22, tzinfo=UTC)]
    path = files.libre(
        tmp_path / "x.csv",
        [(t, 100) for t in local(instants)],
        scans=[(t, 140) for t in local(scan_at)],
    )
    engine.create_twin("p1", "state", channels=["glucose"])
    result = engine.import_data(
        "libre", path, "p1", tz="Europe/Berlin", rename={"glucose_scan": "glucose"}
    )
    assert result.left_out == {}
    assert result.n_stored == 10
    glucose = stored(engine, "p1")
    assert list(glucose.index) == sorted(pd.Timestamp(t) for t in instants + scan_at)
    assert glucose[pd.Timestamp(scan_at[1])] == 140
    assert list(engine.signals("p1").columns) == ["glucose"]
    # without the rename, a twin that declares glucose alone leaves the scans out
    engine.create_twin("p2", "state", channels=["glucose"])
    assert engine.import_data("libre", path, "p2", tz="Europe/Berlin").left_out == {
        "glucose_scan": 2
    }
