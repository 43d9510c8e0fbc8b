"""Apple Health ``export.xml`` (Health app -> profile -> Export All Health Data), streamed.

An export can be gigabytes: it is read record by record (``iterparse``), each element
dropped once read, so memory grows with the readings kept, not with the file. Readings
are ``<Record type=... unit=... startDate=... value=...>`` with the time zone in every
time (``2024-01-15 08:30:00 +0100``), so no zone need be named. Kept:

=============================================  ======================================
HealthKit type (``HKQuantityTypeIdentifier``)   channel
=============================================  ======================================
BloodGlucose (mg/dL or mmol/L)                 ``glucose``
HeartRate, RestingHeartRate                    ``heart_rate``, ``resting_heart_rate``
HeartRateVariabilitySDNN                       ``hrv_sdnn`` (ms)
StepCount                                      ``steps`` (per record's interval)
ActiveEnergyBurned                             ``active_energy`` (kcal)
DietaryCarbohydrates                           ``carbs`` (g)
InsulinDelivery                                ``insulin`` (bolus), ``insulin_basal``
OxygenSaturation                               ``spo2`` (%)
BodyMass                                       ``weight`` (kg)
=============================================  ======================================

A value belongs to the record's ``startDate``. Other types are counted and skipped, and
so are records inside a ``Correlation`` (they repeat top-level records).
"""

from __future__ import annotations

import datetime as dt
import io
import os
import xml.etree.ElementTree as ET
from typing import Any

from twinkit.core.errors import Problem
from twinkit.core.progress import ProgressFn
from twinkit.importers.base import (
    Imported,
    Rows,
    add_problem,
    check_problems,
    conversion,
    refuse,
    unit_name,
)

FORMAT = "apple-health"
_PREFIX = "HKQuantityTypeIdentifier"
_TYPES = {
    "BloodGlucose": ("glucose", None),
    "HeartRate": ("heart_rate", "bpm"),
    "RestingHeartRate": ("resting_heart_rate", "bpm"),
    "HeartRateVariabilitySDNN": ("hrv_sdnn", "ms"),
    "StepCount": ("steps", "count"),
    "ActiveEnergyBurned": ("active_energy", "kcal"),
    "DietaryCarbohydrates": ("carbs", "g"),
    "InsulinDelivery": ("insulin", "U"),
    "OxygenSaturation": ("spo2", "%"),
    "BodyMass": ("weight", "kg"),
}
_POUND_KG = 0.45359237
_EPOCH = dt.date(1970, 1, 1).toordinal()


class _Clock:
    """``2024-01-15 08:30:00 +0100`` -> microseconds UTC, with the date and offset parts
    cached (a few thousand distinct days in millions of records)."""

    def __init__(self) -> None:
        self.days: dict[str, int] = {}
        self.offsets: dict[str, int] = {}

    def __call__(self, text: str) -> int | None:
        if len(text) < 25 or text[10] != " " or text[19] != " ":
            return None
        day = self.days.get(text[:10])
        if day is None:
            try:
                day = (dt.date.fromisoformat(text[:10]).toordinal() - _EPOCH) * 86400
            except ValueError:
                return None
            self.days[text[:10]] = day
        zone = text[20:]
        offset = self.offsets.get(zone)
        if offset is None:
            if len(zone) != 5 or zone[0] not in "+-" or not zone[1:].isdigit():
                return None
            offset = (int(zone[1:3]) * 3600 + int(zone[3:5]) * 60) * (1 if zone[0] == "+" else -1)
            self.offsets[zone] = offset
        try:
            h, m, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
        except ValueError:
            return None
        return (day + h * 3600 + m * 60 + s - offset) * 1_000_000


class _Counted(io.RawIOBase):
    """A file that tells ``progress`` how many of its bytes were read, every 1 %."""

    def __init__(self, path: str, progress: ProgressFn) -> None:
        self.file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.total = max(os.path.getsize(path), 1)
        self.done = 0
        self.shown = -1
        self.progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.file.readinto(buffer)
        self.done += n or 0
        percent = self.done * 100 // self.total
        if percent != self.shown:
            self.shown = percent
            self.progress("reading export.xml", self.done, self.total)
        return n or 0

    def close(self) -> None:
        self.file.close()
        super().close()


