"""Nightscout: the ``entries``, ``treatments`` and ``devicestatus`` collections, from JSON
files (``/api/v1/entries.json`` saved, or a ``mongoexport --jsonArray``) or from a site.

- entries: ``type`` ``sgv`` (sensor glucose) -> ``glucose``, ``mbg`` (meter) ->
  ``glucose_meter``; Nightscout stores glucose in mg/dL whatever its display unit. An
  ``sgv`` below 39 is a Dexcom error code, 39 is the "LOW" marker: both are quarantined.
  Time: ``date`` (milliseconds since 1970, UTC), else ``dateString``.
- treatments: ``insulin`` (any bolus) -> ``insulin``; ``carbs`` -> ``carbs``; a ``Temp
  Basal`` -> ``basal_insulin``, the units it delivers (rate x duration, cut short by the
  next temp basal) at its start. Time: ``created_at`` (ISO-8601 with offset), else
  ``timestamp`` / ``mills``.
- devicestatus: insulin on board -> ``iob``, carbs on board -> ``cob`` (OpenAPS, AAPS and
  Loop uploaders).

:func:`fetch` reads the same collections from a site's API with an access token (or the
API secret), page by page.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from twinkit.core.errors import Problem, TwinkitError
from twinkit.importers.base import Imported, Rows, add_problem, check_problems, read_text, refuse

FORMAT = "nightscout"
_BOLUS_TYPES = ("bolus", "smb", "correction", "meal", "snack", "combo")
_UNITS = {
    "glucose": "mg/dL",
    "glucose_meter": "mg/dL",
    "insulin": "U",
    "carbs": "g",
    "basal_insulin": "U",
    "iob": "U",
    "cob": "g",
}


def _collection(docs: list[Any]) -> str:
    """Which collection a list of documents is, from the fields its documents have."""
    for doc in docs[:50]:
        if not isinstance(doc, dict):
            continue
        if "sgv" in doc or "mbg" in doc or doc.get("type") in ("sgv", "mbg", "cal"):
            return "entries"
        if "eventType" in doc:
            return "treatments"
        if any(k in doc for k in ("openaps", "loop", "pump", "uploader")):
            return "devicestatus"
    return "unknown"


def _time_us(doc: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = doc.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            return round(float(value) * 1000)  # milliseconds -> microseconds
        if isinstance(value, str):
            try:
                stamp = pd.Timestamp(value)
            except (ValueError, TypeError):
                continue  # the next field may be readable
            if stamp.tzinfo is None:
                stamp = stamp.tz_localize("UTC")  # Nightscout writes UTC
            return int(stamp.tz_convert("UTC").value) // 1000  # .value is always in ns
    return None


def _number(doc: dict[str, Any], *path: str) -> float | None:
    value: Any = doc
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse(
    docs: list[Any], source: str, collection: str | None = None, rows: Rows | None = None
) -> tuple[Rows, dict[str, Any]]:
    """Rows from one collection's documents (``collection`` guessed when None)."""
    rows = rows if rows is not None else Rows()  # an empty Rows is falsy (len 0)
    kind = collection or _collection(docs)
    notes: dict[str, Any] = {}
    problems: list[Problem] = []
    if kind == "unknown":
        refuse(source, "not Nightscout entries, treatments or devicestatus documents")
    skipped: dict[str, int] = {}
    temp_basals: list[tuple[int, float, float, int]] = []
    time_keys = (
        ("date", "dateString", "sysTime")
        if kind == "entries"
        else ("created_at", "timestamp", "mills", "date")
    )
    for n, doc in enumerate(docs):
        where = f"{kind}[{n}]"
        if not isinstance(doc, dict):
            add_problem(problems, f"{where} is not a JSON object", n + 1, None)
            continue
        t = _time_us(doc, time_keys)
        if t is None:
            add_problem(
                problems, f"{where} has no readable time ({'/'.join(time_keys)})", n + 1, where
            )
            continue
        if kind == "entries":
            entry_type = str(doc.get("type", "sgv" if "sgv" in doc else ""))
            field, channel = ("sgv", "glucose") if entry_type == "sgv" else ("mbg", "glucose_meter")
            if entry_type not in ("sgv", "mbg"):
                skipped[entry_type or "untyped"] = skipped.get(entry_type or "untyped", 0) + 1
                continue
            value = _number(doc, field)
            if value is None:
                add_problem(problems, f"{where}.{field} is not a number", n + 1, f"{where}.{field}")
                continue
            flag = None
            if channel == "glucose" and value < 39:
                flag = f"Dexcom error code {value:g} (not a glucose value)"
            elif channel == "glucose" and value == 39:
                flag = "sensor marker LOW (below 40 mg/dL); stored as 39 mg/dL if released"
            rows.add(t, channel, value, n + 1, flag)
        elif kind == "treatments":
            event = str(doc.get("eventType", ""))
            took = False
            insulin = _number(doc, "insulin")
            if insulin is not None and insulin > 0:
                rows.add(t, "insulin", insulin, n + 1)
                took = True
            carbs = _number(doc, "carbs")
            if carbs is not None and carbs > 0:
                rows.add(t, "carbs", carbs, n + 1)
                took = True
            if event.lower() == "temp basal":
                rate = _number(doc, "absolute")
                rate = rate if rate is not None else _number(doc, "rate")
                minutes = _number(doc, "duration")
                if rate is None or minutes is None:
                    add_problem(
                        problems, f"{where}: a temp basal without a rate or duration", n + 1, where
                    )
                    continue
                temp_basals.append((t, rate, minutes, n + 1))
                took = True
            if not took:
                skipped[event or "untyped"] = skipped.get(event or "untyped", 0) + 1
        else:
            iob = _number(doc, "openaps", "iob", "iob")
            iob = iob if iob is not None else _number(doc, "loop", "iob", "iob")
            cob = _number(doc, "openaps", "suggested", "COB")
            cob = cob if cob is not None else _number(doc, "loop", "cob", "cob")
            if iob is not None:
                rows.add(t, "iob", iob, n + 1)
            if cob is not None:
                rows.add(t, "cob", cob, n + 1)
            if iob is None and cob is None:
                skipped["no iob/cob"] = skipped.get("no iob/cob", 0) + 1
    check_problems(source, problems)
    temp_basals.sort()
    for i, (t, rate, minutes, line) in enumerate(temp_basals):
        end = t + int(minutes * 60e6)
        if i + 1 < len(temp_basals):
            end = min(end, temp_basals[i + 1][0])
        rows.add(t, "basal_insulin", round(rate * (end - t) / 3600e6, 4), line)
    if temp_basals:
        notes["temp_basals"] = len(temp_basals)
    if skipped:
        notes[f"skipped_{kind}"] = skipped
    notes.setdefault("collections", []).append(kind)
    return rows, notes


