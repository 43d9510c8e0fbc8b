"""Nightscout: entries, treatments and devicestatus files (well-formed, the other unit,
sensor markers and error codes, local offsets across a DST change, truncated files), and
the site client (paging, the token or API secret, a refused token)."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest

from twinkit.core.errors import ValidationError
from twinkit.engine import TwinEngine
from twinkit.importers import nightscout
from twinkit.importers.nightscout import NightscoutError

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`

BERLIN = ZoneInfo("Europe/Berlin")
DAY = datetime(2026, 6, 1, tzinfo=UTC)


def utc_every(start: datetime, minutes: int, n: int) -> list[datetime]:
    return [start + timedelta(minutes=minutes * i) for i in range(n)]


def us(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000)


def stored(engine: TwinEngine, twin: str, channel: str = "glucose") -> pd.Series:
    return engine.signals(twin)[channel].dropna()


def mbg(i: int, when: datetime, value: float) -> dict[str, Any]:
    ms = int(when.timestamp() * 1000)
    return {"_id": f"m{i:06d}", "type": "mbg", "mbg": value, "date": ms, "device": "Contour"}


def therapy(files: ModuleType) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A morning's treatments and loop statuses on :data:`DAY` (UTC)."""
    at = DAY.replace
    treatments = [
        files.nightscout_treatment(0, at(hour=7), "Correction Bolus", insulin=1.5),
        files.nightscout_treatment(1, at(hour=8), "Meal Bolus", insulin=4.5, carbs=45),
        files.nightscout_treatment(2, at(hour=9), "Carb Correction", carbs=15),
        # 1.2 U/h for 30 minutes, cut short after 20 by the next: 0.4 U
        files.nightscout_treatment(3, at(hour=10), "Temp Basal", absolute=1.2, duration=30),
        files.nightscout_treatment(4, at(hour=10, minute=20), "Temp Basal", rate=0.6, duration=60),
        files.nightscout_treatment(5, at(hour=11), "Note", notes="walked the dog"),
        files.nightscout_treatment(6, at(hour=11, minute=30), "Site Change"),
    ]
    statuses = [
        files.nightscout_devicestatus(0, at(hour=10), "openaps", iob=1.5, cob=20),
        files.nightscout_devicestatus(1, at(hour=10, minute=5), "loop", iob=0.8, cob=12),
    ]
    return treatments[::-1], statuses[::-1]  # newest first, as the API answers


