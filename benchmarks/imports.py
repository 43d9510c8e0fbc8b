"""Import speed per format on one person-year of data, and the memory of a streamed Apple
Health export of gigabytes.

For each format a file of one person-year is written (shaped as the tests' writers shape
it: ``tests/importers/importer_files.py``), then

- ``read``: the importer alone (file -> readings in UTC with units and flags);
- ``import``: ``TwinEngine.import_data`` into a fresh SQLite store (read, units,
  validation, screening, storage, ledger);
- ``ingest``: the baseline measured in the same run, ``TwinEngine.ingest`` of the same
  readings from twinkit's own long CSV; ``import / ingest`` is the ratio reported.

The Apple Health part writes a synthetic ``export.xml`` of ``--apple-gb`` gigabytes (a
realistic mix: heart rate, active and basal energy, steps, distance; the importer keeps the
first three kinds) and reads it in a child process, sampling its resident memory (VmRSS)
before and during the read, at a tenth of the size and at the size, so that the growth
with file size is visible. Prints JSON. Example::

    python benchmarks/imports.py --apple-gb 2 --json imports.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from twinkit import importers
from twinkit.engine import TwinEngine

WRITERS = Path(__file__).resolve().parents[1] / "tests" / "importers" / "importer_files.py"
START = datetime(2025, 1, 1)
FIVE_MIN_YEAR = 365 * 288


def writers() -> Any:
    spec = importlib.util.spec_from_file_location("importer_files", WRITERS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def glucose_year(rng: np.random.Generator, every_min: int) -> list[tuple[datetime, float]]:
    n = 365 * 24 * 60 // every_min
    walk = np.clip(120 + np.cumsum(rng.normal(0, 2, n)) * 0.3, 45, 380).round()
    return [(START + timedelta(minutes=every_min * i), float(v)) for i, v in enumerate(walk)]


def events(rng: np.random.Generator, per_day: int, scale: float) -> list[tuple[datetime, float]]:
    out = []
    for day in range(365):
        for k in range(per_day):
            when = START + timedelta(days=day, hours=7 + 5 * k, minutes=int(rng.integers(0, 50)))
            out.append((when, round(float(rng.gamma(4, scale)), 1)))
    return out


def wall(readings: list[tuple[datetime, float]], tz: str) -> list[tuple[datetime, float]]:
    """UTC instants as the wall clock of a device in ``tz`` writes them (DST included)."""
    zone = ZoneInfo(tz)
    return [(t.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None), v) for t, v in readings]


def write_files(folder: Path, seed: int) -> dict[str, tuple[list[Path], dict[str, Any]]]:
    """One person-year per format: (paths, importer options)."""
    w = writers()
    rng = np.random.default_rng(seed)
    cgm = glucose_year(rng, 5)
    bolus, carbs = events(rng, 3, 1.5), events(rng, 3, 12)
    out: dict[str, tuple[list[Path], dict[str, Any]]] = {}

    def berlin(readings: list[tuple[datetime, float]]) -> tuple[list[tuple[datetime, float]]]:
        return (wall(readings, "Europe/Berlin"),)

    out["dexcom"] = (
        [
            w.dexcom(
                folder / "clarity.csv",
                *berlin(cgm),
                insulin=berlin(bolus)[0],
                carbs=berlin(carbs)[0],
            )
        ],
        {"tz": "Europe/Berlin"},
    )
    out["libre"] = (
        [
            w.libre(
                folder / "libre.csv",
                *berlin(cgm[::3]),
                insulin=berlin(bolus)[0],
                carbs=berlin(carbs)[0],
            )
        ],
        {"tz": "Europe/Berlin"},
    )
    entries = w.nightscout_entries([(t.replace(tzinfo=UTC), v) for t, v in cgm])
    treatments = [
        {"_id": f"t{i}", "eventType": "Meal Bolus", "created_at": t.isoformat() + "Z",
         "insulin": u, "carbs": c}
        for i, ((t, u), (_, c)) in enumerate(zip(bolus, carbs, strict=True))
    ]  # fmt: skip
    (folder / "entries.json").write_text(json.dumps(entries))
    (folder / "treatments.json").write_text(json.dumps(treatments))
    out["nightscout"] = ([folder / "entries.json", folder / "treatments.json"], {})
    observations = [("2339-0", t.isoformat() + "+00:00", v, "mg/dL") for t, v in cgm]
    out["fhir"] = ([w.fhir_bundle(folder / "bundle.json", observations)], {})
    minutes = folder / "minuteStepsWide_merged.csv"
    with minutes.open("w") as f:
        f.write("Id,ActivityHour," + ",".join(f"Steps{m:02d}" for m in range(60)) + "\n")
        for h in range(365 * 24):
            utc = (START + timedelta(hours=h)).replace(tzinfo=UTC)
            when = utc.astimezone(ZoneInfo("America/New_York")).replace(tzinfo=None)
            hour = when.strftime("%I").lstrip("0") or "12"
            stamp = f"{when.month}/{when.day}/{when.year} {hour}:00:00 {when.strftime('%p')}"
            steps = rng.poisson(8 if 8 <= when.hour < 22 else 0.2, 60)
            f.write(f"1503960366,{stamp}," + ",".join(map(str, steps)) + "\n")
    out["fitbit"] = ([minutes], {"tz": "America/New_York"})
    records = [("HeartRate", "count/min", _apple_time(t), 60 + v % 40) for t, v in cgm]
    out["apple-health"] = ([w.apple_health(folder / "export.xml", records)], {})
    return out


def _apple_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") + " +0100"


def long_csv(readings: importers.Imported, path: Path) -> Path:
    """The readings as twinkit's long CSV (the ``ingest`` baseline's input)."""
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(readings.t, unit="us", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "channel": readings.channel.astype(str),
            "value": readings.value,
        }
    )
    frame.to_csv(path, index=False)
    return path


def time_format(
    name: str, paths: list[Path], options: dict[str, Any], folder: Path
) -> dict[str, Any]:
    files = [str(p) for p in paths]
    started = time.perf_counter()
    readings = importers.read(name, files if len(files) > 1 else files[0], **options)
    read_s = time.perf_counter() - started
    engine = TwinEngine(f"sqlite:///{folder / (name + '.db')}")
    engine.create_twin("p1", "state")
    started = time.perf_counter()
    result = engine.import_data(name, paths, "p1", **options)
    import_s = time.perf_counter() - started
    baseline = TwinEngine(f"sqlite:///{folder / (name + '-ingest.db')}")
    baseline.create_twin("p1", "state")
    csv = long_csv(readings, folder / f"{name}-long.csv")
    started = time.perf_counter()
    baseline.ingest(csv, twin="p1")
    ingest_s = time.perf_counter() - started
    size = sum(p.stat().st_size for p in paths)
    return {
        "format": name,
        "file_mb": round(size / 1e6, 1),
        "readings": len(readings),
        "stored": result.n_stored,
        "quarantined": result.n_quarantined,
        "read_s": round(read_s, 2),
        "read_rows_per_s": round(len(readings) / read_s),
        "import_s": round(import_s, 2),
        "import_rows_per_s": round(len(readings) / import_s),
        "ingest_baseline_s": round(ingest_s, 2),
        "import_over_ingest": round(import_s / ingest_s, 2),
    }


#: (HealthKit type, unit, value range, share of the records) of the synthetic export
_APPLE_MIX = [
    ("HeartRate", "count/min", (55, 150), 0.4),
    ("ActiveEnergyBurned", "kcal", (0, 5), 0.2),
    ("BasalEnergyBurned", "kcal", (0, 2), 0.2),
    ("StepCount", "count", (0, 200), 0.1),
    ("DistanceWalkingRunning", "km", (0, 1), 0.1),
]


def write_apple(path: Path, gigabytes: float, seed: int) -> int:
    """A synthetic export.xml of about ``gigabytes``; returns the records written."""
    rng = random.Random(seed)
    kinds = [k for k, _, _, share in _APPLE_MIX for _ in range(int(share * 10))]
    spec = {k: (u, lo, hi) for k, u, (lo, hi), _ in _APPLE_MIX}
    target = int(gigabytes * 1e9)
    n = 0
    written = 0
    when = datetime(2018, 1, 1)
    with path.open("w", encoding="utf-8") as f:
        head = '<?xml version="1.0" encoding="UTF-8"?>\n<HealthData locale="en_DE">\n'
        f.write(head)
        written += len(head)
        while written < target:
            lines = []
            for _ in range(10_000):
                kind = kinds[n % len(kinds)]
                unit, lo, hi = spec[kind]
                when += timedelta(seconds=7)
                stamp = _apple_time(when)
                lines.append(
                    f' <Record type="HKQuantityTypeIdentifier{kind}" sourceName="Watch" '
                    f'sourceVersion="10.1" device="&lt;&lt;HKDevice: 0x1&gt;, name:Watch&gt;" '
                    f'unit="{unit}" creationDate="{stamp}" startDate="{stamp}" '
                    f'endDate="{stamp}" value="{rng.uniform(lo, hi):.2f}"/>\n'
                )
                n += 1
            block = "".join(lines)
            f.write(block)
            written += len(block)
        f.write("</HealthData>\n")
    return n


_CHILD = """
import sys, threading, time
from twinkit.importers import apple_health

