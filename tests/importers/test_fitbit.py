"""Fitbit (Fitabase CSV): hourly files of several people, wide minute files, daily files,
dates spelt more than one way in one file, US DST changes, fixed units (weight in kg,
refused when the twin keeps a unit twinkit cannot convert to), and truncated or corrupted
files (clear error, store unchanged)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from twinkit.core.errors import ValidationError
from twinkit.engine import TwinEngine
from twinkit.importers import conversion, fitbit

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

NEW_YORK = ZoneInfo("America/New_York")
ADA, BOB = "1503960366", "1624580081"
DAILY_HEADER = [
    "Id", "ActivityDate", "TotalSteps", "TotalDistance", "TrackerDistance",
    "LoggedActivitiesDistance", "VeryActiveDistance", "ModeratelyActiveDistance",
    "LightActiveDistance", "SedentaryActiveDistance", "VeryActiveMinutes",
    "FairlyActiveMinutes", "LightlyActiveMinutes", "SedentaryMinutes", "Calories",
]  # fmt: skip
WEIGHT_HEADER = ["Id", "Date", "WeightKg", "WeightPounds", "Fat", "BMI", "IsManualReport", "LogId"]


def local(times_utc: list[datetime], tz: ZoneInfo = NEW_YORK) -> list[datetime]:
    """What a phone in ``tz`` writes for these instants: wall-clock time, no zone."""
    return [t.astimezone(tz).replace(tzinfo=None) for t in times_utc]


def utc_every(start: datetime, minutes: int, n: int) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(n)]


def micros(times_utc: list[datetime]) -> list[int]:
    return [int(t.timestamp() * 1_000_000) for t in times_utc]


def stored(engine: TwinEngine, twin: str, channel: str) -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def test_a_file_of_two_people_is_refused_without_person_listing_the_ids(
    files: ModuleType, tmp_path: Path
) -> None:
    hours = local(utc_every(datetime(2026, 4, 13, 4, 0, tzinfo=UTC), 60, 3))
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv",
        {ADA: [(t, 100) for t in hours], BOB: [(t, 200) for t in hours]},
    )
    with pytest.raises(
        ValidationError,
        match=rf"line 2, column 'Id': the file holds 2 people \(Id {ADA}, {BOB}\): pick one "
        r"\(person\)",
    ):
        fitbit.read(str(path), tz="America/New_York")
    with pytest.raises(ValidationError, match=r"no rows of person '42' \(Id\)"):
        fitbit.read(str(path), tz="America/New_York", person="42")


def test_hourly_steps_of_one_person_land_at_the_start_of_each_hour_in_utc(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    # 13-14 April 2026 in New York (EDT, UTC-4): midnight local is 04:00 UTC
    instants = utc_every(datetime(2026, 4, 13, 4, 0, tzinfo=UTC), 60, 48)
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv",
        {
            ADA: [(t, 10 * i) for i, t in enumerate(local(instants))],
            BOB: [(t, 7) for t in local(instants[:5])],
        },
    )
    assert f"{ADA},4/13/2026 12:00:00 AM,0" in path.read_text()
    engine.create_twin("p1", "state")
    result = engine.import_data("fitbit", path, "p1", tz="America/New_York", person=ADA)
    assert result.channels == {"steps_hourly": 48}
    assert (result.n_stored, result.n_quarantined) == (48, 0)
    steps = stored(engine, "p1", "steps_hourly")
    assert list(steps.index) == [pd.Timestamp(t) for t in instants]
    assert steps.tolist() == [10 * i for i in range(48)]
    assert result.notes["person"] == ADA
    assert list(result.notes["date_order"].values()) == ["month first"]
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "fitbit"
    assert entry.payload["import"]["version"] == "Fitabase CSV (ActivityHour)"
    assert entry.payload["import"]["options"]["person"] == ADA
    assert entry.payload["import"]["units"] == {"steps_hourly": "count"}


def test_a_wide_minute_file_gives_steps_per_minute(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    hours = utc_every(datetime(2026, 4, 13, 12, 0, tzinfo=UTC), 60, 3)
    path = files.fitbit_minutes_wide(
        tmp_path / "minuteStepsWide_merged.csv",
        ADA,
        [(t, [h * 100 + m for m in range(60)]) for h, t in enumerate(local(hours))],
    )
    readings = fitbit.read(str(path), tz="America/New_York")
    assert readings.counts() == {"steps": 180}
    assert readings.units == {"steps": "count"}
    engine.create_twin("p1", "state")
    engine.import_data("fitbit", path, "p1", tz="America/New_York")
    steps = stored(engine, "p1", "steps")
    assert list(steps.index) == [pd.Timestamp(t) for t in utc_every(hours[0], 1, 180)]
    assert steps.tolist() == [h * 100 + m for h in range(3) for m in range(60)]
    # in file order, each minute with its file line: the hour's row
    assert readings.line.tolist() == [2] * 60 + [3] * 60 + [4] * 60


def test_a_daily_activity_file_lands_at_local_midnight(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    days = [datetime(2026, 4, 12) + timedelta(days=i) for i in range(3)]
    rows = [
        [ADA, files.fitabase_time(day, "date"), 13162 + i, 8.5, 8.5, 0, 1.88, 0.55, 6.06, 0,
         25 + i, 13, 328, 728, 1985 + i]
        for i, day in enumerate(days)
    ]  # fmt: skip
    path = files.fitbit_table(tmp_path / "dailyActivity_merged.csv", DAILY_HEADER, rows)
    engine.create_twin("p1", "state")
    result = engine.import_data("fitbit", path, "p1", tz="America/New_York")
    assert result.channels == {
        "steps_daily": 3,
        "calories_daily": 3,
        "very_active_minutes_daily": 3,
        "fairly_active_minutes_daily": 3,
        "lightly_active_minutes_daily": 3,
        "sedentary_minutes_daily": 3,
    }
    midnights = [pd.Timestamp(f"2026-04-{12 + i} 04:00Z") for i in range(3)]  # EDT
    assert stored(engine, "p1", "steps_daily").to_dict() == dict(
        zip(midnights, [13162, 13163, 13164], strict=True)
    )
    assert stored(engine, "p1", "calories_daily").tolist() == [1985, 1986, 1987]
    assert stored(engine, "p1", "very_active_minutes_daily").tolist() == [25, 26, 27]
    assert result.units["calories_daily"] == "kcal"
    assert result.units["sedentary_minutes_daily"] == "min"


def test_mixed_date_spellings_are_each_decided_on_their_own(
    files: ModuleType, tmp_path: Path
) -> None:
    # a spreadsheet rewrote May's rows day first, zero-padded, on a 24-hour clock
    # ("01/05/2026 13:00"): every such date reads both ways, and only day first keeps the
    # rows an hour apart; April's rows ("4/29/2026 1:00:00 PM") are month first by value
    instants = utc_every(datetime(2026, 4, 29, 4, 0, tzinfo=UTC), 60, 24 * 4)
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv",
        {ADA: [(t, i) for i, t in enumerate(local(instants))]},
        spelling=lambda when: "fitbit" if when.month == 4 else "dayfirst-24h",
    )
    text = path.read_text()
    assert "4/30/2026 11:00:00 PM" in text and "01/05/2026 00:00" in text
    readings = fitbit.read(str(path), tz="America/New_York")
    assert readings.t.tolist() == micros(instants)
    assert sorted(readings.notes["date_order"].values()) == [
        "day first (from the order of the rows)",
        "month first",
    ]


def test_a_spellings_order_is_decided_on_every_persons_rows(
    files: ModuleType, tmp_path: Path
) -> None:
    # as in Fitabase's weightLogInfo: Bob's only day-first row, "04/05/2026 11:59 PM" (4
    # May), after "4/17/2026 11:59:59 PM", alone would read closer as 5 April; Ada's rows
    # of that spelling (2, 6, 10 May) show the file writes it day first
    ada = [datetime(2026, 4, 13, 7, 0), datetime(2026, 4, 21, 23, 59, 59)] + [
        datetime(2026, 5, d, 23, 59) for d in (2, 6, 10)
    ]
    bob = [datetime(2026, 4, 17, 23, 59, 59), datetime(2026, 5, 4, 23, 59)]
    rows = [
        [who, files.fitabase_time(when, "fitbit" if when.month == 4 else "dayfirst-ampm"),
         70.1, 154.5, "", 27.4, "TRUE", 1.46e12]
        for who, logged in ((ADA, ada), (BOB, bob))
        for when in logged
    ]  # fmt: skip
    path = files.fitbit_table(tmp_path / "weightLogInfo_merged.csv", WEIGHT_HEADER, rows)
    assert f"{BOB},04/05/2026 11:59 PM," in path.read_text()
    readings = fitbit.read(str(path), tz="America/New_York", person=BOB)
    assert readings.t.tolist() == micros([t.replace(tzinfo=NEW_YORK) for t in bob])
    assert "day first (from the order of the rows)" in readings.notes["date_order"].values()


def test_padded_spellings_on_12_and_24_hour_clocks_are_decided_on_their_own(
    files: ModuleType, tmp_path: Path
) -> None:
    # both are in the Fitabase files: hourlySteps' "04/12/2016 00:00", sleepDay's
    # "12/04/2016 12:00 AM"
    instants = utc_every(datetime(2026, 4, 29, 4, 0, tzinfo=UTC), 60, 24 * 4)
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv",
        {ADA: [(t, i) for i, t in enumerate(local(instants))]},
        spelling=lambda when: "padded-24h" if when.month == 4 else "dayfirst-ampm",
    )
    readings = fitbit.read(str(path), tz="America/New_York")
    assert readings.t.tolist() == micros(instants)


def test_the_spring_forward_dst_change_keeps_every_hour_in_place(
    files: ModuleType, tmp_path: Path
) -> None:
    # 8 March 2026: New York's clocks go from 2:00 EST to 3:00 EDT; the file has no 2 AM
    instants = utc_every(datetime(2026, 3, 8, 3, 0, tzinfo=UTC), 60, 8)
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv", {ADA: [(t, 100) for t in local(instants)]}
    )
    assert "3/8/2026 2:00:00 AM" not in path.read_text()
    readings = fitbit.read(str(path), tz="America/New_York")
    assert readings.t.tolist() == micros(instants)
    assert "dst_skipped_hour_rows" not in readings.notes


def test_the_fall_back_dst_change_keeps_every_hour_in_place(
    files: ModuleType, tmp_path: Path
) -> None:
    # 1 November 2026: New York's clocks go from 2:00 EDT back to 1:00 EST
    instants = utc_every(datetime(2026, 11, 1, 0, 0, tzinfo=UTC), 60, 10)
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv", {ADA: [(t, 100) for t in local(instants)]}
    )
    assert path.read_text().count("11/1/2026 1:00:00 AM") == 2
    readings = fitbit.read(str(path), tz="America/New_York")
    assert readings.notes["dst_repeated_hour_rows"] == 2
    assert readings.t.tolist() == micros(instants)


def test_a_wide_minute_file_across_the_fall_back_change_keeps_every_minute_in_place(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    hours = utc_every(datetime(2026, 11, 1, 3, 0, tzinfo=UTC), 60, 5)  # 23:00 EDT .. 2:00 EST
    path = files.fitbit_minutes_wide(
        tmp_path / "minuteStepsWide_merged.csv",
        ADA,
        [(t, [h * 100 + m for m in range(60)]) for h, t in enumerate(local(hours))],
    )
    readings = fitbit.read(str(path), tz="America/New_York")
    assert sorted(readings.t.tolist()) == micros(utc_every(hours[0], 1, 300))
    assert readings.notes["dst_repeated_hour_rows"] == 120
    engine.create_twin("p1", "state")
    engine.import_data("fitbit", path, "p1", tz="America/New_York")
    steps = stored(engine, "p1", "steps")
    assert list(steps.index) == [pd.Timestamp(t) for t in utc_every(hours[0], 1, 300)]
    assert steps.tolist() == [h * 100 + m for h in range(5) for m in range(60)]


def test_a_weight_file_lands_as_weight_in_kg(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    logged = [datetime(2026, 4, 13, 1, 8, 52), datetime(2026, 4, 21, 23, 59, 59)]
    rows = [
        [ADA, files.fitabase_time(when), kg, round(kg * 2.20462, 4), "", 22.65, "TRUE", 1.46e12]
        for when, kg in zip(logged, [52.6, 52.4], strict=True)
    ]
    path = files.fitbit_table(tmp_path / "weightLogInfo_merged.csv", WEIGHT_HEADER, rows)
    engine.create_twin("p1", "state", channels=["weight:kg"])
    result = engine.import_data("fitbit", path, "p1", tz="America/New_York")
    assert result.units == {"weight": "kg"}
    assert result.conversions == {}
    assert stored(engine, "p1", "weight").to_dict() == {
        pd.Timestamp("2026-04-13 05:08:52Z"): 52.6,
        pd.Timestamp("2026-04-22 03:59:59Z"): 52.4,
    }


def test_a_channel_the_twin_keeps_in_a_unit_twinkit_cannot_convert_is_refused(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    assert conversion("kg", "lb") is None
    rows = [[ADA, files.fitabase_time(datetime(2026, 4, 13, 7, 0)), 52.6, 115.96, "", 22.65,
             "TRUE", 1.46e12]]  # fmt: skip
    path = files.fitbit_table(tmp_path / "weightLogInfo_merged.csv", WEIGHT_HEADER, rows)
    engine.create_twin("p1", "state", channels=["weight:lb"])
    before = snapshot(engine)
    with pytest.raises(
        ValidationError,
        match=r"column 'weight': the twin keeps 'weight' in lb; the file's values are in kg, "
        "which twinkit cannot convert",
    ):
        engine.import_data("fitbit", path, "p1", tz="America/New_York")
    assert snapshot(engine) == before


def test_a_truncated_file_is_refused_naming_the_line_and_stores_nothing(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    hours = local(utc_every(datetime(2026, 4, 13, 4, 0, tzinfo=UTC), 60, 6))
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv", {ADA: [(t, 100) for t in hours]}
    )
    text = path.read_text()
    path.write_text(text[: text.rindex("5:00:0")])  # the last row stops mid-way in its time
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(
        ValidationError,
        match=r"line 7: the row ends after 2 field\(s\), the header has 3 .*truncated",
    ):
        engine.import_data("fitbit", path, "p1", tz="America/New_York")
    assert snapshot(engine) == before


def test_a_corrupted_file_is_refused_naming_the_line_and_column(
    engine: TwinEngine, files: ModuleType, tmp_path: Path, snapshot: SnapshotFn
) -> None:
    hours = local(utc_every(datetime(2026, 4, 13, 4, 0, tzinfo=UTC), 60, 6))
    path = files.fitbit_hourly(
        tmp_path / "hourlySteps_merged.csv", {ADA: [(t, 100 + i) for i, t in enumerate(hours)]}
    )
    text = path.read_text()
    path.write_text(text.replace("AM,102", "AM,1x2"))
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=r"line 4, column 'StepTotal': not a number: '1x2'"):
        engine.import_data("fitbit", path, "p1", tz="America/New_York")
    path.write_text(text.replace("4/13/2026 3:00:00 AM", "4/13/2026 3:00:00 XM"))
    with pytest.raises(
        ValidationError, match=r"line 5, column 'ActivityHour': not a date and time: '4/13/2026"
    ):
        engine.import_data("fitbit", path, "p1", tz="America/New_York")
    path.write_text(text.replace("4/13/2026 3:00:00 AM", "4/31/2026 3:00:00 AM"))
    with pytest.raises(ValidationError, match=r"line 5, column 'ActivityHour': not a valid date"):
        engine.import_data("fitbit", path, "p1", tz="America/New_York")
    assert snapshot(engine) == before
