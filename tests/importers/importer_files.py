"""Files shaped like each format's documented export, written by the tests that read them.

Every writer takes the readings as ``(local wall-clock time, value)`` pairs (or UTC where
the format keeps UTC), so a test knows exactly what the import must store.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

DEXCOM_HEADER = [
    "Index",
    "Timestamp (YYYY-MM-DDThh:mm:ss)",
    "Event Type",
    "Event Subtype",
    "Patient Info",
    "Device Info",
    "Source Device ID",
    "Glucose Value (mg/dL)",
    "Insulin Value (u)",
    "Carb Value (grams)",
    "Duration (hh:mm:ss)",
    "Glucose Rate of Change (mg/dL/min)",
    "Transmitter Time (Long Integer)",
    "Transmitter ID",
]


def every(start: datetime, minutes: int, n: int) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(n)]


def dexcom(
    path: Path,
    glucose: Sequence[tuple[datetime, Any]],
    *,
    unit: str | None = "mg/dL",
    insulin: Sequence[tuple[datetime, float]] = (),
    carbs: Sequence[tuple[datetime, float]] = (),
    transmitter_s: Sequence[int] | None = None,
) -> Path:
    """A Clarity export: metadata rows, then EGVs (values or "Low"/"High"), insulin, carbs."""
    header = list(DEXCOM_HEADER)
    header[7] = f"Glucose Value ({unit})" if unit else "Glucose Value"
    rows: list[list[str]] = []

    def row(**cells: str) -> list[str]:
        out = [""] * len(header)
        for name, value in cells.items():
            out[header.index(name)] = value
        return out

    for event, info in (("FirstName", "Ada"), ("LastName", "Lovelace"), ("DateOfBirth", "")):
        rows.append(row(**{"Event Type": event, "Patient Info": info}))
    rows.append(row(**{"Event Type": "Device", "Device Info": "Dexcom G6 Mobile App"}))
    rows.append(row(**{"Event Type": "Alert", "Event Subtype": "High"}))
    for i, (when, value) in enumerate(glucose):
        cells = {
            "Timestamp (YYYY-MM-DDThh:mm:ss)": when.strftime("%Y-%m-%dT%H:%M:%S"),
            "Event Type": "EGV",
            "Source Device ID": "Android G6",
            header[7]: str(value),
            "Transmitter ID": "8XXXXX",
        }
        if transmitter_s is not None:
            cells["Transmitter Time (Long Integer)"] = str(transmitter_s[i])
        rows.append(row(**cells))
    for when, units in insulin:
        rows.append(
            row(**{
                "Timestamp (YYYY-MM-DDThh:mm:ss)": when.strftime("%Y-%m-%dT%H:%M:%S"),
                "Event Type": "Insulin",
                "Event Subtype": "Fast-Acting",
                "Insulin Value (u)": str(units),
            })
        )  # fmt: skip
    for when, grams in carbs:
        rows.append(
            row(**{
                "Timestamp (YYYY-MM-DDThh:mm:ss)": when.strftime("%Y-%m-%dT%H:%M:%S"),
                "Event Type": "Carbs",
                "Carb Value (grams)": str(grams),
            })
        )  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for i, r in enumerate(rows, start=1):
            writer.writerow([str(i), *r[1:]])
    return path


LIBRE_HEADER = [
    "Device",
    "Serial Number",
    "Device Timestamp",
    "Record Type",
    "Historic Glucose {u}",
    "Scan Glucose {u}",
    "Non-numeric Rapid-Acting Insulin",
    "Rapid-Acting Insulin (units)",
    "Non-numeric Food",
    "Carbohydrates (grams)",
    "Carbohydrates (servings)",
    "Non-numeric Long-Acting Insulin",
    "Long-Acting Insulin Value (units)",
    "Notes",
    "Strip Glucose {u}",
    "Ketone mmol/L",
    "Meal Insulin (units)",
    "Correction Insulin (units)",
    "User Change Insulin (units)",
]


def libre(
    path: Path,
    historic: Sequence[tuple[datetime, Any]],
    *,
    unit: str = "mg/dL",
    scans: Sequence[tuple[datetime, Any]] = (),
    insulin: Sequence[tuple[datetime, float]] = (),
    carbs: Sequence[tuple[datetime, float]] = (),
    day_first: bool = True,
) -> Path:
    """A LibreView export: the title line, the header, then records by type."""
    header = [h.format(u=unit) for h in LIBRE_HEADER]
    stamp = "%d-%m-%Y %H:%M" if day_first else "%m-%d-%Y %H:%M"
    rows = []

    def row(when: datetime, kind: int, column: str, value: Any) -> list[str]:
        out = ["FreeStyle LibreLink", "A1B2C3", when.strftime(stamp), str(kind)]
        out += [""] * (len(header) - 4)
        out[header.index(column)] = str(value)
        return out

    for when, value in historic:
        rows.append(row(when, 0, f"Historic Glucose {unit}", value))
    for when, value in scans:
        rows.append(row(when, 1, f"Scan Glucose {unit}", value))
    for when, value in insulin:
        rows.append(row(when, 4, "Rapid-Acting Insulin (units)", value))
    for when, value in carbs:
        rows.append(row(when, 5, "Carbohydrates (grams)", value))
    with path.open("w", newline="") as f:
        f.write("Glucose Data,Generated on,06-12-2026 10:00 UTC,Generated by,Ada Lovelace\n")
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def nightscout_entries(readings: Sequence[tuple[datetime, float]]) -> list[dict[str, Any]]:
    """``entries`` documents, newest first as the API answers; ``readings`` in UTC."""
    docs = []
    for i, (when, value) in enumerate(readings):
        ms = int(when.timestamp() * 1000)
        docs.append(
            {
                "_id": f"e{i:06d}",
                "type": "sgv",
                "sgv": value,
                "date": ms,
                "dateString": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "direction": "Flat",
                "device": "xDrip-DexcomG6",
            }
        )
    return docs[::-1]


def fhir_bundle(
    path: Path, observations: Sequence[tuple[str, str, float, str | None]], **extra: Any
) -> Path:
    """A Bundle of Observations: (LOINC code, ISO time with offset, value, UCUM unit)."""
    entries = []
    for i, (code, when, value, unit) in enumerate(observations):
        quantity: dict[str, Any] = {"value": value}
        if unit is not None:
            quantity |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
        quantity |= extra.get("quantity", {}).get(i, {})
        entries.append(
            {
                "fullUrl": f"urn:uuid:obs-{i}",
                "resource": {
                    "resourceType": "Observation",
                    "id": f"obs-{i}",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": "Patient/p1"},
                    "effectiveDateTime": when,
                    "valueQuantity": quantity,
                },
            }
        )
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    path.write_text(json.dumps(bundle, indent=1))
    return path


def fitabase_time(when: datetime, spelling: str = "fitbit") -> str:
    """``when`` as Fitabase files spell it: ``fitbit`` (Fitbit's own, month first, as
    ``4/12/2016 1:00:00 AM``), ``date`` (``4/12/2016``), and the spellings of files that
    went through a spreadsheet: ``padded-24h`` (``04/12/2016 01:00``, month first),
    ``dayfirst-24h`` (``12/04/2016 01:00``), ``dayfirst-ampm`` (``12/04/2016 1:00 AM``)."""
    hour, ampm = when.hour % 12 or 12, "AM" if when.hour < 12 else "PM"
    m, d, y = when.month, when.day, when.year
    spelled = {
        "fitbit": f"{m}/{d}/{y} {hour}:{when:%M:%S} {ampm}",
        "date": f"{m}/{d}/{y}",
        "padded-24h": f"{m:02d}/{d:02d}/{y} {when:%H:%M}",
        "dayfirst-24h": f"{d:02d}/{m:02d}/{y} {when:%H:%M}",
        "dayfirst-ampm": f"{d:02d}/{m:02d}/{y} {hour}:{when:%M} {ampm}",
    }
    return spelled[spelling]


def fitbit_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path:
    """A Fitabase CSV of any kind: ``header``, then ``rows`` (each cell written as str)."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([[str(cell) for cell in row] for row in rows])
    return path


