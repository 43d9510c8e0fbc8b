"""Fitbit exports in the Fitabase CSV layout (``Id`` and a local time column, then values),
daily, hourly and minute files, narrow or wide (``Steps00`` .. ``Steps59``).

The file is recognised by its time column and value columns:

=====================================  =================================================
file (Fitabase name)                   channels
=====================================  =================================================
dailyActivity                          ``steps_daily``, ``calories_daily``,
                                       ``very_active_minutes_daily``, ...
dailySteps / dailyCalories             ``steps_daily`` / ``calories_daily``
sleepDay                               ``sleep_minutes_daily``, ``time_in_bed_daily``
hourlySteps / Calories / Intensities   ``steps_hourly`` / ``calories_hourly`` /
                                       ``intensity_hourly``
minute...Narrow / minute...Wide        ``steps`` / ``calories`` / ``intensity`` / ``mets``
heartrate_seconds                      ``heart_rate``
weightLogInfo                          ``weight`` (kg)
=====================================  =================================================

A value belongs to the start of its period (the hour of ``ActivityHour``, the day of
``ActivityDate``). Times are the wearer's local clock: name the zone (``tz``). Files
often carry several people (``Id``): ``person`` picks one. Dates may be spelled in more
than one order within a file (files that went through a spreadsheet): each spelling's
order is decided on its own, from every person's rows (see
:mod:`twinkit.importers.localtime`), so one person's few rows cannot decide it wrongly.
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
    read_text,
    refuse,
)
from twinkit.importers.localtime import localize, parse_clock, zone

FORMAT = "fitbit"
_MINUTE_US = 60_000_000
#: (time column, {value column: (channel, unit)}) per kind of file, tried in order
_LAYOUTS: list[tuple[str, dict[str, tuple[str, str]]]] = [
    (
        "ActivityDate",
        {
            "TotalSteps": ("steps_daily", "count"),
            "Calories": ("calories_daily", "kcal"),
            "VeryActiveMinutes": ("very_active_minutes_daily", "min"),
            "FairlyActiveMinutes": ("fairly_active_minutes_daily", "min"),
            "LightlyActiveMinutes": ("lightly_active_minutes_daily", "min"),
            "SedentaryMinutes": ("sedentary_minutes_daily", "min"),
        },
    ),
    (
        "ActivityDay",
        {"StepTotal": ("steps_daily", "count"), "Calories": ("calories_daily", "kcal")},
    ),
    (
        "SleepDay",
        {
            "TotalMinutesAsleep": ("sleep_minutes_daily", "min"),
            "TotalTimeInBed": ("time_in_bed_daily", "min"),
        },
    ),
    (
        "ActivityHour",
        {
            "StepTotal": ("steps_hourly", "count"),
            "Calories": ("calories_hourly", "kcal"),
            "TotalIntensity": ("intensity_hourly", "level"),
        },
    ),
    (
        "ActivityMinute",
        {
            "Steps": ("steps", "count"),
            "Calories": ("calories", "kcal"),
            "Intensity": ("intensity", "level"),
            "METs": ("mets", "MET"),
        },
    ),
    ("Time", {"Value": ("heart_rate", "bpm")}),
    ("Date", {"WeightKg": ("weight", "kg")}),
]
_WIDE = re.compile(r"^(Steps|Calories|Intensity)(\d{2})$")
_WIDE_CHANNEL = {
    "Steps": ("steps", "count"),
    "Calories": ("calories", "kcal"),
    "Intensity": ("intensity", "level"),
}


def read(
    path: str,
    *,
    tz: str | None = None,
    person: str | None = None,
    dayfirst: bool | None = None,
) -> Imported:
    """Read one Fitabase-style CSV; ``person`` is the ``Id`` to take when it holds several."""
    source = str(path)
    header, rows, lines = csv_table(read_text(path, source), source, 0)
    if not rows:
        refuse(source, "the file has a header but no rows", 2)
    table = pd.DataFrame(rows, columns=header).apply(lambda col: col.str.strip())
    notes: dict[str, Any] = {}
    mine, group = np.ones(len(table), dtype=bool), None
    if "Id" in table.columns:
        people = list(pd.unique(table["Id"]))
        if person is None and len(people) > 1:
            shown = ", ".join(people[:8]) + (" ..." if len(people) > 8 else "")
            refuse(
                source,
                f"the file holds {len(people)} people (Id {shown}): pick one (person)",
                2,
                "Id",
            )
        chosen = person if person is not None else people[0]
        if chosen not in people:
            refuse(source, f"no rows of person {chosen!r} (Id)", None, "Id")
        mine, group = (table["Id"] == chosen).to_numpy(), pd.factorize(table["Id"])[0]
        notes["person"] = chosen
    wide = [c for c in table.columns if _WIDE.match(c)]
    layout = None
    for time_column, values in _LAYOUTS:
        present = {c: v for c, v in values.items() if c in table.columns}
        if time_column in table.columns and (present or (wide and time_column == "ActivityHour")):
            layout = (time_column, present)
            break
    if layout is None:
        refuse(source, f"not a Fitbit (Fitabase) file this importer knows: columns {header}", 1)
    time_column, present = layout
    tzinfo = zone(tz, source, "Fitbit")
    # the date order is the file's: decided on every person's rows, each in sequence
    naive = parse_clock(
        table[time_column], lines, time_column, source,
        dayfirst=dayfirst, group=group, notes=notes,
    )[mine]  # fmt: skip
    table, lines = table.loc[mine].reset_index(drop=True), lines[mine]
    problems: list[Problem] = []
    parts_t, parts_c, parts_v, parts_l = [], [], [], []
    units: dict[str, str] = {}
    columns = [(c, *present[c], 0) for c in present] if present else []
    for c in wide:
        match = _WIDE.match(c)
        assert match is not None
        channel, unit = _WIDE_CHANNEL[match.group(1)]
        columns.append((c, channel, unit, int(match.group(2)) * _MINUTE_US))
    for column, channel, unit, shift in columns:
        cells = table[column]
        values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
        empty = (cells == "").to_numpy()
        for i in np.flatnonzero(np.isnan(values) & ~empty)[:5]:
            add_problem(problems, f"not a number: {cells.iloc[i]!r}", int(lines[i]), column)
        keep = ~empty
        parts_t.append(naive[keep] + shift)
        parts_c.append(np.full(int(keep.sum()), channel, dtype=object))
        parts_v.append(values[keep])
        parts_l.append(lines[keep])
        units[channel] = unit
    check_problems(source, problems)
    # in file order (by line, then a wide row's minutes), which the DST decisions read
    naive_all, line_all = np.concatenate(parts_t), np.concatenate(parts_l)
    order = np.lexsort((naive_all, line_all))
    channel_all = np.concatenate(parts_c)[order]
    codes = pd.factorize(channel_all)[0]
    t = localize(naive_all[order], tzinfo, codes, notes)
    return Imported(
        FORMAT, f"Fitabase CSV ({time_column})", source, t, channel_all,
        np.concatenate(parts_v)[order], np.full(len(t), None, dtype=object),
        line_all[order], units, notes,
    )  # fmt: skip