def read(paths: str | list[str]) -> Imported:
    """Read Nightscout JSON files (a JSON array, or one document per line)."""
    rows = Rows()
    notes: dict[str, Any] = {}
    sources = [paths] if isinstance(paths, str) else list(paths)
    for path in sources:
        docs = _load(read_text(path, path), path)
        _, found = parse(docs, path, rows=rows)
        _merge(notes, found)
    return rows.build(FORMAT, "Nightscout JSON", ", ".join(sources), _UNITS, notes)


def _merge(notes: dict[str, Any], found: dict[str, Any]) -> None:
    for key, value in found.items():
        if isinstance(value, list):
            notes.setdefault(key, []).extend(value)
        elif isinstance(value, dict):
            into = notes.setdefault(key, {})
            for k, v in value.items():
                into[k] = into.get(k, 0) + v
        else:
            notes[key] = notes.get(key, 0) + value


def _load(text: str, source: str) -> list[Any]:
    if text.lstrip().startswith("["):
        docs = _decode(text, source, 0)
    else:  # one document a line
        docs = [
            _decode(line, source, n) for n, line in enumerate(text.splitlines()) if line.strip()
        ]
    if not isinstance(docs, list):
        refuse(source, "expected a JSON array of documents")
    return docs


def _decode(text: str, source: str, lines_before: int) -> Any:
    """JSON text that starts after ``lines_before`` lines of the file; refused naming the
    file's line where it is not JSON."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        refuse(
            source,
            f"not valid JSON: {exc.msg} (a truncated file?)",
            lines_before + exc.lineno,
            f"char {exc.colno}",
        )


class NightscoutError(TwinkitError):
    """A Nightscout site that cannot be read: unreachable, refusing the token, not JSON."""


def fetch(
    url: str,
    *,
    token: str | None = None,
    api_secret: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    page: int = 1000,
    timeout_s: float = 30.0,
) -> Imported:
    """Read entries, treatments and devicestatus of a Nightscout site between ``since`` and
    ``until`` (default: the last 90 days), with an access token (``token``, sent as the
    ``token`` parameter) or the API secret (sent hashed, as Nightscout expects)."""
    until = until or datetime.now(UTC)
    since = since or (until - pd.Timedelta(days=90).to_pytimedelta())
    base = url.rstrip("/")
    headers = {"Accept": "application/json"}
    if api_secret:
        headers["api-secret"] = hashlib.sha1(api_secret.encode()).hexdigest()
    auth = {"token": token} if token else {}
    status = _get(f"{base}/api/v1/status.json", auth, headers, timeout_s)
    version = str(status.get("version", "unknown")) if isinstance(status, dict) else "unknown"
    rows = Rows()
    notes: dict[str, Any] = {"site": base, "since": since.isoformat(), "until": until.isoformat()}
    lo_ms, hi_ms = int(since.timestamp() * 1000), int(until.timestamp() * 1000)
    entries = _pages(
        f"{base}/api/v1/entries.json", "date", lo_ms, hi_ms, auth, headers, page, timeout_s
    )
    _merge(notes, parse(entries, base, "entries", rows)[1])
    lo_iso, hi_iso = _iso(since), _iso(until)
    for name in ("treatments", "devicestatus"):
        docs = _pages(
            f"{base}/api/v1/{name}.json",
            "created_at",
            lo_iso,
            hi_iso,
            auth,
            headers,
            page,
            timeout_s,
        )
        _merge(notes, parse(docs, base, name, rows)[1])
    return rows.build(FORMAT, f"Nightscout API (server {version})", base, _UNITS, notes)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _pages(
    url: str,
    key: str,
    lo: int | str,
    hi: int | str,
    auth: dict[str, str],
    headers: dict[str, str],
    page: int,
    timeout_s: float,
) -> list[Any]:
    """All documents with ``lo <= key <= hi``: Nightscout answers newest first, so each
    page asks for those at or before the oldest one seen (ids drop the repeats)."""
    seen: set[str] = set()
    out: list[Any] = []
    upper = hi
    while True:
        params = {f"find[{key}][$gte]": lo, f"find[{key}][$lte]": upper, "count": page} | auth
        docs = _get(url, params, headers, timeout_s)
        if not isinstance(docs, list):
            raise NightscoutError(f"{url}: expected a JSON array, got {type(docs).__name__}")
        fresh = [d for d in docs if isinstance(d, dict) and str(d.get("_id", id(d))) not in seen]
        if not fresh:
            return out
        seen.update(str(d.get("_id", id(d))) for d in fresh)
        out.extend(fresh)
        if len(docs) < page:
            return out
        oldest = [d[key] for d in docs if isinstance(d, dict) and d.get(key) is not None]
        if not oldest:
            return out
        upper = min(oldest)


def _get(url: str, params: dict[str, Any], headers: dict[str, str], timeout_s: float) -> Any:
    full = f"{url}?{urllib.parse.urlencode(params)}" if params else url
    shown = url  # never the token
    request = urllib.request.Request(full, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        hint = " (check the token or API secret)" if exc.code in (401, 403) else ""
        raise NightscoutError(f"{shown}: the site answered {exc.code} {exc.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NightscoutError(f"{shown}: cannot reach the site ({reason})") from None
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        raise NightscoutError(f"{shown}: the answer is not JSON") from None