def fitbit_hourly(
    path: Path,
    people: dict[str, Sequence[tuple[datetime, int]]],
    *,
    spelling: str | Callable[[datetime], str] = "fitbit",
) -> Path:
    """``hourlySteps_merged.csv`` as Fitbit writes it (M/D/YYYY h:mm:ss AM); ``spelling``
    (see :func:`fitabase_time`), or a function of each row's time that names one, for a
    file whose rows a spreadsheet rewrote."""
    rows = []
    for person, readings in people.items():
        for when, steps in readings:
            chosen = spelling if isinstance(spelling, str) else spelling(when)
            rows.append([person, fitabase_time(when, chosen), steps])
    return fitbit_table(path, ["Id", "ActivityHour", "StepTotal"], rows)


def fitbit_minutes_wide(
    path: Path, person: str, hours: Sequence[tuple[datetime, Sequence[int]]]
) -> Path:
    """``minuteStepsWide_merged.csv``: a row per hour (``ActivityHour``), ``Steps00`` ..
    ``Steps59`` the steps of each of its minutes."""
    header = ["Id", "ActivityHour", *(f"Steps{m:02d}" for m in range(60))]
    rows = [[person, fitabase_time(when), *steps] for when, steps in hours]
    return fitbit_table(path, header, rows)


