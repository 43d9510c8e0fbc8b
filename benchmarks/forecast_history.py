"""What a served forecast costs as a twin's history grows: the service's path vs the whole.

For each history length (days of 5-minute glucose, one twin each, ``--model`` fitted by
``TwinEngine.fit``), times ``TwinEngine.forecast`` (what the service computes on a cache
miss: it reads only the rows within the model's lookback) against ``TwinEngine.predict``
(the same model on the whole stored history), interleaved, ``--repeat`` calls each, on
one SQLite store. The two answers are checked to be identical. Prints JSON.
Example: ``python benchmarks/forecast_history.py --days 1,30,180``.
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
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twinkit.engine import TwinEngine

READINGS_PER_DAY = 288


def glucose(twin: str, days: int, seed: int) -> pd.DataFrame:
    """``days`` of glucose every 5 minutes: a daily swing plus a bounded random walk."""
    n = days * READINGS_PER_DAY
    rng = np.random.default_rng([seed, days])
    time = pd.date_range("2026-01-01", periods=n, freq="5min", tz="UTC")
    walk = np.cumsum(rng.normal(0, 2.0, n)).clip(-40, 40)
    value = 130 + 30 * np.sin(2 * np.pi * np.arange(n) / READINGS_PER_DAY) + walk
    return pd.DataFrame({"twin_id": twin, "time": time, "channel": "glucose", "value": value})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", default="1,30,180", help="history lengths, in days")
    parser.add_argument("--model", default="linear_ar")
    parser.add_argument("--repeat", type=int, default=50, help="calls of each path per length")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        engine = TwinEngine(f"sqlite:///{Path(tmp) / 'history.db'}")
        for days in [int(d) for d in args.days.split(",") if d]:
            twin = f"d{days}"
            engine.create_twin(twin, "state")
            history = glucose(twin, days, args.seed)
            engine.ingest(history, twin=twin)
            engine.fit(twin, model=args.model, seed=args.seed)
            served = engine.forecast(twin).forecast  # warm: the model is loaded and cached
            whole = engine.predict(twin)
            if not (
                served.origin == whole.origin
                and all(
                    np.array_equal(served.quantiles[q], whole.quantiles[q]) for q in whole.quantiles
                )
            ):
                raise AssertionError(f"{days} days: the served forecast differs from the whole")
            times: dict[str, list[float]] = {"served": [], "whole_history": []}
            for _ in range(args.repeat):  # interleaved, so drift hits both paths alike
                for name, call in (("served", engine.forecast), ("whole_history", engine.predict)):
                    started = time.perf_counter()
                    call(twin)
                    times[name].append(time.perf_counter() - started)
            served_ms = 1e3 * float(np.median(times["served"]))
            whole_ms = 1e3 * float(np.median(times["whole_history"]))
            rows.append(
                {
                    "days": days,
                    "readings": len(history),
                    "served_ms_median": round(served_ms, 2),
                    "whole_history_ms_median": round(whole_ms, 2),
                    "whole_over_served": round(whole_ms / served_ms, 1),
                }
            )
        engine.store.dispose()
    report = {
        "benchmark": "forecast_history",
        "data": "synthetic glucose, 5-minute grid, one twin per history length",
        "model": args.model,
        "seed": args.seed,
        "repeat": args.repeat,
        "paths": {
            "served": "TwinEngine.forecast: the rows within the model's lookback "
            "(what the service computes on a forecast cache miss)",
            "whole_history": "TwinEngine.predict: every stored row of the twin",
        },
        "results": rows,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "loadavg": [round(x, 2) for x in os.getloadavg()],
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
