"""Ingest throughput: the full path (read, validate, screen, store, ledger) vs raw sqlite3.

Each path runs ``--repeat`` times into a fresh database; the median counts. Prints JSON.
Example: ``python benchmarks/ingest.py --twins 100 --rows-per-twin 10000``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twinkit.engine import TwinEngine


def make_rows(twins: int, rows_per_twin: int, seed: int) -> pd.DataFrame:
    """Glucose-like readings every 5 minutes for each twin, in long format."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(datetime(2026, 1, 1, tzinfo=UTC), periods=rows_per_twin, freq="5min")
    frames = []
    for k in range(twins):
        walk = 120 + np.cumsum(rng.normal(0, 2, rows_per_twin)).clip(-80, 250)
        frames.append(
            pd.DataFrame(
                {"twin_id": f"p{k:04d}", "time": times, "channel": "glucose", "value": walk}
            )
        )
    return pd.concat(frames, ignore_index=True)


def raw_sqlite(frame: pd.DataFrame, folder: Path) -> float:
    """The floor: sqlite3 executemany of the same rows into a bare table, one commit."""
    rows = list(
        zip(
            frame["twin_id"].tolist(),
            frame["time"].tolist(),
            frame["channel"].tolist(),
            frame["value"].tolist(),
            strict=True,
        )
    )
    conn = sqlite3.connect(folder / "raw.db")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE raw (twin_id TEXT, time TEXT, channel TEXT, value REAL)")
    started = time.perf_counter()
    conn.executemany("INSERT INTO raw VALUES (?, ?, ?, ?)", rows)
    conn.commit()
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def twinkit_ingest(source: pd.DataFrame | Path, twins: list[str], folder: Path) -> float:
    engine = TwinEngine(f"sqlite:///{folder / 'twinkit.db'}")
    for twin_id in twins:
        engine.create_twin(twin_id, "state", channels=["glucose"])
    started = time.perf_counter()
    result = engine.ingest(source)
    elapsed = time.perf_counter() - started
    assert result.n_stored == result.n_rows, result
    engine.store.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--twins", type=int, default=100)
    parser.add_argument("--rows-per-twin", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=5, help="runs per path; the median is kept")
    args = parser.parse_args(argv)

    frame = make_rows(args.twins, args.rows_per_twin, args.seed)
    n = len(frame)
    twins = sorted(frame["twin_id"].unique())
    iso = frame.assign(time=frame["time"].dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        csv_path = folder / "signals.csv"
        iso.to_csv(csv_path, index=False)
        paths: list[tuple[str, Callable[[Path], float]]] = [
            ("raw_sqlite3_executemany", lambda d: raw_sqlite(iso, d)),
            ("twinkit_dataframe", lambda d: twinkit_ingest(frame, twins, d)),
            ("twinkit_csv", lambda d: twinkit_ingest(csv_path, twins, d)),
        ]
        # Interleaved (raw, dataframe, csv, raw, ...) so drift in the machine's speed hits
        # every path alike; each run writes a fresh database.
        runs: dict[str, list[float]] = {name: [] for name, _ in paths}
        for i in range(args.repeat):
            for name, run in paths:
                sub = folder / f"{name}-{i}"
                sub.mkdir()
                runs[name].append(run(sub))
        for name, times in runs.items():
            seconds = float(np.median(times))
            results[name] = {
                "seconds": round(seconds, 3),
                "runs": [round(r, 3) for r in times],
                "rows_per_s": round(n / seconds),
            }
    raw = results["raw_sqlite3_executemany"]["seconds"]
    for name in ("twinkit_dataframe", "twinkit_csv"):
        results[name]["ratio_to_raw"] = round(results[name]["seconds"] / raw, 2)
    report = {
        "benchmark": "ingest",
        "data": {
            "kind": "synthetic glucose random walk, 5-minute grid",
            "twins": args.twins,
            "rows_per_twin": args.rows_per_twin,
            "rows": n,
        },
        "seed": args.seed,
        "results": results,
        "targets": {"rows_per_s_min": 200_000, "ratio_to_raw_max": 2.5},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "pandas": pd.__version__,
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
