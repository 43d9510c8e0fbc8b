"""Apple Health export.xml: a well-formed export, glucose in the other unit, insulin by its
delivery reason, records inside correlations, offsets across a DST change, truncated and
foreign files (clear error, store unchanged), and memory that does not grow with the file."""

from __future__ import annotations

import tracemalloc
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
from twinkit.importers import apple_health

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

BERLIN = ZoneInfo("Europe/Berlin")
MG_PER_MMOL = 18.0156
APPLE_MMOL = "mmol<180.1558800000541>/L"
BOLUS, BASAL = {"HKInsulinDeliveryReason": "2"}, {"HKInsulinDeliveryReason": "1"}


def us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def apple_time(when: datetime, tz: ZoneInfo = BERLIN) -> str:
    """How export.xml writes an instant: local time and the offset, ``+0100``."""
    return when.astimezone(tz).strftime("%Y-%m-%d %H:%M:%S %z")


def stored(engine: TwinEngine, twin: str, channel: str = "glucose") -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def a_day(files: ModuleType) -> list[str]:
    """A June morning in Berlin (UTC+2) as the Health app exports it."""
    rec = files.apple_record
    food = (
        '<Correlation type="HKCorrelationTypeIdentifierFood" sourceName="MyFitnessPal" '
        'creationDate="2026-06-01 08:00:00 +0200" startDate="2026-06-01 08:00:00 +0200" '
        'endDate="2026-06-01 08:00:00 +0200">\n  '
        + rec("DietaryCarbohydrates", "g", "2026-06-01 08:00:00 +0200", 45)
        + "\n  "
        + rec("DietaryEnergyConsumed", "kcal", "2026-06-01 08:00:00 +0200", 380)
        + "\n </Correlation>"
    )
    return [
        rec("BloodGlucose", "mg/dL", "2026-06-01 08:00:00 +0200", 104),
        rec("BloodGlucose", APPLE_MMOL, "2026-06-01 08:05:00 +0200", 6.2),
        rec("HeartRate", "count/min", "2026-06-01 08:00:12 +0200", 61),
        rec("HeartRate", "count/min", "2026-06-01 08:05:12 +0200", 66),
        rec("StepCount", "count", "2026-06-01 08:10:00 +0200", 312),
        rec("InsulinDelivery", "IU", "2026-06-01 08:00:00 +0200", 4.5, BOLUS),
        rec("InsulinDelivery", "IU", "2026-06-01 00:00:00 +0200", 0.85, BASAL),
        rec("SleepDurationGoal", "hr", "2026-06-01 08:00:00 +0200", 8),
        food,
        rec("DietaryCarbohydrates", "g", "2026-06-01 08:00:00 +0200", 45),
    ]