def test_well_formed_files_land_on_their_channels_in_utc(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(DAY, 5, 24)
    values = [100 + 3 * i for i in range(24)]
    entries = files.nightscout_entries(list(zip(instants, values, strict=True)))
    entries.append(mbg(0, DAY + timedelta(minutes=32), 118))
    treatments, statuses = therapy(files)
    paths = [
        files.nightscout_file(tmp_path / "entries.json", entries),
        files.nightscout_file(tmp_path / "treatments.json", treatments),
        files.nightscout_file(tmp_path / "devicestatus.json", statuses, ndjson=True),
    ]
    engine.create_twin("p1", "state")
    result = engine.import_data("nightscout", paths, "p1")
    assert result.channels == {
        "glucose": 24,
        "glucose_meter": 1,
        "insulin": 2,
        "carbs": 2,
        "basal_insulin": 2,
        "iob": 2,
        "cob": 2,
    }
    assert (result.n_stored, result.n_quarantined) == (35, 0)
    assert result.conversions == {}
    glucose = stored(engine, "p1")
    assert list(glucose.index) == [pd.Timestamp(t) for t in instants]
    assert glucose.tolist() == values
    assert stored(engine, "p1", "glucose_meter").to_dict() == {
        pd.Timestamp("2026-06-01 00:32Z"): 118.0
    }
    assert stored(engine, "p1", "insulin").to_dict() == {
        pd.Timestamp("2026-06-01 07:00Z"): 1.5,
        pd.Timestamp("2026-06-01 08:00Z"): 4.5,
    }
    assert stored(engine, "p1", "carbs").to_dict() == {
        pd.Timestamp("2026-06-01 08:00Z"): 45.0,
        pd.Timestamp("2026-06-01 09:00Z"): 15.0,
    }
    # the units delivered at each temp basal's start: the first cut short by the second
    assert stored(engine, "p1", "basal_insulin").to_dict() == {
        pd.Timestamp("2026-06-01 10:00Z"): 0.4,
        pd.Timestamp("2026-06-01 10:20Z"): 0.6,
    }
    assert stored(engine, "p1", "iob").to_dict() == {
        pd.Timestamp("2026-06-01 10:00Z"): 1.5,  # OpenAPS
        pd.Timestamp("2026-06-01 10:05Z"): 0.8,  # Loop
    }
    assert stored(engine, "p1", "cob").tolist() == [20.0, 12.0]
    assert result.notes["temp_basals"] == 2
    assert result.notes["skipped_treatments"] == {"Note": 1, "Site Change": 1}
    assert result.notes["collections"] == ["entries", "treatments", "devicestatus"]
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["format"] == "nightscout"
    assert entry.payload["import"]["units"]["glucose"] == "mg/dL"
    again = engine.import_data("nightscout", paths, "p1")
    assert again.already_ingested


def test_mg_dl_values_convert_for_a_twin_in_mmol(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(DAY, 5, 12)
    entries = files.nightscout_entries([(t, 180) for t in instants])
    entries.append(mbg(0, DAY, 90))
    path = files.nightscout_file(tmp_path / "entries.json", entries)
    engine.create_twin("p1", "state", channels=["glucose:mmol/L:1:40"])
    result = engine.import_data("nightscout", path, "p1")
    assert result.conversions == {"glucose": "mg/dL -> mmol/L"}
    assert result.left_out == {"glucose_meter": 1}
    glucose = stored(engine, "p1")
    assert len(glucose) == 12
    assert np.allclose(glucose.to_numpy(), 180 / 18.0156)


def test_the_low_marker_and_dexcom_error_codes_are_quarantined_with_reasons(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    values = [120, 39, 5, 110, 1, 40]
    entries = files.nightscout_entries(list(zip(utc_every(DAY, 5, 6), values, strict=True)))
    path = files.nightscout_file(tmp_path / "entries.json", entries)
    readings = nightscout.read(str(path))
    flagged = {float(v): f for v, f in zip(readings.value, readings.flag, strict=True) if f}
    assert sorted(flagged) == [1.0, 5.0, 39.0]
    engine.create_twin("p1", "state")
    result = engine.import_data("nightscout", path, "p1")
    assert (result.n_stored, result.n_quarantined) == (3, 3)
    assert stored(engine, "p1").tolist() == [120, 110, 40]  # 40 is a reading, not a marker
    held = {float(r["record"]["value"]): r for r in engine.quarantine("p1")}
    assert sorted(held) == [1.0, 5.0, 39.0]
    assert "sensor marker LOW" in held[39.0]["reason"]
    assert "Dexcom error code 5 " in held[5.0]["reason"]
    assert "Dexcom error code 1 " in held[1.0]["reason"]
    # the row is the document's place in the file (newest first: 5 mg/dL is the 4th)
    assert held[5.0]["row"] == 4
    assert held[5.0]["record"]["t"] == us(DAY + timedelta(minutes=10))


@pytest.mark.parametrize(
    ("start", "offsets"),
    [(datetime(2026, 3, 29, 0, 0, tzinfo=UTC), {"+01:00", "+02:00"}),
     (datetime(2026, 10, 25, 0, 0, tzinfo=UTC), {"+02:00", "+01:00"})],
)  # fmt: skip
def test_local_offsets_across_a_dst_change_land_in_utc(
    start: datetime, offsets: set[str], files: ModuleType, tmp_path: Path
) -> None:
    instants = utc_every(start, 5, 12 * 3)  # 00:00-03:00 UTC: the change is at 01:00 UTC
    # as some uploaders write them: local wall-clock time with its offset, and no `date`
    stamps = [t.astimezone(BERLIN).isoformat(timespec="milliseconds") for t in instants]
    entries = [
        {"_id": f"e{i}", "type": "sgv", "sgv": 100 + i, "dateString": stamp}
        for i, stamp in enumerate(stamps)
    ]
    assert {s[-6:] for s in stamps} == offsets
    wall = [s[:16] for s in stamps]
    if start.month == 10:
        assert len(set(wall)) == len(wall) - 12  # the repeated hour's wall-clock times
    # the treatments: the same wall-clock time on both sides of the change
    local = "2026-10-25T02:30:00.000" if start.month == 10 else "2026-03-29T01:30:00.000"
    treatments = [
        {"_id": f"t{i}", "eventType": "Correction Bolus", "insulin": i, "created_at": local + zone}
        for i, zone in ((1, "+02:00"), (2, "+01:00"))
    ]
    paths = [
        str(files.nightscout_file(tmp_path / "entries.json", entries)),
        str(files.nightscout_file(tmp_path / "treatments.json", treatments)),
    ]
    readings = nightscout.read(paths)
    glucose = readings.channel == "glucose"
    assert readings.t[glucose].tolist() == [us(t) for t in instants]
    insulin = readings.channel == "insulin"
    base = datetime.fromisoformat(local).replace(tzinfo=UTC)
    assert readings.t[insulin].tolist() == [us(base - timedelta(hours=h)) for h in (2, 1)]


@pytest.mark.parametrize("ndjson", [False, True], ids=["array", "ndjson"])
def test_a_truncated_file_is_refused_naming_the_line_and_stores_nothing(
    ndjson: bool,
    engine: TwinEngine,
    files: ModuleType,
    tmp_path: Path,
    snapshot: SnapshotFn,
) -> None:
    entries = files.nightscout_entries([(t, 100) for t in utc_every(DAY, 5, 10)])
    path = files.nightscout_file(tmp_path / "entries.json", entries, ndjson=ndjson)
    text = path.read_text()
    path.write_text(text[: text.rindex('"sgv"')])  # the last document stops mid-way
    # the array's "[" is line 1, so its 10th document is line 11; NDJSON's is line 10
    line = 10 if ndjson else 11
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(ValidationError, match=rf"line {line}, .*not valid JSON.*truncated"):
        engine.import_data("nightscout", path, "p1")
    assert snapshot(engine) == before


def test_a_corrupted_document_is_refused_naming_it(files: ModuleType, tmp_path: Path) -> None:
    entries = files.nightscout_entries([(t, 100) for t in utc_every(DAY, 5, 5)])
    entries[2]["sgv"] = "1O0"
    path = files.nightscout_file(tmp_path / "entries.json", entries)
    with pytest.raises(ValidationError, match=r"entries\[2\]\.sgv is not a number"):
        nightscout.read(str(path))
    del entries[2]["sgv"], entries[2]["type"]
    entries[2]["date"] = None
    del entries[2]["dateString"]
    path = files.nightscout_file(tmp_path / "entries.json", entries)
    with pytest.raises(ValidationError, match=r"line 3, .*entries\[2\] has no readable time"):
        nightscout.read(str(path))
    path.write_text('{"status": "ok"}\n')
    with pytest.raises(ValidationError, match="not Nightscout entries, treatments"):
        nightscout.read(str(path))


# -- the site ------------------------------------------------------------------------------

TOKEN = "twinkit-3f9a1c2b7d4e5f60"
SECRET = "a-long-api-secret-of-twelve+"


@dataclass
class Site:
    """A Nightscout site's API, answering as the real one does (newest first, ``count``
    documents at most, ``find`` filters), to the token or the hashed API secret only."""

    collections: dict[str, list[dict[str, Any]]]
    url: str = ""
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    #: collections that answer with an error document instead of an array
    broken: set[str] = field(default_factory=set)

    def answer(self, path: str, query: dict[str, str], secret: str | None) -> tuple[int, Any]:
        hashed = hashlib.sha1(SECRET.encode()).hexdigest()
        if query.get("token") != TOKEN and secret != hashed:
            return 401, {"status": 401, "message": "Unauthorized", "description": "Invalid"}
        self.requests.append((path, query))
        if path == "/api/v1/status.json":
            return 200, {"status": "ok", "name": "nightscout", "version": "15.0.2"}
        name = path.removeprefix("/api/v1/").removesuffix(".json")
        if name not in self.collections:
            return 404, {"status": 404, "message": "Not found"}
        if name in self.broken:
            return 200, {"status": 500, "message": "MongoServerError: cursor killed"}
        key = "date" if name == "entries" else "created_at"
        cast: Callable[[str], Any] = int if key == "date" else str
        docs = self.collections[name]
        if f"find[{key}][$gte]" in query:
            docs = [d for d in docs if d[key] >= cast(query[f"find[{key}][$gte]"])]
        if f"find[{key}][$lte]" in query:
            docs = [d for d in docs if d[key] <= cast(query[f"find[{key}][$lte]"])]
        docs = sorted(docs, key=lambda d: d[key], reverse=True)
        return 200, docs[: int(query.get("count", "10"))]


@pytest.fixture
def site(files: ModuleType) -> Iterator[Site]:
    """A site with a day of entries (and meter readings at the same instants as some),
    300 treatments and 130 loop statuses, served on 127.0.0.1."""
    instants = utc_every(DAY, 5, 288)
    entries = files.nightscout_entries([(t, 90 + i % 120) for i, t in enumerate(instants)])
    entries += [mbg(i, t, 100 + i) for i, t in enumerate(instants[::24])]
    treatments = [
        files.nightscout_treatment(i, t, "Correction Bolus", insulin=0.1 * (1 + i % 10))
        for i, t in enumerate(utc_every(DAY, 4, 300))
    ]
    statuses = [
        files.nightscout_devicestatus(i, t, "openaps" if i % 2 else "loop", iob=1.0, cob=i)
        for i, t in enumerate(utc_every(DAY, 10, 130))
    ]
    state = Site({"entries": entries, "treatments": treatments, "devicestatus": statuses})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            code, body = state.answer(parts.path, query, self.headers.get("api-secret"))
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


SINCE, UNTIL = DAY - timedelta(hours=1), DAY + timedelta(days=1)


def test_fetch_pages_through_every_document_exactly_once(site: Site) -> None:
    readings = nightscout.fetch(site.url, token=TOKEN, since=SINCE, until=UNTIL, page=50)
    assert readings.counts() == {
        "glucose": 288,
        "glucose_meter": 12,
        "insulin": 300,
        "iob": 130,
        "cob": 130,
    }
    expected = {
        "glucose": [us(t) for t in utc_every(DAY, 5, 288)],
        "glucose_meter": [us(t) for t in utc_every(DAY, 120, 12)],
        "insulin": [us(t) for t in utc_every(DAY, 4, 300)],
        "iob": [us(t) for t in utc_every(DAY, 10, 130)],
    }
    for channel, times in expected.items():
        assert sorted(readings.t[readings.channel == channel].tolist()) == times, channel
    assert sorted(readings.value[readings.channel == "cob"].tolist()) == list(range(130))
    asked = [(p.rsplit("/", 1)[-1], q) for p, q in site.requests]
    assert {q["count"] for _, q in asked if "count" in q} == {"50"}
    pages = {name: sum(1 for p, _ in asked if p == name) for name, _ in asked}
    # 300 entries, 300 treatments, 130 statuses: 50 a page (less one repeated a page)
    assert pages["entries.json"] >= 7 and pages["treatments.json"] >= 7
    assert pages["devicestatus.json"] >= 3
    assert readings.format == "nightscout"
    assert readings.version == "Nightscout API (server 15.0.2)"
    assert TOKEN not in json.dumps(readings.notes)


def test_fetch_keeps_to_since_and_until(site: Site) -> None:
    since, until = DAY + timedelta(hours=6), DAY + timedelta(hours=12)
    readings = nightscout.fetch(site.url, token=TOKEN, since=since, until=until, page=25)
    glucose = readings.t[readings.channel == "glucose"]
    assert sorted(glucose.tolist()) == [us(t) for t in utc_every(since, 5, 73)]
    insulin = readings.t[readings.channel == "insulin"]
    assert (insulin.min(), insulin.max(), len(insulin)) == (us(since), us(until), 91)


def test_the_engine_imports_a_site_with_the_token_or_the_api_secret(
    engine: TwinEngine, site: Site, snapshot: SnapshotFn
) -> None:
    engine.create_twin("p1", "state")
    result = engine.import_nightscout(site.url, "p1", token=TOKEN, since=SINCE, until=UNTIL)
    assert result.n_stored == 288 + 12 + 300 + 130 + 130
    assert stored(engine, "p1").index[0] == pd.Timestamp(DAY)
    entry = next(e for e in engine.history("p1") if e.event == "batch_ingested")
    assert entry.payload["import"]["options"]["url"] == site.url
    assert TOKEN not in repr(snapshot(engine))  # the ledger keeps the site, not the token
    engine.create_twin("p2", "state", channels=["glucose"])
    result = engine.import_nightscout(site.url, "p2", api_secret=SECRET, since=SINCE, until=UNTIL)
    assert (result.n_stored, sorted(result.left_out)) == (
        288,
        ["cob", "glucose_meter", "insulin", "iob"],
    )
    hashed = hashlib.sha1(SECRET.encode()).hexdigest()
    assert SECRET not in repr(snapshot(engine)) and hashed not in repr(snapshot(engine))


@pytest.mark.parametrize("token", ["not-the-token", None])
def test_a_refused_token_is_a_clear_error_and_stores_nothing(
    token: str | None, engine: TwinEngine, site: Site, snapshot: SnapshotFn
) -> None:
    engine.create_twin("p1", "state")
    before = snapshot(engine)
    with pytest.raises(NightscoutError, match=r"401 .*token") as caught:
        engine.import_nightscout(site.url, "p1", token=token, since=SINCE, until=UNTIL)
    assert snapshot(engine) == before
    assert site.requests == []
    shown = "".join(traceback.format_exception(caught.value))
    assert "127.0.0.1" in shown
    if token:
        assert token not in shown
    assert TOKEN not in shown


def test_a_broken_or_unreachable_site_is_a_clear_error_without_the_token(site: Site) -> None:
    site.broken.add("treatments")
    with pytest.raises(NightscoutError, match=r"treatments.json: expected a JSON array") as caught:
        nightscout.fetch(site.url, token=TOKEN, since=SINCE, until=UNTIL)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(NightscoutError, match="cannot reach the site") as caught:
        nightscout.fetch(f"http://127.0.0.1:{port}", token=TOKEN, timeout_s=5)
    assert TOKEN not in "".join(traceback.format_exception(caught.value))
