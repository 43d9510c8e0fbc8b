"""Files shaped like each format's documented export, written by the tests that read them.

Every writer takes the readings as ``(local wall-clock time, value)`` pairs (or UTC where
the format keeps UTC), so a test knows exactly what the import must store.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

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


def fitbit_hourly(path: Path, people: dict[str, Sequence[tuple[datetime, int]]]) -> Path:
    """``hourlySteps_merged.csv`` as Fitbit writes it: M/D/YYYY h:mm:ss AM."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Id", "ActivityHour", "StepTotal"])
        for person, rows in people.items():
            for when, steps in rows:
                hour = when.strftime("%I").lstrip("0") or "12"
                stamp = f"{when.month}/{when.day}/{when.year} {hour}:00:00 {when.strftime('%p')}"
                writer.writerow([person, stamp, steps])
    return path


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
            f'sourceVersion="10.1" unit="{unit}" creationDate="{when}" startDate="{when}" '
            f'endDate="{when}" value="{value}"/>'
        )
    lines.append("</HealthData>")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
