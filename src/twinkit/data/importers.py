"""Read signal and decision batches from CSV, Parquet or JSON lines, and validate them.

Validation is vectorised; only when something is wrong do we look row by row, so that the
error names the row, the column and the problem.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from twinkit.core.digest import canonical_order
from twinkit.core.errors import Problem, TooLargeError, ValidationError
from twinkit.core.timewindow import TimeWindow, micros_iso
from twinkit.core.twin import CHANNEL_PATTERN, TWIN_ID_PATTERN

SIGNAL_COLUMNS = ("twin_id", "time", "channel", "value")
DECISION_COLUMNS = ("twin_id", "item_id", "label")
_TEXT_COLUMNS = ("twin_id", "time", "channel", "item_id", "label")
_FORMATS = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
#: pyarrow's default CSV block: a file is parsed in blocks of at least this size
_CSV_BLOCK_BYTES = 1 << 20
# An explicit UTC offset after a clock time: "...T08:30:00Z", "... 08:30+02:00".
_TZ_SUFFIX = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$"


#: what an unparsed time (NaT) holds as int64
_NAT = np.iinfo(np.int64).min


class BatchKind(StrEnum):
    SIGNALS = "signals"
    DECISIONS = "decisions"


@dataclass(frozen=True)
class SignalBatch:
    """Validated signal rows: ``twin_id, channel, t`` (int64 us UTC), ``value``, ``row``.

    A batch from a device export (``twinkit.importers``) also carries ``flags``, a reason
    per row (aligned with ``frame``) to quarantine it or None (a sensor's "Low" marker, an
    error code); ``provenance``, what the import was (format, version, options, decisions)
    for the ledger; and ``units``, the unit of each channel's values.
    """

    frame: pd.DataFrame
    source: str
    flags: np.ndarray | None = None
    provenance: dict[str, Any] | None = None
    units: dict[str, str] | None = None

    kind = BatchKind.SIGNALS

    def __len__(self) -> int:
        return len(self.frame)


@dataclass(frozen=True)
class DecisionBatch:
    """Validated decisions: ``twin_id, item_id, label, row`` and a float feature matrix."""

    frame: pd.DataFrame
    features: np.ndarray
    feature_names: tuple[str, ...]
    source: str

    kind = BatchKind.DECISIONS

    def __len__(self) -> int:
        return len(self.frame)


Batch = SignalBatch | DecisionBatch


def _format(name: str, source: str) -> str:
    fmt = _FORMATS.get(Path(name).suffix.lower())
    if fmt is None:
        raise ValidationError(
            source,
            [Problem(f"unknown file type {Path(name).suffix!r}: use .csv, .parquet or .jsonl")],
        )
    return fmt


def read_table(
    path: Path | str,
    *,
    max_rows: int | None = None,
    max_columns: int | None = None,
    max_cells: int | None = None,
) -> pd.DataFrame:
    """Read a CSV, Parquet or JSON-lines file into a frame, without interpreting types.

    The limits are those of :func:`read_table_bytes`.
    """
    path = Path(path)
    _format(path.name, str(path))
    if not path.is_file():
        raise ValidationError(str(path), [Problem("no such file")])
    return read_table_bytes(
        path.read_bytes(),
        path.name,
        str(path),
        max_rows=max_rows,
        max_columns=max_columns,
        max_cells=max_cells,
    )


@dataclass(frozen=True)
class _Limits:
    """The largest table a read may decode; None is no limit."""

    rows: int | None = None
    columns: int | None = None
    cells: int | None = None

    @property
    def unlimited(self) -> bool:
        return self.rows is None and self.columns is None and self.cells is None

    def exceeded(self, rows: int, columns: int) -> tuple[str, int] | None:
        """The first limit a table of this shape is over, as (what, limit), or None."""
        for what, limit, size in (
            ("columns", self.columns, columns),
            ("rows", self.rows, rows),
            ("cells", self.cells, rows * columns),
        ):
            if limit is not None and size > limit:
                return what, limit
        return None

    def check(self, source: str, rows: int, columns: int) -> None:
        """Raise :class:`TooLargeError` if a table of this shape is over a limit."""
        over = self.exceeded(rows, columns)
        if over is not None:
            raise TooLargeError(source, *over)


def read_table_bytes(
    raw: bytes,
    name: str,
    source: str | None = None,
    *,
    max_rows: int | None = None,
    max_columns: int | None = None,
    max_cells: int | None = None,
) -> pd.DataFrame:
    """Read a file's content (an upload, say); ``name``'s suffix says its format.

    A file with more data rows than ``max_rows``, more columns than ``max_columns`` or more
    cells (rows x columns) than ``max_cells`` raises :class:`TooLargeError` before it is
    decoded: Parquet's sizes are read from its footer, CSV and JSON lines are counted as
    they are scanned, stopping at the first row over a limit. None is no limit.
    """
    source = source or name
    fmt = _format(name, source)
    limits = _Limits(max_rows, max_columns, max_cells)
    if not raw.strip():
        raise ValidationError(source, [Problem("the file is empty")])
    try:
        if fmt == "parquet":
            return _read_parquet(raw, source, limits)
        if fmt == "jsonl":
            if not limits.unlimited:
                _scan_jsonl(raw, source, limits)
            return pd.read_json(io.BytesIO(raw), lines=True, dtype=False)
        return _read_csv(raw, source, limits)
    except ValidationError:
        raise
    except (pa.ArrowException, ValueError, UnicodeDecodeError) as exc:
        raise ValidationError(source, [Problem(f"cannot be read as {fmt}: {exc}")]) from None


def _read_parquet(raw: bytes, source: str, limits: _Limits) -> pd.DataFrame:
    if raw[:4] != b"PAR1":
        raise ValidationError(
            source, [Problem("not a Parquet file (its first bytes are not 'PAR1')")]
        )
    parquet = pq.ParquetFile(io.BytesIO(raw))
    meta = parquet.metadata
    # A few hundred KiB of Parquet can hold millions of rows: the footer says how many
    # before any page is decompressed. The reader decodes what each row group declares.
    declared = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    limits.check(source, max(meta.num_rows, declared), meta.num_columns)
    frame: pd.DataFrame = parquet.read().to_pandas(types_mapper=_arrow_dtype)
    return frame


def _scan_jsonl(raw: bytes, source: str, limits: _Limits) -> None:
    """Count the rows (non-blank lines) and distinct keys, stopping at the first over a limit."""
    keys: set[str] = set()
    count_keys = limits.columns is not None or limits.cells is not None
    rows = 0
    for line in io.BytesIO(raw):
        if not line.strip():
            continue  # pandas skips blank lines
        rows += 1
        if count_keys:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # pandas names what is wrong with the line when it reads it
            if isinstance(record, dict):
                keys.update(record)
        limits.check(source, rows, len(keys))


def _csv_columns(raw: bytes, source: str) -> int:
    """The number of fields of a CSV file's header, counted without Arrow.

    Arrow's schema of a header costs more than linear time in its columns (15 s for
    400,000 one-letter names), so a header is counted by Python's csv module first.
    """
    text = io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8-sig", errors="replace", newline="")
    try:
        for record in csv.reader(text):
            if record:  # Arrow skips empty lines too
                return len(record)
    except csv.Error as exc:
        raise ValidationError(source, [Problem(f"cannot be read as csv: {exc}")]) from None
    return 0


def _scan_csv(raw: bytes, source: str, limits: _Limits) -> None:
    """Count the columns, then the rows if need be, stopping at the first over a limit."""
    n_columns = _csv_columns(raw, source)
    limits.check(source, 0, n_columns)
    if n_columns == 0:
        return  # no header: Arrow says what is wrong with the file
    # Every row ends at a line break, so counting those bounds the rows at memchr's speed:
    # most files are well within the limits and need no closer look.
    if limits.exceeded(raw.count(b"\n") + raw.count(b"\r") + 1, n_columns) is None:
        return
    # Only the first column is converted (as text, so no type can fail): rows are counted
    # as the parser meets them, in bounded memory.
    names = [f"c{i}" for i in range(n_columns)]
    reader = pa_csv.open_csv(
        io.BytesIO(raw),
        read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1),
        convert_options=pa_csv.ConvertOptions(
            include_columns=names[:1], column_types={names[0]: pa.string()}
        ),
    )
    rows = 0
    for batch in reader:
        rows += batch.num_rows
        limits.check(source, rows, n_columns)


def _read_csv(raw: bytes, source: str, limits: _Limits) -> pd.DataFrame:
    if not limits.unlimited:
        _scan_csv(raw, source, limits)
    header = raw.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    names = [n.strip() for n in header.strip().split(",")]
    table = pa_csv.read_csv(
        io.BytesIO(raw),
        # Arrow converts each block column by column and keeps every (block, column) chunk;
        # with its default 1 MiB blocks a file twice as wide has twice the blocks of twice
        # the columns. Blocks of at least 8 KiB per column keep the chunks' count (and
        # their fixed cost) proportional to the cells.
        read_options=pa_csv.ReadOptions(block_size=max(_CSV_BLOCK_BYTES, 8192 * len(names))),
        convert_options=pa_csv.ConvertOptions(
            column_types={c: pa.string() for c in _TEXT_COLUMNS if c in names},
            null_values=[""],
            strings_can_be_null=True,
        ),
    )
    frame: pd.DataFrame = table.to_pandas(types_mapper=_arrow_dtype)
    return frame


def _arrow_dtype(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    # Arrow-backed columns keep a missing cell (null) apart from an explicit NaN, which
    # numpy floats cannot: the first is an error, the second a value to quarantine.
    return None if pa.types.is_timestamp(arrow_type) else pd.ArrowDtype(arrow_type)


def parse_batch(
    frame: pd.DataFrame,
    source: str,
    twin: str | None = None,
    earliest_us: int = TimeWindow().earliest_us,
) -> Batch:
    """Validate a raw frame as a signal or decision batch; raise :class:`ValidationError`.

    ``twin`` fills a missing ``twin_id`` column, or must match it where present. A time
    before ``earliest_us`` (microseconds since 1970; the default is 1970 itself) is an
    error; times in the future are the screens' business (they quarantine them).
    """
    frame = frame.rename(columns=lambda c: str(c).strip())
    if len(frame) == 0:
        raise ValidationError(source, [Problem("the file has a header but no data rows")])
    columns = set(frame.columns)
    # Index.duplicated hashes each name once: counting each name in the list of all
    # names costs columns squared, minutes for a decisions file of 20,000 features.
    duplicated = sorted(set(frame.columns[frame.columns.duplicated()]))
    if duplicated:
        raise ValidationError(source, [Problem(f"duplicated column(s) {duplicated}")])
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    problems: list[Problem] = []
    twin_ids = _twin_ids(frame, twin, problems)
    if {"time", "channel", "value"} <= columns:
        batch: Batch = _signals(frame, twin_ids, rows, source, problems, earliest_us)
    elif {"item_id", "label"} <= columns:
        batch = _decisions(frame, twin_ids, rows, source, problems)
    else:
        have = ", ".join(map(str, frame.columns))
        missing_sig = [c for c in SIGNAL_COLUMNS[1:] if c not in columns]
        missing_dec = [c for c in DECISION_COLUMNS[1:] if c not in columns]
        raise ValidationError(
            source,
            [
                Problem(
                    f"missing column(s): signals need {missing_sig} (twin_id,time,channel,value) "
                    f"or decisions need {missing_dec} (twin_id,item_id,<features>,label); "
                    f"the file has: {have}"
                )
            ],
        )
    if problems:
        raise ValidationError(source, problems)
    return batch


def _matches(text: pd.Series, pattern: str) -> np.ndarray:
    """Regex match per row, in Arrow's vectorised engine (Python's re is ~10x slower)."""
    found = pa_compute.match_substring_regex(pa.array(text, type=pa.string()), pattern)
    return np.asarray(found.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _report(
    problems: list[Problem],
    mask: np.ndarray,
    rows: np.ndarray,
    column: str,
    describe: pd.Series,
    message: str,
) -> None:
    """Add one problem per offending row (at most a few; the count says how many)."""
    if not mask.any():
        return
    shown = np.flatnonzero(mask)[:5]
    for i in shown:
        problems.append(Problem(f"{message}: {describe.iloc[i]!r}", int(rows[i]), column))
    extra = int(mask.sum()) - len(shown)
    if extra:
        problems.append(Problem(f"{message} in {extra} more row(s)", None, column))


def _text(frame: pd.DataFrame, column: str, rows: np.ndarray, problems: list[Problem]) -> pd.Series:
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        _report(problems, missing, rows, column, values, "missing value")
    text = values.astype(str).str.strip()
    return text.where(~missing, "")


def _twin_ids(frame: pd.DataFrame, twin: str | None, problems: list[Problem]) -> pd.Series:
    rows = np.arange(1, len(frame) + 1, dtype=np.int64)
    if "twin_id" not in frame.columns:
        if twin is None:
            problems.append(
                Problem("missing column 'twin_id': add it or name the twin (--twin ID)")
            )
        return pd.Series([twin or ""] * len(frame), dtype=str)
    ids = _text(frame, "twin_id", rows, problems)
    bad = ~_matches(ids, TWIN_ID_PATTERN.pattern) & (ids != "").to_numpy()
    _report(problems, bad, rows, "twin_id", ids, "invalid twin id")
    if twin is not None:
        other = (ids != twin).to_numpy() & ~bad
        _report(problems, other, rows, "twin_id", ids, f"twin_id differs from --twin {twin!r}")
    return ids


def _numeric(
    values: pd.Series, column: str, rows: np.ndarray, problems: list[Problem]
) -> np.ndarray:
    """Float64 values; NaN/inf literals pass (screening quarantines them), text does not."""
    if isinstance(values.dtype, np.dtype) and values.dtype.kind == "f":
        return values.to_numpy(dtype=np.float64)  # NaN here is a value, not a gap
    missing = values.isna().to_numpy()
    if pd.api.types.is_bool_dtype(values.dtype):
        _report(problems, np.ones(len(values), bool), rows, column, values, "not a number")
        return np.zeros(len(values))
    if pd.api.types.is_numeric_dtype(values.dtype) and not missing.any():
        return values.to_numpy(dtype=np.float64, na_value=np.nan)
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    if missing.any():
        _report(problems, missing, rows, column, values, "missing value")
    text = values.astype(str).str.strip().str.lower()
    literal_nan = text.isin(["nan", "+nan", "-nan"]).to_numpy()
    bad = np.isnan(numbers) & ~missing & ~literal_nan
    _report(problems, bad, rows, column, values, "not a number")
    return numbers


def _times(values: pd.Series, rows: np.ndarray, problems: list[Problem]) -> np.ndarray:
    """int64 microseconds UTC. Naive times are UTC; naive and zoned may not be mixed."""
    if isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(
        values.dtype
    ):
        index = pd.DatetimeIndex(values)
        parsed = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
        missing = np.asarray(parsed.isna())
        _report(problems, missing, rows, "time", values, "missing time")
        return np.asarray(parsed.as_unit("us").asi8, dtype=np.int64)
    fast = _arrow_times(values)
    if fast is not None:
        return fast
    # Slow path, only for batches that are not clean ISO-8601: find and name the rows.
    missing = values.isna().to_numpy()
    _report(problems, missing, rows, "time", values, "missing time")
    text = values.astype(str).str.strip()
    # pandas reads the words "now" and "today" as the clock's time: a reading that is
    # stored as whenever it arrived, different at every retry, so words are refused.
    words = ~_matches(text, r"^[0-9]") & ~missing
    _report(problems, words, rows, "time", values, "a word, not an ISO-8601 time")
    parsed = pd.DatetimeIndex(
        pd.to_datetime(text.where(~missing & ~words), format="ISO8601", utc=True, errors="coerce")
    )
    bad = np.asarray(parsed.isna()) & ~missing & ~words
    _report(problems, bad, rows, "time", values, "not an ISO-8601 time")
    valid = ~missing & ~bad & ~words
    zoned = _matches(text, _TZ_SUFFIX) & valid
    n_zoned, n_valid = int(zoned.sum()), int(valid.sum())
    if 0 < n_zoned < n_valid:
        # Name the rarer kind: those are most likely the rows that are wrong.
        with_offset = n_zoned * 2 <= n_valid
        odd = zoned if with_offset else valid & ~zoned
        kind, other = ("with", "without") if with_offset else ("without", "with")
        _report(
            problems,
            odd,
            rows,
            "time",
            values,
            f"time {kind} a UTC offset among times {other} one (mixing is ambiguous)",
        )
    return np.asarray(parsed.as_unit("us").asi8, dtype=np.int64)


def _arrow_times(values: pd.Series) -> np.ndarray | None:
    """Clean ISO-8601 strings, all zoned or all naive, parsed by Arrow (10x pandas); else None."""
    try:
        strings = pa.array(values, type=pa.string())
    except (pa.ArrowException, TypeError):
        return None
    if strings.null_count:
        return None
    for arrow_type in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            parsed = strings.cast(arrow_type)
        except pa.ArrowInvalid:
            continue
        return np.asarray(parsed.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)
    return None


def _categorical(values: pd.Series) -> tuple[pd.Categorical, np.ndarray]:
    """Strings as a categorical with sorted plain-str categories, and its codes."""
    codes, uniques = pd.factorize(values, sort=True)
    categories = pd.Index([str(u) for u in uniques], dtype=object)
    return pd.Categorical.from_codes(codes, categories=categories), codes


def _signals(
    frame: pd.DataFrame,
    twin_ids: pd.Series,
    rows: np.ndarray,
    source: str,
    problems: list[Problem],
    earliest_us: int,
) -> SignalBatch:
    extra = [c for c in frame.columns if c not in SIGNAL_COLUMNS]
    if extra:
        problems.append(
            Problem(f"unexpected column(s) {extra} in a signals file (twin_id,time,channel,value)")
        )
    channel = _text(frame, "channel", rows, problems)
    bad_channel = ~_matches(channel, CHANNEL_PATTERN.pattern)
    bad_channel &= (channel != "").to_numpy()
    _report(problems, bad_channel, rows, "channel", channel, "invalid channel name")
    value = _numeric(frame["value"], "value", rows, problems)
    t = _times(frame["time"], rows, problems)
    if len(t) == len(frame):
        early = (t < earliest_us) & (t != _NAT)  # unparsed times are reported already
        _report(
            problems,
            early,
            rows,
            "time",
            frame["time"],
            f"time before {micros_iso(earliest_us)}, the earliest plausible time",
        )
    if problems:
        return SignalBatch(pd.DataFrame(), source)
    twin_cat, twin_codes = _categorical(twin_ids)
    channel_cat, channel_codes = _categorical(channel)
    # Canonical order (twin, channel, time, value): hashing, duplicate search and the
    # primary-key insert all want it, so it is paid for once here.
    order = canonical_order(twin_codes, channel_codes, t, value)
    out = pd.DataFrame(
        {"twin_id": twin_cat, "channel": channel_cat, "t": t, "value": value, "row": rows}
    )
    if order is not None:
        out = out.iloc[order].reset_index(drop=True)
    return SignalBatch(out, source)


def _decisions(
    frame: pd.DataFrame,
    twin_ids: pd.Series,
    rows: np.ndarray,
    source: str,
    problems: list[Problem],
) -> DecisionBatch:
    item = _text(frame, "item_id", rows, problems)
    label = _text(frame, "label", rows, problems)
    names = tuple(str(c) for c in frame.columns if c not in ("twin_id", *DECISION_COLUMNS))
    if not names:
        problems.append(Problem("a decisions file needs at least one feature column"))
    features = np.zeros((len(frame), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        features[:, j] = _numeric(frame[name], name, rows, problems)
    out = pd.DataFrame(
        {
            "twin_id": twin_ids.to_numpy(dtype=object),
            "item_id": item.to_numpy(dtype=object),
            "label": label.to_numpy(dtype=object),
            "row": rows,
        }
    )
    return DecisionBatch(out, features, names, source)


def load_batch(
    path: Path | str, twin: str | None = None, earliest_us: int = TimeWindow().earliest_us
) -> Batch:
    """Read and validate a file; the error names the file, row and column."""
    return parse_batch(read_table(path), str(path), twin, earliest_us)