def rss_kb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0

peak = [rss_kb()]
before = peak[0]
done = threading.Event()

def watch():
    while not done.is_set():
        peak[0] = max(peak[0], rss_kb())
        time.sleep(0.02)

watcher = threading.Thread(target=watch)
watcher.start()
started = time.perf_counter()
readings = apple_health.read(sys.argv[1])
elapsed = time.perf_counter() - started
done.set()
watcher.join()
peak[0] = max(peak[0], rss_kb())
print(len(readings), elapsed, before, peak[0])
"""


def apple_memory(folder: Path, gigabytes: float, seed: int) -> dict[str, Any]:
    path = folder / f"export-{gigabytes:g}gb.xml"
    records = write_apple(path, gigabytes, seed)
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)], capture_output=True, text=True, check=True
    )
    fields = run.stdout.split()
    kept, elapsed = int(fields[0]), float(fields[1])
    base_kb, peak_kb = int(fields[2]), int(fields[3])
    size = path.stat().st_size
    path.unlink()
    return {
        "file_gb": round(size / 1e9, 2),
        "records": records,
        "readings_kept": kept,
        "read_s": round(elapsed, 1),
        "records_per_s": round(records / elapsed),
        "rss_before_read_mb": round(base_kb / 1024),
        "peak_rss_mb": round(peak_kb / 1024),
        "peak_growth_mb": round((peak_kb - base_kb) / 1024),
        "growth_bytes_per_reading_kept": round((peak_kb - base_kb) * 1024 / max(kept, 1), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--formats", default=",".join(importers.FORMATS))
    parser.add_argument("--apple-gb", type=float, default=2.0, help="0 skips the memory part")
    parser.add_argument("--folder", type=Path, default=None, help="scratch folder (large files)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as scratch:
        folder = Path(scratch)
        files = write_files(folder, args.seed)
        rows = [time_format(name, *files[name], folder) for name in args.formats.split(",") if name]
        memory = []
        if args.apple_gb > 0:
            for size in (args.apple_gb / 10, args.apple_gb):
                memory.append(apple_memory(folder, size, args.seed))
    report = {
        "benchmark": "imports",
        "data": "synthetic person-year per format (5-min CGM, 15-min Libre, minute steps)",
        "seed": args.seed,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "max_rss_mb_parent": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        },
        "formats": rows,
        "apple_health_memory": memory,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
