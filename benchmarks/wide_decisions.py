"""Wide decision files: time of an upload's path per feature count, to check it is linear.

Each width's CSV (``--rows`` rows of ``twin_id,item_id,<features>,label``, seeded
uniform features) is read and ingested as ``POST .../observations/upload`` does it:
``read_table_bytes`` then ``TwinEngine.ingest(frame, twin=...)``, into a fresh SQLite store
each run; the median of ``--repeat`` runs counts. The report gives seconds and microseconds
per cell per width, and the ratio of the per-cell cost at the widest width to the narrowest
(1.0 is linear; a quadratic step makes it grow with the widths' ratio). Prints JSON.
Example: ``python benchmarks/wide_decisions.py --widths 500 2000 5000 20000``.
"""

from __future__ import annotations

import argparse
import io
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
import pyarrow as pa

from twinkit.data.importers import read_table_bytes
from twinkit.engine import TwinEngine

TWIN = "d1"


def make_csv(rows: int, width: int, seed: int) -> bytes:
    """A decisions file: ``rows`` items of one twin, ``width`` features in [0, 1), a label."""
    rng = np.random.default_rng(seed)
    features = pd.DataFrame(
        rng.random((rows, width)).round(6), columns=[f"f{j:05d}" for j in range(width)]
    )
    frame = pd.concat(
        [
            pd.DataFrame({"twin_id": TWIN, "item_id": [f"item-{i:06d}" for i in range(rows)]}),
            features,
            pd.DataFrame({"label": rng.choice(["yes", "no"], rows)}),
        ],
        axis=1,
    )
    out = io.StringIO()
    frame.to_csv(out, index=False)
    return out.getvalue().encode("utf-8")


def upload(raw: bytes, folder: Path) -> float:
    """The upload route's path on a fresh store; the seconds it took."""
    engine = TwinEngine(f"sqlite:///{folder / 'twinkit.db'}")
    engine.create_twin(TWIN, "decision")
    started = time.perf_counter()
    frame = read_table_bytes(raw, "decisions.csv")
    result = engine.ingest(frame, twin=TWIN, source="decisions.csv")
    elapsed = time.perf_counter() - started
    assert result.n_stored == result.n_rows, result
    engine.store.dispose()
    return elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--widths", type=int, nargs="+", default=[500, 2000, 5000, 20_000])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="runs per width; the median is kept")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for width in sorted(args.widths):
            raw = make_csv(args.rows, width, args.seed)
            runs = []
            for i in range(args.repeat):
                sub = Path(tmp) / f"w{width}-{i}"
                sub.mkdir()
                runs.append(upload(raw, sub))
            seconds = float(np.median(runs))
            cells = args.rows * width
            results[str(width)] = {
                "csv_bytes": len(raw),
                "cells": cells,
                "seconds": round(seconds, 3),
                "runs": [round(r, 3) for r in runs],
                "us_per_cell": round(seconds / cells * 1e6, 3),
            }
    narrow, wide = results[str(min(args.widths))], results[str(max(args.widths))]
    report = {
        "benchmark": "wide_decisions",
        "data": {
            "kind": "synthetic decisions CSV: twin_id,item_id,<features uniform [0,1)>,label",
            "rows": args.rows,
            "widths": sorted(args.widths),
        },
        "seed": args.seed,
        "results": results,
        "per_cell_ratio_widest_to_narrowest": round(wide["us_per_cell"] / narrow["us_per_cell"], 2),
        "targets": {"per_cell_ratio_max": 2.0},
        "machine": {
            "platform": platform.platform(),
            "processor": platform.machine(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "sqlite": sqlite3.sqlite_version,
            "pandas": pd.__version__,
            "pyarrow": pa.__version__,
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