def apple_health(path: Path, records: Sequence[tuple[str, str, str, float]]) -> Path:
    """``export.xml``: (HealthKit short type, unit, 'YYYY-MM-DD hh:mm:ss +hhmm', value)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<!DOCTYPE HealthData [",
        "<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout)*)>",
        "<!ATTLIST HealthData locale CDATA #REQUIRED>",
        "]>",
        '<HealthData locale="en_DE">',
        ' <ExportDate value="2026-12-06 10:00:00 +0100"/>',
        ' <Me HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>',
    ]
    for kind, unit, when, value in records:
        lines.append(
            f' <Record type="HKQuantityTypeIdentifier{kind}" sourceName="Ada\u2019s Watch" '
            f'sourceVersion="10.1" unit={quoteattr(unit)} creationDate="{when}" startDate="{when}" '
            f'endDate="{when}" value="{value}"/>'
        )
    lines.append("</HealthData>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# -- Nightscout, FHIR and Apple Health: documents and files the tests shape themselves --


def nightscout_file(path: Path, docs: Sequence[dict[str, Any]], *, ndjson: bool = False) -> Path:
    """Nightscout documents as a saved ``/api/v1/*.json`` (a JSON array, one document a
    line inside it) or as ``mongoexport`` writes them (NDJSON, one document a line)."""
    if ndjson:
        text = "".join(json.dumps(d) + "\n" for d in docs)
    else:
        text = "[\n" + ",\n".join(json.dumps(d) for d in docs) + "\n]\n"
    path.write_text(text, encoding="utf-8")
    return path


def nightscout_treatment(i: int, when: datetime, event: str, **fields: Any) -> dict[str, Any]:
    """A ``treatments`` document at ``when`` (UTC), as the API answers (``created_at`` in UTC
    with milliseconds)."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    doc = {"_id": f"t{i:06d}", "eventType": event, "created_at": stamp, "enteredBy": "AAPS"}
    return doc | fields


def nightscout_devicestatus(
    i: int, when: datetime, uploader: str, iob: float, cob: float
) -> dict[str, Any]:
    """A ``devicestatus`` document of an OpenAPS/AAPS (``"openaps"``) or Loop (``"loop"``)
    uploader, with insulin and carbs on board."""
    stamp = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    doc: dict[str, Any] = {"_id": f"d{i:06d}", "created_at": stamp, "device": uploader}
    if uploader == "openaps":
        doc["openaps"] = {
            "iob": {"iob": iob, "basaliob": 0.1, "activity": 0.01, "time": stamp},
            "suggested": {"COB": cob, "IOB": iob, "bg": 120, "timestamp": stamp},
        }
    else:
        doc["loop"] = {
            "name": "Loop",
            "iob": {"iob": iob, "timestamp": stamp},
            "cob": {"cob": cob, "timestamp": stamp},
        }
    return doc


def fhir_observation(
    i: int,
    code: str,
    when: str,
    value: float,
    unit: str | None,
    *,
    status: str = "final",
    quantity: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One Observation (LOINC ``code``, ``effectiveDateTime`` ``when``, UCUM ``unit``)."""
    value_quantity: dict[str, Any] = {"value": value}
    if unit is not None:
        value_quantity |= {"unit": unit, "system": "http://unitsofmeasure.org", "code": unit}
    return {
        "resourceType": "Observation",
        "id": f"obs-{i}",
        "status": status,
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        "valueQuantity": value_quantity | (quantity or {}),
    }


def fhir_file(path: Path, resources: Sequence[dict[str, Any]], *, ndjson: bool = False) -> Path:
    """Resources as a Bundle (pretty-printed JSON) or as a bulk-data NDJSON file."""
    if ndjson:
        path.write_text("".join(json.dumps(r) + "\n" for r in resources), encoding="utf-8")
        return path
    entries = [
        {"fullUrl": f"urn:uuid:{r.get('id', i)}", "resource": r} for i, r in enumerate(resources)
    ]
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    path.write_text(json.dumps(bundle, indent=1), encoding="utf-8")
    return path


APPLE_HEALTH_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    "<!DOCTYPE HealthData [\n"
    "<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout)*)>\n"
    "<!ATTLIST HealthData locale CDATA #REQUIRED>\n"
    "]>\n"
    '<HealthData locale="en_DE">\n'
    ' <ExportDate value="2026-12-06 10:00:00 +0100"/>\n'
    ' <Me HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexFemale"/>\n'
)


def apple_record(
    kind: str, unit: str, when: str, value: float, metadata: dict[str, str] | None = None
) -> str:
    """One ``<Record>`` of ``export.xml`` (with ``<MetadataEntry>`` children if given)."""
    head = (
        f'<Record type="HKQuantityTypeIdentifier{kind}" sourceName="Ada\u2019s iPhone" '
        f'sourceVersion="17.1" unit={quoteattr(unit)} creationDate="{when}" '
        f'startDate="{when}" endDate="{when}" value="{value}"'
    )
    if not metadata:
        return head + "/>"
    entries = "".join(f'\n  <MetadataEntry key="{k}" value="{v}"/>' for k, v in metadata.items())
    return head + ">" + entries + "\n </Record>"


def apple_export(path: Path, elements: Sequence[str], *, root: str = "HealthData") -> Path:
    """``export.xml`` holding ``elements`` (records, correlations) under ``root``."""
    head = APPLE_HEALTH_HEAD.replace("HealthData", root)
    body = "".join(f" {e}\n" for e in elements)
    path.write_text(head + body + f"</{root}>\n", encoding="utf-8")
    return path


def apple_heart_rate_export(path: Path, n: int, start: datetime) -> Path:
    """A large ``export.xml``: ``n`` HeartRate records a minute apart from ``start`` (UTC),
    written piece by piece, as a watch's years of readings are."""
    device = (
        "&lt;&lt;HKDevice: 0x281f4c0a0&gt;, name:Apple Watch, manufacturer:Apple Inc., "
        "model:Watch, hardware:Watch6,2, software:10.1&gt;"
    )
    with path.open("w", encoding="utf-8") as f:
        f.write(APPLE_HEALTH_HEAD)
        chunk: list[str] = []
        for i in range(n):
            when = (start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S +0000")
            chunk.append(
                ' <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Ada\u2019s Watch" '
                f'sourceVersion="10.1" device="{device}" unit="count/min" creationDate="{when}" '
                f'startDate="{when}" endDate="{when}" value="{60 + i % 50}"/>\n'
            )
            if len(chunk) == 10_000:
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
        f.write("</HealthData>\n")
    return path
