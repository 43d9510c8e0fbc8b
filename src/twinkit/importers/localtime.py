"""Clock times as devices write them: dates in either order, local time in a named zone.

Devices and apps export the wall-clock time of the person's phone or reader, often without
a zone, with the day and month in the order of the user's locale (and, in files that went
through a spreadsheet, in more than one order within one file). Here those times become
UTC: the date order is decided per spelling from the values themselves (a field above 12
can only be a day) or, where every value fits both orders, from which order keeps the
file's rows in sequence; the local time is placed in its zone, with the hour a DST change
repeats ordered by the rows' sequence and the hour it skips read as the clock before the
change. Every decision is counted in notes, which the ledger keeps.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute

from twinkit.core.errors import Problem, ValidationError

_US_PER_S = 1_000_000
_CLOCK = (
    r"^\s*(?P<a>\d{1,4})(?P<sep>[/\-.])(?P<b>\d{1,2})[/\-.](?P<c>\d{2,4})"
    r"(?:[ T]+(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.(?P<f>\d{1,6}))?)?"
    r"\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?\s*$"
)


def zone(tz: str | None, source: str, fmt: str) -> ZoneInfo:
    """The named zone, or a clear refusal: local clock times mean nothing without it."""
    if tz is None:
        raise ValidationError(
            source,
            [
                Problem(
                    f"{fmt} files hold local clock times without a time zone: name the "
                    "zone they were recorded in (--tz Europe/Berlin, --tz America/New_York, "
                    "or --tz UTC)"
                )
            ],
        )
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        close = sorted(z for z in available_timezones() if tz.lower() in z.lower())[:5]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValidationError(
            source, [Problem(f"unknown time zone {tz!r}: use an IANA name{hint}")]
        ) from None


def parse_clock(
    texts: pd.Series,
    lines: np.ndarray,
    column: str,
    source: str,
    *,
    dayfirst: bool | None = None,
    group: np.ndarray | None = None,
    notes: dict[str, Any] | None = None,
) -> np.ndarray:
    """Wall-clock times (int64 microseconds, no zone) from date-time text.

    Year first (``2024-01-15 14:30``) is read as is. Otherwise the day and month order is
    decided per spelling (separator, padding, 12/24-hour clock): ``dayfirst`` when given,
    else from the values, else from the sequence of rows (within ``group``, in file order).
    A value that is not a date-time raises :class:`ValidationError` naming its line.
    """
    iso = _iso(texts)
    if iso is not None:
        return iso
    text = texts.astype(str)
    parts = text.str.extract(_CLOCK)
    bad = parts["a"].isna().to_numpy()
    problems = [
        Problem(f"not a date and time: {text.iloc[i]!r}", None, column, int(lines[i]))
        for i in np.flatnonzero(bad)[:5]
    ]
    if bad.sum() > 5:
        problems.append(Problem(f"{int(bad.sum()) - 5} more such value(s)", None, column))
    if problems:
        raise ValidationError(source, problems)
    a, b, c = (parts[k].astype(int).to_numpy() for k in ("a", "b", "c"))
    hour = parts["h"].fillna("0").astype(int).to_numpy()
    minute = parts["mi"].fillna("0").astype(int).to_numpy()
    second = parts["s"].fillna("0").astype(int).to_numpy()
    frac = parts["f"].fillna("0").str.ljust(6, "0").astype(int).to_numpy()
    ampm = parts["ampm"].fillna("").str.lower().str[:1].to_numpy()
    pm, am = ampm == "p", ampm == "a"
    hour = np.where(pm & (hour < 12), hour + 12, np.where(am & (hour == 12), 0, hour))
    year_first = parts["a"].str.len().to_numpy() == 4
    c = np.where(~year_first & (c < 100), c + 2000, c)
    shape = (
        parts["sep"]
        + parts["a"].str.len().astype(str)
        + parts["b"].str.len().astype(str)
        + np.where(ampm != "", "ampm", "24h")
    ).to_numpy()
    shape = np.where(year_first, "ymd", shape)
    order = np.where(year_first, 0, 1)  # 0: y-m-d, 1: m/d/y, 2: d/m/y
    decided: dict[str, str] = {}
    undecided: list[str] = []
    for name in sorted(set(shape[~year_first])):
        rows = shape == name
        day_first = bool((a[rows] > 12).any())
        month_first = bool((b[rows] > 12).any())
        if dayfirst is not None:
            order[rows] = 2 if dayfirst else 1
            decided[name] = "day first (as told)" if dayfirst else "month first (as told)"
        elif day_first and month_first:
            first = int(np.flatnonzero(rows & (b > 12))[0])
            raise ValidationError(
                source,
                [
                    Problem(
                        "dates of one spelling put the day first in some rows and the month "
                        f"first in others: {text.iloc[first]!r}; say which (dayfirst)",
                        None,
                        column,
                        int(lines[first]),
                    )
                ],
            )
        elif day_first or month_first:
            order[rows] = 2 if day_first else 1
            decided[name] = "day first" if day_first else "month first"
        else:
            undecided.append(name)

    def build(order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        year = np.where(order == 0, a, c)
        month = np.where(order == 2, b, np.where(order == 0, b, a))
        day = np.where(order == 2, a, np.where(order == 0, c, b))
        valid = (month >= 1) & (month <= 12) & (day >= 1) & (day <= 31) & (hour < 24)
        frame = pd.DataFrame(
            {
                "year": np.where(valid, year, 1970),
                "month": np.where(valid, month, 1),
                "day": np.where(valid, day, 1),
                "hour": np.where(valid, hour, 0),
                "minute": minute,
                "second": second,
            }
        )
        stamp = pd.to_datetime(frame, errors="coerce")
        us = np.asarray(stamp.to_numpy(dtype="datetime64[us]").astype(np.int64)) + frac
        return us, valid & ~np.asarray(stamp.isna())

    for name in undecided:
        rows = shape == name
        scores = []
        for candidate in (1, 2):
            trial = order.copy()
            trial[rows] = candidate
            us, valid = build(trial)
            scores.append(_disorder(us, valid, group))
        order[rows] = 1 if scores[0] <= scores[1] else 2
        decided[name] = ("month first" if scores[0] <= scores[1] else "day first") + (
            " (from the order of the rows)"
        )
    us, valid = build(order)
    if not valid.all():
        wrong = np.flatnonzero(~valid)
        raise ValidationError(
            source,
            [
                Problem(f"not a valid date: {text.iloc[i]!r}", None, column, int(lines[i]))
                for i in wrong[:5]
            ],
        )
    if notes is not None and decided:
        notes.setdefault("date_order", {}).update(decided)
    return us


def _iso(texts: pd.Series) -> np.ndarray | None:
    """Year-first times (``2024-01-15T14:30:00``, ``2024-01-15 14:30``), parsed by Arrow
    (ten times pandas' regex path); None when any is spelled otherwise."""
    try:
        strings = pa.array(texts, type=pa.string())
        if (
            strings.null_count
            or not pa_compute.all(
                pa_compute.match_substring_regex(strings, r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
            ).as_py()
        ):
            return None
        parsed = strings.cast(pa.timestamp("us"))
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return np.asarray(parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _disorder(us: np.ndarray, valid: np.ndarray, group: np.ndarray | None) -> float:
    """How far the rows are from a sequence: the summed jump between neighbours in file
    order (a wrong day/month order jumps by months), with invalid dates as huge jumps."""
    if group is None:
        group = np.zeros(len(us), dtype=np.int64)
    same = group[1:] == group[:-1]
    both = valid[1:] & valid[:-1] & same
    jumps = np.abs(np.diff(us.astype(np.float64)))[both]
    return float(jumps.sum()) + float((~valid).sum()) * 1e18


def localize(
    naive_us: np.ndarray,
    tz: ZoneInfo,
    group: np.ndarray | None = None,
    notes: dict[str, Any] | None = None,
) -> np.ndarray:
    """UTC microseconds of wall-clock times in ``tz``.

    A time the clocks show twice (the hour a DST change repeats) is placed by the rows'
    sequence within its ``group`` (a channel, say) in file order: the first pass is summer
    time, a time earlier than the row before it is the second pass. A time the clocks skip
    is read as the clock before the change (a device that had not moved its clock yet).
    """
    index = pd.DatetimeIndex(naive_us.astype("datetime64[us]"))
    summer = index.tz_localize(tz, ambiguous=np.ones(len(index), bool), nonexistent="NaT")
    winter = index.tz_localize(tz, ambiguous=np.zeros(len(index), bool), nonexistent="NaT")
    out = np.asarray(summer.as_unit("us").asi8, dtype=np.int64).copy()
    gap = np.asarray(summer.isna())
    if gap.any():
        before = (index[gap] - pd.Timedelta(hours=6)).tz_localize(
            tz, ambiguous=True, nonexistent="shift_forward"
        )
        wall = before.tz_localize(None).as_unit("us").asi8
        offset = wall - before.tz_convert("UTC").tz_localize(None).as_unit("us").asi8
        out[gap] = np.asarray(index[gap].as_unit("us").asi8) - offset
    summer_us = out
    winter_us = np.asarray(winter.as_unit("us").asi8, dtype=np.int64)
    twice = ~gap & (summer_us != winter_us)
    unresolved = 0
    if twice.any():
        groups = np.zeros(len(out), np.int64) if group is None else np.asarray(group)
        # Which way the file runs is decided on all its rows: a channel of two rows says
        # little, the file's other channels say it well.
        same = groups[1:] == groups[:-1]
        steps = np.diff(naive_us)[same]
        newest_first = (steps < 0).sum() > (steps > 0).sum()
        for g in np.unique(groups[twice]):
            members = np.flatnonzero(groups == g)
            if newest_first:
                members = members[::-1]
            previous = np.iinfo(np.int64).min
            for i in members:
                if twice[i]:
                    # the second reading of a repeated clock time is the second pass
                    out[i] = summer_us[i] if summer_us[i] > previous else winter_us[i]
                    unresolved += int(len(members) == 1)
                previous = out[i]
    if notes is not None:
        notes["time_zone"] = str(tz)
        if twice.any():
            notes["dst_repeated_hour_rows"] = int(twice.sum())
        if gap.any():
            notes["dst_skipped_hour_rows"] = int(gap.sum())
        if unresolved:
            notes["dst_ambiguous_single_rows"] = unresolved
    return out


def epoch_us(seconds: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(seconds, dtype=np.float64) * _US_PER_S).astype(np.int64)
