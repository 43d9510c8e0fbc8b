"""Dexcom Clarity CSV exports (Clarity web "Export" button).

The file is one table. Its first rows have no timestamp: they describe the patient and the
device (``Event Type`` FirstName, LastName, DateOfBirth, Device, Alert). Then one row per
event in the display device's local clock time: ``EGV`` (a sensor glucose value, or the
markers ``Low``/``High`` outside 40-400 mg/dL), ``Calibration`` (a meter value),
``Insulin`` (``Fast-Acting``/``Long-Acting``), ``Carbs``, ``Exercise``, ``Health``. The
glucose column names its unit: ``Glucose Value (mg/dL)`` or ``Glucose Value (mmol/L)``.

``Transmitter Time (Long Integer)`` is the transmitter's own seconds counter, which a
phone's clock change does not touch: a step in the difference between the two clocks
within one transmitter is a clock correction, and the readings before it are re-timed by
the transmitter's clock against the latest setting (the one the user settled on).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import Problem
from twinkit.importers.base import (
    Imported,
    add_problem,
    check_problems,
    csv_table,
    find_column,
    glucose_cells,
    read_text,
    refuse,
    unit_name,
)
from twinkit.importers.localtime import localize, parse_clock, zone

FORMAT = "dexcom-clarity"
_TIME = re.compile(r"^Timestamp\b", re.I)
_GLUCOSE = re.compile(r"^Glucose Value\s*(?:\((?P<unit>[^)]*)\))?$", re.I)
#: a clock step smaller than this is the jitter of two clocks read at different moments
_CLOCK_JITTER_US = 120 * 1_000_000
_CHANNELS = {
    ("egv", ""): "glucose",
    ("calibration", ""): "glucose_meter",
    ("insulin", "fast-acting"): "insulin",
    ("insulin", "long-acting"): "insulin_long",
    ("carbs", ""): "carbs",
}
_METADATA = {"firstname", "lastname", "dateofbirth", "device", "alert"}


def _column(header: list[str], pattern: re.Pattern[str], what: str, source: str) -> int:
    for j, name in enumerate(header):
        if pattern.match(name):
            return j
    refuse(source, f"not a Dexcom Clarity export: no {what} column (the header has {header})", 1)


def read(path: str, *, tz: str | None = None, unit: str | None = None) -> Imported:
    """Read a Clarity CSV export; ``tz`` is the zone of its clock times (required)."""
    source = str(path)
    text = read_text(path, source)
    header, rows, lines = csv_table(text, source, 0)
    if not rows:
        refuse(source, "the export has no rows", 2)
    j_time = _column(header, _TIME, "Timestamp", source)
    j_event = _column(header, re.compile(r"^Event Type$", re.I), "Event Type", source)
    j_sub = _column(header, re.compile(r"^Event Subtype$", re.I), "Event Subtype", source)
    j_glucose = _column(header, _GLUCOSE, "Glucose Value", source)
    match = _GLUCOSE.match(header[j_glucose])
    file_unit = unit_name(match.group("unit")) if match and match.group("unit") else None
    if file_unit is None and unit is None:
        refuse(
            source,
            f"the column {header[j_glucose]!r} does not name its unit (mg/dL or mmol/L); "
            "say which (unit)",
            1,
            header[j_glucose],
        )
    glucose_unit = unit_name(unit) if unit is not None else str(file_unit)
    if glucose_unit not in ("mg/dL", "mmol/L"):
        refuse(source, f"glucose in {glucose_unit!r}: expected mg/dL or mmol/L", 1)
    j_insulin = find_column(header, r"^Insulin Value")
    j_carbs = find_column(header, r"^Carb Value")
    j_tx_time = find_column(header, r"^Transmitter Time")
    j_tx_id = find_column(header, r"^Transmitter ID")
    j_device = find_column(header, r"^Device Info")

    table = pd.DataFrame(rows)
    event = table[j_event].str.strip().str.lower()
    sub = table[j_sub].str.strip().str.lower()
    stamp = table[j_time].str.strip()
    meta = (stamp == "") & event.isin(_METADATA)
    device = ""
    if j_device is not None:
        devices = table.loc[meta & (event == "device"), j_device].str.strip()
        device = next((d for d in devices if d), "")
    keyed = list(zip(event, np.where(event == "insulin", sub, ""), strict=True))
    channel = np.array([_CHANNELS.get(k) for k in keyed], dtype=object)
    data = ~meta.to_numpy()
    no_time = data & (stamp == "").to_numpy()
    problems: list[Problem] = []
    for i in np.flatnonzero(no_time)[:5]:
        add_problem(problems, "an event without a timestamp", int(lines[i]), header[j_time])
    check_problems(source, problems)
    kept = data & (channel != None)  # noqa: E711 - elementwise on an object array
    skipped = pd.Series(event[data & ~kept]).value_counts()
    notes: dict[str, Any] = {}
    if len(skipped):
        notes["skipped_events"] = {str(k): int(v) for k, v in skipped.items()}
    idx = np.flatnonzero(kept)
    if len(idx) == 0:
        refuse(source, "the export has no glucose, insulin or carb events", 2)
    lines_k, channel_k = lines[idx], channel[idx]
    tzinfo = zone(tz, source, "Dexcom Clarity")
    naive = parse_clock(stamp.iloc[idx], lines_k, header[j_time], source, notes=notes)
    codes = pd.factorize(channel_k)[0]
    t = localize(naive, tzinfo, codes, notes)

    values = np.full(len(idx), np.nan)
    flags = np.full(len(idx), None, dtype=object)
    is_glucose = (channel_k == "glucose") | (channel_k == "glucose_meter")
    g = np.flatnonzero(is_glucose)
    cells = table[j_glucose].iloc[idx[g]].tolist()
    values[g], flags[g] = glucose_cells(
        cells, lines_k[g], header[j_glucose], glucose_unit, "dexcom", problems
    )
    for name, j in (("insulin", j_insulin), ("insulin_long", j_insulin), ("carbs", j_carbs)):
        rows_c = np.flatnonzero(channel_k == name)
        if not len(rows_c):
            continue
        if j is None:
            refuse(
                source, f"{name} events but no column for their amounts", int(lines_k[rows_c[0]])
            )
        amounts = table[j].iloc[idx[rows_c]].str.strip()
        numbers = pd.to_numeric(amounts, errors="coerce").to_numpy(dtype=np.float64)
        for i in np.flatnonzero(np.isnan(numbers))[:5]:
            add_problem(
                problems, f"not a number: {amounts.iloc[i]!r}", int(lines_k[rows_c[i]]), header[j]
            )
        values[rows_c] = numbers
    check_problems(source, problems)
    if j_tx_time is not None and j_tx_id is not None:
        egv = np.flatnonzero(channel_k == "glucose")
        tx_time = pd.to_numeric(table[j_tx_time].iloc[idx[egv]], errors="coerce").to_numpy()
        tx_id = table[j_tx_id].iloc[idx[egv]].to_numpy()
        t[egv] = _clock_corrections(t[egv], tx_time, tx_id, notes)
    units = {"glucose": glucose_unit, "glucose_meter": glucose_unit}
    units |= {"insulin": "U", "insulin_long": "U", "carbs": "g"}
    version = f"Clarity CSV ({device})" if device else "Clarity CSV"
    return Imported(
        FORMAT, version, source, t, channel_k, values, flags, lines_k,
        {c: u for c, u in units.items() if c in set(channel_k)}, notes,
    )  # fmt: skip


def _clock_corrections(
    t: np.ndarray, tx_time: np.ndarray, tx_id: np.ndarray, notes: dict[str, Any]
) -> np.ndarray:
    """Re-time readings taken before a clock change by the transmitter's clock."""
    out = t.copy()
    fixed = 0
    steps: list[float] = []
    for transmitter in pd.unique(tx_id):
        rows = np.flatnonzero((tx_id == transmitter) & np.isfinite(tx_time))
        if len(rows) < 2:
            continue
        rows = rows[np.argsort(tx_time[rows], kind="stable")]
        diff = t[rows] - np.round(tx_time[rows] * 1e6).astype(np.int64)
        latest = np.median(diff[-min(len(diff), 12) :])
        off = np.abs(diff - latest) > _CLOCK_JITTER_US
        if off.any():
            jumps = np.abs(np.diff(diff)) > _CLOCK_JITTER_US
            steps.extend(float(s) / 60e6 for s in np.diff(diff)[jumps])
            out[rows[off]] = np.round(tx_time[rows[off]] * 1e6).astype(np.int64) + int(latest)
            fixed += int(off.sum())
    if fixed:
        notes["clock_corrections"] = {
            "rows_retimed": fixed,
            "steps_minutes": [round(s, 1) for s in steps[:20]],
            "by": "the transmitter's clock, against the latest clock setting",
        }
    return out
