"""`twinkit import` and what every import shares: options checked, channels chosen, large
imports stored in pieces in one transaction, refusals that store nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from twinkit.cli.testing import run
from twinkit.core.errors import TwinkitError
from twinkit.engine import TwinEngine, importing

SnapshotFn = Callable[[TwinEngine], dict[str, list[tuple[Any, ...]]]]  # conftest `snapshot`


def readings(n: int) -> list[tuple[datetime, Any]]:
    return [(datetime(2026, 6, 1) + timedelta(minutes=5 * i), 100 + i % 30) for i in range(n)]


def test_the_command_imports_and_reports(
    capsys: pytest.CaptureFixture[str], files: ModuleType, tmp_path: Path
) -> None:
    db = str(tmp_path / "cli.db")
    path = files.dexcom(tmp_path / "clarity.csv", [*readings(20), (datetime(2026, 6, 2), "Low")])
    assert run(capsys, "twin", "create", "p1", "--kind", "state", "--db", db)[0] == 0
    code, out, err = run(
        capsys, "import", "dexcom", str(path), "--twin", "p1", "--tz", "Europe/Berlin", "--db", db
    )
    assert code == 0, err
    assert "21 readings, 20 stored, 1 quarantined" in out
    assert "Dexcom G6 Mobile App" in out
    assert "device_flag" in out
    code, out, _ = run(capsys, "import", "dexcom", str(path), "--twin", "p1", "--tz",
                       "Europe/Berlin", "--json", "--db", db)  # fmt: skip
    assert code == 0
    assert json.loads(out)["already_ingested"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["import", "garmin", "x.fit", "--twin", "p1"], "unknown import format 'garmin'"),
        (["import", "dexcom", "F", "--twin", "p1", "--person", "7"], "does not take person"),
        (["import", "dexcom", "F", "--twin", "p1"], "name the zone"),
        (["import", "dexcom", "F", "--twin", "nobody", "--tz", "UTC"], "'nobody' names no twin"),
        (["import", "dexcom", "https://ns.example", "--twin", "p1"], "only nightscout imports"),
    ],
)
def test_the_command_refuses_with_the_reason(
    capsys: pytest.CaptureFixture[str],
    files: ModuleType,
    tmp_path: Path,
    args: list[str],
    message: str,
) -> None:
    db = str(tmp_path / "cli.db")
    path = files.dexcom(tmp_path / "clarity.csv", readings(3))
    run(capsys, "twin", "create", "p1", "--kind", "state", "--db", db)
    code, _, err = run(capsys, *[str(path) if a == "F" else a for a in args], "--db", db)
    assert code == 1
    assert message in " ".join(err.split())


def test_a_large_import_is_stored_in_pieces_in_one_transaction(
    engine: TwinEngine,
    files: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    snapshot: SnapshotFn,
) -> None:
    monkeypatch.setattr(importing, "CHUNK_ROWS", 8)
    engine.create_twin("p1", "state")
    path = files.dexcom(tmp_path / "big.csv", readings(20))
    result = engine.import_data("dexcom", path, "p1", tz="UTC")
    assert [b.n_stored for b in result.batches] == [8, 8, 4]
    parts = [
        e.payload["import"]["part"] for e in engine.history("p1") if e.event == "batch_ingested"
    ]
    assert parts == ["1/3", "2/3", "3/3"]
    assert len(engine.signals("p1")) == 20
    # a bad row in the last piece stores none of the pieces
    engine.create_twin("p2", "state")
    bad = files.dexcom(tmp_path / "bad.csv", [*readings(19), (datetime(2026, 6, 2), "n/a")])
    before = snapshot(engine)
    with pytest.raises(TwinkitError, match="not a glucose value: 'n/a'"):
        engine.import_data("dexcom", bad, "p2", tz="UTC")
    assert snapshot(engine) == before


def test_only_keeps_the_named_channels_and_refuses_unknown_ones(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    engine.create_twin("p1", "state")
    path = files.dexcom(tmp_path / "x.csv", readings(4), carbs=[(datetime(2026, 6, 1), 30)])
    result = engine.import_data("dexcom", path, "p1", only=["glucose"], tz="UTC")
    assert result.left_out == {"carbs": 1}
    with pytest.raises(TwinkitError, match="no channel 'steps' in the file"):
        engine.import_data("dexcom", path, "p1", only=["steps"], tz="UTC")


def test_a_decision_twin_takes_no_readings(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    engine.create_twin("d1", "decision")
    path = files.dexcom(tmp_path / "x.csv", readings(2))
    with pytest.raises(TwinkitError, match="is a decision twin: readings go to a state twin"):
        engine.import_data("dexcom", path, "d1", tz="UTC")


def test_a_large_apple_health_export_reports_the_bytes_it_has_read(
    engine: TwinEngine, files: ModuleType, tmp_path: Path
) -> None:
    records = [("HeartRate", "count/min", f"2026-06-01 {h:02d}:{m:02d}:00 +0200", 60 + m % 30)
               for h in range(24) for m in range(60)]  # fmt: skip
    path = files.apple_health(tmp_path / "export.xml", records)
    engine.create_twin("p1", "state")
    seen: list[tuple[str, int, int]] = []
    result = engine.import_data(
        "apple-health",
        path,
        "p1",
        progress=lambda what, done, total: seen.append((what, done, total)),
    )
    assert result.n_stored == 24 * 60
    size = path.stat().st_size
    assert seen and all(total == size for _, _, total in seen)
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and done[-1] == size
    assert "progress" not in next(
        e.payload["import"]["options"] for e in engine.history("p1") if e.event == "batch_ingested"
    )
    # a format read in a moment takes the callback and ignores it
    files.dexcom(tmp_path / "c.csv", readings(3))
    engine.import_data("dexcom", tmp_path / "c.csv", "p1", tz="UTC", progress=lambda *a: None)