def read(
    path: str, *, types: tuple[str, ...] | None = None, progress: ProgressFn | None = None
) -> Imported:
    """Stream an ``export.xml``; ``types`` limits the HealthKit types read (short names,
    ``"HeartRate"``), default all those in the table above. ``progress`` hears of the
    bytes read (a large export takes a minute)."""
    source = str(path)
    if not os.path.isfile(path):
        refuse(source, "no such file")
    wanted = {k: v for k, v in _TYPES.items() if types is None or k in types}
    rows = Rows()
    clock = _Clock()
    units: dict[str, str] = {}
    skipped: dict[str, int] = {}
    per_source: dict[str, int] = {}
    problems: list[Problem] = []
    locale = ""
    depth_correlation = 0
    root: ET.Element | None = None
    n = 0
    try:
        stream: Any = io.BufferedReader(_Counted(path, progress)) if progress else path
        for event, elem in ET.iterparse(stream, events=("start", "end")):
            tag = elem.tag
            if event == "start":
                if root is None:
                    root = elem
                    if tag != "HealthData":
                        refuse(source, f"not an Apple Health export: the root is <{tag}>", 1)
                    locale = elem.get("locale", "")
                elif tag == "Correlation":
                    depth_correlation += 1
                continue
            if tag == "Correlation":
                depth_correlation -= 1
            elif tag == "Record":
                n += 1
                if depth_correlation:
                    skipped["in a correlation"] = skipped.get("in a correlation", 0) + 1
                else:
                    _record(elem, n, wanted, rows, clock, units, skipped, per_source, problems)
            if (
                root is not None
                and depth_correlation == 0
                and tag in ("Record", "Correlation", "Workout", "ActivitySummary")
            ):
                root.clear()  # drop what was read: memory stays flat
    except ET.ParseError as exc:
        line, column = exc.position
        refuse(source, f"not well-formed XML at column {column} (a truncated file?)", line)
    check_problems(source, problems)
    notes: dict[str, Any] = {"records": n, "sources": per_source}
    if skipped:
        notes["skipped"] = skipped
    version = "Apple Health export.xml" + (f" (locale {locale})" if locale else "")
    return rows.build(FORMAT, version, source, units, notes)


def _record(
    elem: ET.Element,
    n: int,
    wanted: dict[str, tuple[str, str | None]],
    rows: Rows,
    clock: _Clock,
    units: dict[str, str],
    skipped: dict[str, int],
    per_source: dict[str, int],
    problems: list[Problem],
) -> None:
    kind = elem.get("type", "")
    short = kind[len(_PREFIX) :] if kind.startswith(_PREFIX) else kind
    spec = wanted.get(short)
    if spec is None:
        skipped[short] = skipped.get(short, 0) + 1
        return
    channel, unit = spec
    where = f"Record #{n} ({short})"
    start = elem.get("startDate", "")
    t = clock(start)
    if t is None:
        add_problem(
            problems,
            f"{where}: startDate {start!r} is not 'YYYY-MM-DD hh:mm:ss +hhmm'",
            None,
            "startDate",
        )
        return
    raw = elem.get("value", "")
    try:
        value = float(raw)
    except ValueError:
        add_problem(problems, f"{where}: value {raw!r} is not a number", None, "value")
        return
    given = unit_name(elem.get("unit", ""))
    if channel == "glucose":
        if given not in ("mg/dL", "mmol/L"):
            add_problem(problems, f"{where}: glucose in {given or 'no unit'!r}", None, "unit")
            return
        first = units.setdefault("glucose", given)
        value *= conversion(given, first) or 1.0
    elif channel == "weight" and given == "lb":
        value *= _POUND_KG
    elif channel == "spo2" and given == "%" and value <= 1.0:
        value *= 100.0  # HealthKit stores a fraction
    elif channel == "insulin":
        for entry in elem.iter("MetadataEntry"):
            if entry.get("key") == "HKInsulinDeliveryReason" and entry.get("value") == "1":
                channel = "insulin_basal"
    if channel != "glucose":
        units.setdefault(channel, unit or given)
    name = elem.get("sourceName", "")
    per_source[name] = per_source.get(name, 0) + 1
    rows.add(t, channel, value, n)
