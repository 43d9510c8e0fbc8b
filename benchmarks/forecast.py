"""State-twin forecasting: every model on real CGM data and on a simglucose cohort.

Prints JSON (and writes it with ``--out``): the full ``twinkit eval forecast`` report plus
the ratios the issue's targets are stated in, the data, seed and machine. Examples::

    python benchmarks/forecast.py cgm --data ../shared/data/cgm_iglu --out cgm.json
    python benchmarks/forecast.py cgm --data ../shared/data/cgm_iglu --cold-start 24h
    python benchmarks/forecast.py simglucose --patients 10 --days 10 --out sim.json
    python benchmarks/forecast.py cgm --data ../shared/data/cgm_iglu --every 15 \\
        --models persistence,linear_ar,plain_ridge,auto_arima,auto_ets,population,twinkit
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.core.progress import to_stderr
from twinkit.data.datasets.cgm_iglu import load_cgm_iglu
from twinkit.eval.forecast_benchmark import evaluate_forecasts


def ratios(report: dict[str, Any], horizons: list[int]) -> dict[str, Any]:
    """The figures the targets are stated in, computed from the report."""
    models = report["models"]
    out: dict[str, Any] = {}

    def rmse(name: str, h: int) -> float | None:
        value = models.get(name, {}).get("pooled", {}).get(str(h), {}).get("rmse")
        return None if value is None else float(value)

    for base in ("persistence", "linear_ar", "population", "plain_ridge", "auto_arima"):
        for h in horizons:
            mine, theirs = rmse("twinkit", h), rmse(base, h)
            if mine is not None and theirs:
                out[f"twinkit_over_{base}_{h}"] = round(mine / theirs, 4)
    for h in horizons:
        mine, theirs = rmse("linear_ar", h), rmse("plain_ridge", h)
        if mine is not None and theirs:
            out[f"linear_ar_over_plain_ridge_{h}"] = round(mine / theirs, 4)
    twinkit = models.get("twinkit", {}).get("per_twin", {})
    population = models.get("population", {}).get("per_twin", {})
    shared = sorted(set(twinkit) & set(population))
    if shared:
        wins = sum(
            np.mean([twinkit[t][str(h)]["rmse"] for h in horizons if str(h) in twinkit[t]])
            < np.mean([population[t][str(h)]["rmse"] for h in horizons if str(h) in population[t]])
            for t in shared
        )
        out["twinkit_beats_population_share"] = round(wins / len(shared), 4)
    for name, result in models.items():
        covs = [row["coverage90"] for row in result["pooled"].values() if "coverage90" in row]
        if covs:
            out[f"coverage90_{name}"] = round(float(np.mean(covs)), 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["cgm", "simglucose"])
    parser.add_argument("--data", type=Path, help="cgm: the folder with iglu's CSV files")
    parser.add_argument("--patients", type=int, default=10)
    parser.add_argument("--days", type=float, default=10.0)
    parser.add_argument("--horizons", default="30,60")
    parser.add_argument("--train-frac", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=None, help="comma-separated (default: all)")
    parser.add_argument("--cold-start", default=None, help="e.g. 24h")
    parser.add_argument("--max-origins", type=int, default=200)
    parser.add_argument("--meta", action="store_true", help="Reptile-trained population")
    parser.add_argument("--cache", type=Path, default=Path(".twinkit/cache"))
    parser.add_argument("--every", type=float, default=None, help="downsample: 15 for a Libre")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    if args.dataset == "cgm":
        if args.data is None:
            parser.error("cgm needs --data FOLDER (e.g. ../shared/data/cgm_iglu)")
        data = load_cgm_iglu(args.data)
        described = {"name": "cgm_iglu", "folder": str(args.data), "covariates": []}
    else:
        from twinkit.data.datasets.simglucose_cohort import simulate_cohort

        data = simulate_cohort(args.patients, args.days, args.seed, cache_dir=args.cache)
        described = {
            "name": "simglucose",
            "patients": args.patients,
            "days": args.days,
            "covariates": ["carbs", "insulin"],
        }
    horizons = [int(h) for h in args.horizons.split(",")]
    report = evaluate_forecasts(
        data,
        "glucose",
        horizons,
        train_frac=args.train_frac,
        seed=args.seed,
        models=args.models.split(",") if args.models else None,
        cold_start=pd.Timedelta(args.cold_start) if args.cold_start else None,
        max_origins=args.max_origins,
        meta=args.meta,
        progress=to_stderr,
        every_min=args.every,
    )
    report["data"].update(described)
    report["targets"] = ratios(report, horizons)
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
