"""Forecasters under attack: tampered glucose histories, before and after a vaccine.

Prints JSON (and writes it with ``--out``): the ``twinkit eval immunity --forecast``
report plus the data, seed and machine. Examples::

    python benchmarks/immunity_forecast.py cgm --data ../shared/data/cgm_iglu --out cgm.json
    python benchmarks/immunity_forecast.py simglucose --patients 10 --days 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

from twinkit.core.progress import to_stderr
from twinkit.data.datasets.cgm_iglu import load_cgm_iglu
from twinkit.eval.forecaster_immunity_benchmark import evaluate_forecast_immunity
from twinkit.immunity.history_tampering import HistoryBudget


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["cgm", "simglucose"])
    parser.add_argument("--data", type=Path, help="cgm: the folder with iglu's CSV files")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--horizons", default="30,60")
    parser.add_argument("--models", default="persistence,linear_ar,gru")
    parser.add_argument("--budget", type=float, default=10.0, help="mg/dL per reading")
    parser.add_argument("--window", type=int, default=12, help="readings that may move")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--copies", type=int, default=2)
    parser.add_argument("--max-origins", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path(".twinkit/cache"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.dataset == "cgm":
        if args.data is None:
            parser.error("cgm needs --data FOLDER (e.g. ../shared/data/cgm_iglu)")
        data = load_cgm_iglu(args.data)
        described: dict[str, Any] = {"name": "cgm_iglu", "folder": str(args.data)}
    else:
        from twinkit.data.datasets.simglucose_cohort import simulate_cohort

        data = simulate_cohort(args.patients, args.days, args.seed, cache_dir=args.cache)
        described = {"name": "simglucose", "patients": args.patients, "days": args.days}
    started = time.perf_counter()
    report = evaluate_forecast_immunity(
        data,
        "glucose",
        [int(h) for h in args.horizons.split(",")],
        models=args.models.split(","),
        budget=HistoryBudget(eps=args.budget, window=args.window),
        max_origins=args.max_origins,
        steps=args.steps,
        copies=args.copies,
        seed=args.seed,
        progress=to_stderr,
    )
    report["data"].update(described)
    report["seconds"] = round(time.perf_counter() - started, 1)
    report["machine"] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }
    text = json.dumps(report, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
