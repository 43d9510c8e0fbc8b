"""FHIR R4 Observations: a ``Bundle`` (JSON) or a bulk-data export (NDJSON, one resource
per line). Observations are recognised by their LOINC code:

- glucose in blood, plasma or interstitial fluid (2339-0, 2345-7, 15074-8, 14749-6,
  99504-3, 105272-9) -> ``glucose``; by a meter in capillary blood (41653-7, 14743-9) ->
  ``glucose_meter``;
- heart rate (8867-4) -> ``heart_rate``; steps (55423-8, 41950-7) -> ``steps``.

The value is ``valueQuantity`` with its UCUM unit (``mg/dL``, ``mmol/L``, ``/min``); a
glucose value without a unit is refused. A value with a ``comparator`` (``<40``: below
what the device measures) is quarantined. The time is ``effectiveDateTime``, or the
start of ``effectivePeriod``, or ``effectiveInstant``; entered-in-error, cancelled and
value-less Observations are skipped and counted.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from twinkit.core.errors import Problem
from twinkit.importers.base import (
    Imported,
    Rows,
    add_problem,
    check_problems,
    read_text,
    refuse,
    unit_name,
)

FORMAT = "fhir-r4"
LOINC = "http://loinc.org"
CODES = {
    "2339-0": "glucose",
    "2345-7": "glucose",
    "15074-8": "glucose",
    "14749-6": "glucose",
    "99504-3": "glucose",
    "105272-9": "glucose",
    "41653-7": "glucose_meter",
    "14743-9": "glucose_meter",
    "8867-4": "heart_rate",
    "55423-8": "steps",
    "41950-7": "steps",
}
_SKIP_STATUS = {"entered-in-error", "cancelled"}


def _resources(text: str, source: str) -> list[tuple[int, Any]]:
    """(position, resource): the entries of a Bundle, or the lines of an NDJSON file."""
    stripped = text.lstrip()
    n = 0  # lines before the one being decoded (NDJSON: one resource a line)
    try:
        if stripped.startswith("{") and "\n{" not in stripped.rstrip():
            doc = json.loads(text)
            if doc.get("resourceType") == "Bundle":
                entries = doc.get("entry") or []
                return [(n + 1, (e or {}).get("resource")) for n, e in enumerate(entries)]
            return [(1, doc)]
        out = []
        for n, line in enumerate(text.splitlines()):
            if line.strip():
                out.append((n + 1, json.loads(line)))
        return out
    except json.JSONDecodeError as exc:
        refuse(
            source,
            f"not valid JSON: {exc.msg} (a truncated file?)",
            n + exc.lineno,
            f"char {exc.colno}",
        )
    except AttributeError:
        refuse(source, "not a FHIR resource or Bundle")


def _time_us(resource: dict[str, Any]) -> int | None:
    for value in (
        resource.get("effectiveDateTime"),
        (resource.get("effectivePeriod") or {}).get("start"),
        resource.get("effectiveInstant"),
    ):
        if isinstance(value, str) and value:
            try:
                stamp = pd.Timestamp(value)
            except ValueError:
                return None
            if stamp.tzinfo is None:
                return None  # FHIR requires a zone on a time of day; a bare date has none
            return int(stamp.tz_convert("UTC").value) // 1000  # .value is always in ns
    return None


def read(paths: str | list[str], *, unit: str | None = None) -> Imported:
    """Read FHIR R4 Observations (a Bundle or NDJSON) of glucose, heart rate and steps."""
    rows = Rows()
    units: dict[str, str] = {}
    skipped: dict[str, int] = {}
    problems: list[Problem] = []
    sources = [paths] if isinstance(paths, str) else list(paths)
    for path in sources:
        for at, resource in _resources(read_text(path, path), path):
            where = f"entry[{at - 1}]" if len(sources) else ""
            if not isinstance(resource, dict) or resource.get("resourceType") != "Observation":
                kind = resource.get("resourceType", "?") if isinstance(resource, dict) else "?"
                skipped[str(kind)] = skipped.get(str(kind), 0) + 1
                continue
            codes = [
                c.get("code")
                for c in (resource.get("code") or {}).get("coding") or []
                if isinstance(c, dict) and c.get("system") == LOINC
            ]
            channel = next((CODES[c] for c in codes if c in CODES), None)
            if channel is None:
                skipped["other codes"] = skipped.get("other codes", 0) + 1
                continue
            if resource.get("status") in _SKIP_STATUS:
                skipped[str(resource["status"])] = skipped.get(str(resource["status"]), 0) + 1
                continue
            quantity = resource.get("valueQuantity")
            if not isinstance(quantity, dict) or quantity.get("value") is None:
                skipped["no value"] = skipped.get("no value", 0) + 1
                continue
            t = _time_us(resource)
            if t is None:
                add_problem(
                    problems,
                    "no effective time with a time zone (effectiveDateTime, effectivePeriod)",
                    at,
                    f"{where}.effective[x]",
                )
                continue
            try:
                value = float(quantity["value"])
            except (TypeError, ValueError):
                add_problem(
                    problems,
                    f"not a number: {quantity['value']!r}",
                    at,
                    f"{where}.valueQuantity.value",
                )
                continue
            given = quantity.get("code") or quantity.get("unit") or unit
            if given is None and channel.startswith("glucose"):
                add_problem(
                    problems,
                    "a glucose value without a unit (mg/dL or mmol/L)",
                    at,
                    f"{where}.valueQuantity.unit",
                )
                continue
            name = (
                unit_name(str(given)) if given else ("bpm" if channel == "heart_rate" else "count")
            )
            known = units.setdefault(channel, name)
            if known != name:
                value = _convert(value, name, known, problems, at, where)
            comparator = quantity.get("comparator")
            flag = (
                f"value {comparator}{quantity['value']} {given}: beyond what the device measures"
                if comparator
                else None
            )
            rows.add(t, channel, value, at, flag)
    check_problems(", ".join(sources), problems)
    notes: dict[str, Any] = {"skipped": skipped} if skipped else {}
    if not len(rows):
        refuse(", ".join(sources), "no glucose, heart-rate or step Observations (by LOINC code)")
    return rows.build(FORMAT, "FHIR R4 Observation", ", ".join(sources), units, notes)


def _convert(
    value: float, src: str, dst: str, problems: list[Problem], at: int, where: str
) -> float:
    """Observations of one channel in two units: each in the first one seen."""
    from twinkit.importers.base import conversion

    factor = conversion(src, dst)
    if factor is None:
        add_problem(
            problems, f"unit {src!r} does not convert to {dst!r}", at, f"{where}.valueQuantity"
        )
        return value
    return value * factor