def test_an_export_lands_on_its_channels_in_utc(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    path = files.apple_export(tmp_path / "export.xml", a_day(files))
    engine.create_twin("p1", "state")
    result = engine.import_data("apple-health", path, "p1")
    assert result.channels == {
        "glucose": 2,
        "heart_rate": 2,
        "steps": 1,
        "insulin": 1,
        "insulin_basal": 1,
        "carbs": 1,
    }
    assert (result.n_stored, result.n_quarantined) == (8, 0)
    glucose = stored(engine, "p1")
    assert list(glucose.index) == [
        pd.Timestamp("2026-06-01 06:00Z"),
        pd.Timestamp("2026-06-01 06:05Z"),
    ]
    assert np.allclose(glucose.to_numpy(), [104, 6.2 * MG_PER_MMOL])  # the first unit: mg/dL
    assert stored(engine, "p1", "heart_rate").to_dict() == {
        pd.Timestamp("2026-06-01 06:00:12Z"): 61.0,
        pd.Timestamp("2026-06-01 06:05:12Z"): 66.0,
    }
    assert stored(engine, "p1", "steps").to_dict() == {pd.Timestamp("2026-06-01 06:10Z"): 312}
    assert stored(engine, "p1", "insulin").to_dict() == {pd.Timestamp("2026-06-01 06:00Z"): 4.5}
    assert stored(engine, "p1", "insulin_basal").to_dict() == {
        pd.Timestamp("2026-05-31 22:00Z"): 0.85
    }
    # the carbs once: the correlation's records repeat the top-level ones
    assert stored(engine, "p1", "carbs").tolist() == [45]
    assert result.notes["skipped"] == {"SleepDurationGoal": 1, "in a correlation": 2}
    assert result.notes["records"] == 11
    assert result.notes["sources"] == {"Ada\u2019s iPhone": 8}
    assert result.units["insulin_basal"] == "U"
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "apple-health"
    assert entry.payload["import"]["version"] == "Apple Health export.xml (locale en_DE)"
    assert engine.import_data("apple-health", path, "p1").already_ingested


def test_glucose_in_mmol_converts_to_the_twins_unit(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    rec = files.apple_record
    records = [
        rec("BloodGlucose", APPLE_MMOL, "2026-06-01 08:00:00 +0200", 5.5),
        rec("BloodGlucose", "mg/dL", "2026-06-01 08:05:00 +0200", 99),
    ]
    path = files.apple_export(tmp_path / "export.xml", records)
    readings = apple_health.read(str(path))
    assert readings.units == {"glucose": "mmol/L"}
    assert np.allclose(readings.value, [5.5, 99 / MG_PER_MMOL])
    engine.create_twin("p1", "state", channels=["glucose:mg/dL:10:1000"])
    result = engine.import_data("apple-health", path, "p1")
    assert result.conversions == {"glucose": "mmol/L -> mg/dL"}
    assert np.allclose(stored(engine, "p1").to_numpy(), [5.5 * MG_PER_MMOL, 99])


def test_glucose_in_an_unknown_unit_is_refused(files: ModuleType, tmp_path: Path) -> None:
    records = [files.apple_record("BloodGlucose", "g/L", "2026-06-01 08:00:00 +0200", 1.1)]
    path = files.apple_export(tmp_path / "export.xml", records)
    with pytest.raises(ValidationError, match=r"Record #1 \(BloodGlucose\): glucose in 'g/L'"):
        apple_health.read(str(path))


@pytest.mark.parametrize(
    "start",
    [datetime(2026, 3, 29, 0, 0, tzinfo=UTC), datetime(2026, 10, 25, 0, 0, tzinfo=UTC)],
    ids=["spring", "autumn"],
)
def test_offsets_across_a_dst_change_land_in_utc(
    start: datetime, files: ModuleType, tmp_path: Path
) -> None:
    instants = [start + timedelta(minutes=5 * i) for i in range(36)]  # the change at 01:00
    records = [
        files.apple_record("HeartRate", "count/min", apple_time(t), 60 + i)
        for i, t in enumerate(instants)
    ]
    assert {r.split('startDate="')[1][20:25] for r in records} == {"+0100", "+0200"}
    path = files.apple_export(tmp_path / "export.xml", records)
    readings = apple_health.read(str(path))
    assert readings.t.tolist() == [us(t) for t in instants]
    assert readings.value.tolist() == [60 + i for i in range(36)]


def test_a_truncated_export_is_refused_naming_the_line_and_stores_nothing(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    records = [
        files.apple_record("HeartRate", "count/min", f"2026-06-01 08:{i:02d}:00 +0200", 60 + i)
        for i in range(20)
    ]
    path = files.apple_export(tmp_path / "export.xml", records)
    text = path.read_text(encoding="utf-8")
    cut = text[: text.rindex('unit="count/min"')]  # the last record stops mid-way
    path.write_text(cut, encoding="utf-8")
    line = cut.count("\n") + 1  # the 20th record's line
    assert line == 28
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=rf"line {line}: not well-formed XML .*truncated"):
        engine.import_data("apple-health", path, "p1")
    assert snapshot(engine) == before
    # cut between records: the end of the file is where the export stops
    path.write_text(text[: text.index("</HealthData>")], encoding="utf-8")
    with pytest.raises(ValidationError, match=r"line 29: not well-formed XML"):
        apple_health.read(str(path))


def test_a_file_that_is_not_a_health_export_is_refused(files: ModuleType, tmp_path: Path) -> None:
    records = [files.apple_record("HeartRate", "count/min", "2026-06-01 08:00:00 +0200", 60)]
    path = files.apple_export(tmp_path / "export_cda.xml", records, root="ClinicalDocument")
    with pytest.raises(ValidationError, match=r"not an Apple Health export: the root is <Clin"):
        apple_health.read(str(path))
    path.write_text("Date,Heart Rate\n2026-06-01 08:00,60\n")
    with pytest.raises(ValidationError, match=r"line 1: not well-formed XML"):
        apple_health.read(str(path))
    with pytest.raises(ValidationError, match="no such file"):
        apple_health.read(str(tmp_path / "missing.xml"))


def test_a_large_export_is_streamed_in_little_memory(files: ModuleType, tmp_path: Path) -> None:
    # 30,000 records (11 MB) keep the test under 2 s: tracemalloc slows parsing eightfold.
    # Read whole, as a tree, such a file takes several times its size.
    n = 30_000
    start = datetime(2026, 1, 1, tzinfo=UTC)
    path = files.apple_heart_rate_export(tmp_path / "export.xml", n, start)
    size = path.stat().st_size
    assert size > 10_000_000
    tracemalloc.start()
    try:
        readings = apple_health.read(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(readings) == n
    assert readings.t[-1] == us(start + timedelta(minutes=n - 1))
    assert readings.value[:3].tolist() == [60, 61, 62]
    # what is kept is the rows (some 75 bytes each) and the parser's buffer, not the file
    assert peak < 0.5 * size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"
