"""What every importer returns, and the pieces they share: rows, units, sensor markers."""

from __future__ import annotations

import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from twinkit.core.errors import Problem, ValidationError

#: mg/dL per mmol/L of glucose (molar mass 180.156 g/mol)
GLUCOSE_MG_PER_MMOL = 18.0156

_UNIT_ALIASES = {
    "mg/dl": "mg/dL",
    "mmol/l": "mmol/L",
    "mmol<180.1558800000541>/l": "mmol/L",  # Apple Health's glucose unit
    "count/min": "bpm",
    "/min": "bpm",
    "beats/min": "bpm",
    "{beats}/min": "bpm",
    "bpm": "bpm",
    "iu": "U",
    "u": "U",
    "[iu]": "U",
    "units": "U",
    "g": "g",
    "count": "count",
    "{steps}": "count",
    "steps": "count",
    "kcal": "kcal",
    "cal": "kcal",  # nutrition labels' "Calories" are kilocalories
    "kg": "kg",
    "min": "min",
}


def unit_name(unit: str) -> str:
    """The canonical spelling of a unit (``"mg/dl"`` -> ``"mg/dL"``); unknown ones as given.

    >>> unit_name("mmol/l"), unit_name("count/min"), unit_name("furlongs")
    ('mmol/L', 'bpm', 'furlongs')
    """
    return _UNIT_ALIASES.get(unit.strip().lower(), unit.strip())


def conversion(src: str, dst: str) -> float | None:
    """The factor that turns values in ``src`` into ``dst``, or None if twinkit cannot.

    >>> conversion("mmol/L", "mg/dL")
    18.0156
    >>> conversion("mg/dL", "bpm") is None
    True
    """
    src, dst = unit_name(src), unit_name(dst)
    if src == dst:
        return 1.0
    if (src, dst) == ("mmol/L", "mg/dL"):
        return GLUCOSE_MG_PER_MMOL
    if (src, dst) == ("mg/dL", "mmol/L"):
        return 1.0 / GLUCOSE_MG_PER_MMOL
    return None


#: the bounds of common CGM sensors, in mg/dL: a "Low"/"High" marker stands for a value
#: outside (below, above) them
SENSOR_BOUNDS_MG_DL = {"dexcom": (40.0, 400.0), "libre": (40.0, 500.0)}

_LOW_MARKERS = {"low", "lo", "<40"}
_HIGH_MARKERS = {"high", "hi", ">400", ">500"}


def marker(text: str) -> str | None:
    """``"low"`` or ``"high"`` when a glucose cell holds a sensor's out-of-range marker."""
    word = text.strip().lower()
    if word in _LOW_MARKERS:
        return "low"
    if word in _HIGH_MARKERS:
        return "high"
    return None


@dataclass
class Imported:
    """The readings one file holds, in twinkit's terms, before validation and screening.

    ``t`` is microseconds since 1970 UTC; ``flag`` is a reason to quarantine the row (a
    sensor marker, an error code) or None; ``line`` is where the row is in the source (a
    line of a text file, an entry of a JSON file), for messages. ``units`` says what unit
    each channel's values are in; ``notes`` what the import did that the user should know
    (time-zone decisions, clock corrections, records it skipped): the ledger keeps them.
    """

    format: str
    version: str
    source: str
    t: np.ndarray
    channel: np.ndarray
    value: np.ndarray
    flag: np.ndarray
    line: np.ndarray
    units: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.t)

    def counts(self) -> dict[str, int]:
        """Rows per channel."""
        names, n = np.unique(self.channel.astype(str), return_counts=True)
        return {str(a): int(b) for a, b in zip(names, n, strict=True)}

    def select(self, keep: np.ndarray) -> Imported:
        """The rows where ``keep`` is true (units of channels that are left)."""
        channels = set(map(str, np.unique(self.channel[keep].astype(str))))
        return Imported(
            self.format,
            self.version,
            self.source,
            self.t[keep],
            self.channel[keep],
            self.value[keep],
            self.flag[keep],
            self.line[keep],
            {c: u for c, u in self.units.items() if c in channels},
            dict(self.notes),
        )


