"""Speed of one twin: `twinkit fit` on two weeks of 5-minute data, and one prediction.

Prints JSON. The fit is the engine's default (auto) fit with a population prior in the
store, so it includes choosing among candidates, refitting the winner and scoring it on
the holdout; predictions are timed in-process on the fitted models, repeatedly, median.
Example: ``python benchmarks/fit_predict.py --days 14 --seed 0``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.models import GPForecaster, GRUAttention, LinearAR, TransformerForecaster
from twinkit.models.base import Forecaster


def predict_ms(model: Forecaster, frame: pd.DataFrame, repeats: int) -> float:
    """Median milliseconds of one predict() from the latest data."""
    model.predict(frame, [30, 60])  # warm-up: first calls pay for lazy initialisation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict(frame, [30, 60])
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--days", type=float, default=14.0)
    parser.add_argument("--population-twins", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args(argv)

    cohort = synthetic_cohort(n_twins=args.population_twins + 1, days=args.days, seed=args.seed)
    twin = "synth-001"
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        engine = TwinEngine(f"sqlite:///{Path(tmp) / 't.db'}")
        for twin_id in sorted(cohort["twin_id"].unique()):
            engine.create_twin(str(twin_id), "state")
        engine.ingest(cohort)
        others = [t for t in sorted(cohort["twin_id"].unique()) if t != twin]
        started = time.perf_counter()
        engine.fit_population("gru", twin_ids=others, seed=args.seed)
        results["population_fit_s"] = round(time.perf_counter() - started, 2)
        started = time.perf_counter()
        fitted = engine.fit(twin, seed=args.seed)
        results["twinkit_fit_auto_s"] = round(time.perf_counter() - started, 2)
        results["twinkit_chosen"] = (fitted.selection or {}).get("chosen")
        frame = engine.signals(twin)
        served = engine.load_model(engine.version(twin))
        results["predict_ms"] = {
            "twinkit_served": round(predict_ms(served, frame, args.repeats), 2)
        }
        train = frame.iloc[: int(len(frame) * 0.8)]
        for cls in (LinearAR, GRUAttention, TransformerForecaster, GPForecaster):
            model: Forecaster = cls(seed=args.seed)
            started = time.perf_counter()
            model.fit(train)
            results[f"{model.name}_fit_s"] = round(time.perf_counter() - started, 2)
            results["predict_ms"][model.name] = round(predict_ms(model, frame, args.repeats), 2)
        engine.store.dispose()
    report = {
        "benchmark": "fit_predict",
        "data": {
            "kind": "synthetic glucose with meals (twinkit.data.datasets.synthetic)",
            "days": args.days,
            "step_min": 5,
            "readings_per_twin": int(args.days * 288),
            "population_twins": args.population_twins,
        },
        "seed": args.seed,
        "results": results,
        "targets": {"fit_s_max": 30, "predict_ms_max": 5},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