class Rows:
    """Readings as they are found, kept compact (an Apple Health export holds millions)."""

    def __init__(self) -> None:
        self._t = array("q")
        self._code = array("H")
        self._value = array("d")
        self._line = array("q")
        self._channels: dict[str, int] = {}
        self._flags: dict[int, str] = {}

    def add(
        self, t_us: int, channel: str, value: float, line: int, flag: str | None = None
    ) -> None:
        code = self._channels.setdefault(channel, len(self._channels))
        if flag is not None:
            self._flags[len(self._t)] = flag
        self._t.append(t_us)
        self._code.append(code)
        self._value.append(value)
        self._line.append(line)

    def __len__(self) -> int:
        return len(self._t)

    def build(
        self,
        format: str,
        version: str,
        source: str,
        units: dict[str, str],
        notes: dict[str, Any] | None = None,
    ) -> Imported:
        names = np.array(list(self._channels), dtype=object)
        codes = np.frombuffer(self._code, dtype=np.uint16).astype(np.intp)
        flag = np.full(len(self._t), None, dtype=object)
        for i, reason in self._flags.items():
            flag[i] = reason
        present = set(self._channels)
        return Imported(
            format,
            version,
            source,
            np.frombuffer(self._t, dtype=np.int64).copy(),
            names[codes] if len(names) else np.array([], dtype=object),
            np.frombuffer(self._value, dtype=np.float64).copy(),
            flag,
            np.frombuffer(self._line, dtype=np.int64).copy(),
            {c: u for c, u in units.items() if c in present},
            dict(notes or {}),
        )


def refuse(
    source: str, message: str, line: int | None = None, column: str | None = None
) -> NoReturn:
    """Raise the :class:`ValidationError` of one problem."""
    raise ValidationError(source, [Problem(message, None, column, line)])


def check_problems(source: str, problems: list[Problem]) -> None:
    if problems:
        raise ValidationError(source, problems)


def add_problem(
    problems: list[Problem], message: str, line: int | None, column: str | None
) -> None:
    """Collect a problem; after many, one more only counts (the error names the first)."""
    if len(problems) < 20:
        problems.append(Problem(message, None, column, line))


def find_column(header: list[str], pattern: str) -> int | None:
    """The index of the first header name that ``pattern`` matches (case-insensitive)."""
    return next((j for j, name in enumerate(header) if re.match(pattern, name, re.I)), None)


def read_text(path: str, source: str) -> str:
    """A text file's contents; a file that is not UTF-8 text is refused, naming the line."""
    if not Path(path).is_file():
        refuse(source, "no such file")
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        refuse(source, f"not a UTF-8 text file (byte {exc.start} is not text)", line)


def csv_table(
    text: str, source: str, header_line: int, *, max_missing_tail: int = 0
) -> tuple[list[str], list[list[str]], np.ndarray]:
    """The header and rows of a CSV table starting at ``header_line`` (0-based) and the
    1-based file line of each row. A row with fewer or more fields than the header is
    refused (a truncated or corrupted file), except that up to ``max_missing_tail`` empty
    trailing fields may be left out, as some exporters do."""
    import csv
    import io

    lines = text.splitlines()
    reader = csv.reader(io.StringIO("\n".join(lines[header_line:])))
    problems: list[Problem] = []
    try:
        header = [h.strip() for h in next(reader)]
    except (StopIteration, csv.Error) as exc:
        refuse(source, f"no table header ({exc})", header_line + 1)
    rows: list[list[str]] = []
    numbers: list[int] = []
    try:
        for record in reader:
            line = header_line + reader.line_num
            if not record or all(not f.strip() for f in record):
                continue
            short = len(header) - len(record)
            if short > max_missing_tail or short < 0:
                kind = "ends after" if short > 0 else "has"
                add_problem(
                    problems,
                    f"the row {kind} {len(record)} field(s), the header has {len(header)} "
                    "(a truncated or corrupted file?)",
                    line,
                    None,
                )
                continue
            rows.append(record + [""] * short)
            numbers.append(line)
    except csv.Error as exc:
        add_problem(problems, f"not readable as CSV: {exc}", header_line + reader.line_num, None)
    check_problems(source, problems)
    return header, rows, np.asarray(numbers, dtype=np.int64)


def glucose_cells(
    cells: list[str],
    lines: np.ndarray,
    column: str,
    unit: str,
    sensor: str,
    problems: list[Problem],
) -> tuple[np.ndarray, np.ndarray]:
    """Glucose values in ``unit`` and a quarantine reason per cell: a number, or a sensor's
    "Low"/"High" marker (held, with the sensor's bound as its value), else a problem."""
    low, high = SENSOR_BOUNDS_MG_DL[sensor]
    factor = conversion("mg/dL", unit) or 1.0
    values = np.full(len(cells), np.nan)
    flags = np.full(len(cells), None, dtype=object)
    for i, cell in enumerate(cells):
        try:
            values[i] = float(cell)
            continue
        except ValueError:
            pass
        kind = marker(cell)
        if kind is None:
            add_problem(problems, f"not a glucose value: {cell!r}", int(lines[i]), column)
            continue
        bound = low if kind == "low" else high
        values[i] = round(bound * factor, 1)
        side = "below" if kind == "low" else "above"
        flags[i] = (
            f"sensor marker {cell.strip()!r}: {side} the sensor's range "
            f"({low:g}-{high:g} mg/dL); stored as {values[i]:g} {unit} if released"
        )
    return values, flags
