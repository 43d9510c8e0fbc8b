"""Federated against pooled population priors (issue #20): the same twins, windows and
seed; RMSE at 30 and 60 min of the personal models built on each prior; strategies under
a poisoned site.

    .venv/bin/python benchmarks/federated.py --cgm-iglu ../shared/data/cgm_iglu --seed 0
    .venv/bin/python benchmarks/federated.py --synthetic 8 --sites 4 --seed 0

Data: each twin's glucose split in time, the first 80 % to train the priors on (as a
pooled ``population fit`` takes it) and the last 20 % to score the personal models on.
Sites: with ``--cgm-iglu`` four, one of the five people with type 2 diabetes (Broll) and
three of the Hall cohort dealt round-robin (non-IID by design); with ``--synthetic N`` the
N synthetic twins dealt round-robin to ``--sites``. Priors: the GRU pooled
(``fit_population``: up to ``--rounds`` epochs, early stopping), then federated with each
strategy for ``--rounds`` rounds of one local epoch. Each prior is personalised on every
twin's training part (``personalize``) and scored by rolling-origin forecasts over the
twin's last 20 % (``rolling_scores``). Attacks on the first site, every round: it sends
its update negated and scaled by 10 (``sign_flip``), or trains on its glucose changes
negated (``flip_target``). Differential privacy: FedAvg with each site's update clipped
to ``--dp-clip`` and the noise multiplier that spends ``--dp-epsilons`` (at delta 1e-5)
over the rounds. Prints JSON with the data, seed and machine.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.data.datasets.cgm_iglu import load_cgm_iglu
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.federated import Attacker, LocalTraining, federate
from twinkit.federated.strategies import Privacy, noise_for_epsilon
from twinkit.models.evaluate import holdout_split, rolling_scores
from twinkit.models.gru import GRUAttention
from twinkit.models.neural import NeuralForecaster

HORIZONS = (30, 60)


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def twins_of(long: pd.DataFrame) -> dict[str, pd.DataFrame]:
    return {
        str(twin): rows.pivot_table(index="time", columns="channel", values="value")
        for twin, rows in long.groupby("twin_id")
    }


def deal(names: Sequence[str], sites: int, prefix: str) -> dict[str, list[str]]:
    ordered = sorted(names)
    return {f"{prefix}{s + 1}": ordered[s::sites] for s in range(sites)}


def personal_rmse(
    prior: NeuralForecaster, frames: dict[str, pd.DataFrame], splits: dict[str, pd.Timestamp]
) -> dict[str, Any]:
    """Mean over twins of the personal models' RMSE per horizon, and per twin."""
    per_twin = {}
    for twin, frame in frames.items():
        personal = prior.personalize(frame.loc[frame.index < splits[twin]])
        scores = rolling_scores(personal, frame, splits[twin], HORIZONS)
        per_twin[twin] = {f"rmse_{h}": round(scores[f"rmse_{h}"], 3) for h in HORIZONS}
    mean = {
        f"rmse_{h}": round(float(np.mean([s[f"rmse_{h}"] for s in per_twin.values()])), 3)
        for h in HORIZONS
    }
    return {"mean": mean, "per_twin": per_twin}


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cgm-iglu", type=Path, help="Folder of iglu's example CSV files.")
    source.add_argument("--synthetic", type=int, help="This many synthetic twins.")
    parser.add_argument("--sites", type=int, default=4, help="Sites (synthetic data).")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--strategies", default="fedavg,fedprox,fedadam")
    parser.add_argument("--robust", default="fedmedian,krum,fedtrimmedavg")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--dp-epsilons", default="1,4,8", help="Empty for none.")
    parser.add_argument("--dp-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.cgm_iglu is not None:
        frames = twins_of(load_cgm_iglu(args.cgm_iglu))
        broll = [t for t in frames if t.startswith("broll")]
        hall = [t for t in frames if t not in broll]
        members = {"t2d": sorted(broll), **deal(hall, 3, "hall-")}
        data: dict[str, Any] = {"set": "cgm_iglu", "path": str(args.cgm_iglu)}
    else:
        frames = twins_of(synthetic_cohort(n_twins=args.synthetic, days=4, seed=args.seed))
        members = deal(list(frames), args.sites, "site-")
        data = {"set": "synthetic", "twins": args.synthetic, "days": 4}
    splits = {t: holdout_split(f, "glucose", 0.2) for t, f in frames.items()}
    train = {t: f.loc[f.index < splits[t]] for t, f in frames.items()}
    sites = {name: [train[t] for t in twins] for name, twins in members.items()}
    template = GRUAttention(hidden=args.hidden, epochs=args.rounds, seed=args.seed)
    report: dict[str, Any] = {
        "benchmark": "federated",
        "data": data,
        "seed": args.seed,
        "machine": machine(),
        "rounds": args.rounds,
        "model": {"name": "gru", **template.params()},
        "sites": {name: len(twins) for name, twins in members.items()},
        "priors": {},
    }

    started = time.perf_counter()
    pooled = copy.deepcopy(template).fit_population(list(train.values()))
    report["priors"]["pooled"] = {
        "seconds": round(time.perf_counter() - started, 1),
        **personal_rmse(pooled, frames, splits),
    }
    print(f"pooled: {report['priors']['pooled']['mean']}", file=sys.stderr)
    local = LocalTraining(epochs=1, lr=template.lr, batch_size=template.batch_size)
    Run = tuple[str, str, dict[str, Attacker] | None, Privacy | None]
    runs: list[Run] = [(s, s, None, None) for s in args.strategies.split(",") if s]
    first = next(iter(members))
    for kind in ("sign_flip", "flip_target"):
        attack = {first: Attacker(kind, factor=10.0)}
        robust = (
            ["fedavg", *args.robust.split(",")] if kind == "sign_flip" else ["fedavg", "fedmedian"]
        )
        runs += [(f"{s}+{kind}", s, attack, None) for s in robust if s]
    for epsilon in [float(e) for e in args.dp_epsilons.split(",") if e]:
        noise = noise_for_epsilon(epsilon, args.rounds)
        dp = Privacy(noise_multiplier=noise, clipping_norm=args.dp_clip)
        runs.append((f"fedavg+dp_eps{epsilon:g}", "fedavg", None, dp))
    for label, strategy, attackers, privacy in runs:
        started = time.perf_counter()
        result = federate(
            template,
            sites,
            strategy=strategy,
            rounds=args.rounds,
            local=local,
            seed=args.seed,
            attackers=attackers,
            privacy=privacy,
        )
        report["priors"][label] = {
            "seconds": round(time.perf_counter() - started, 1),
            **({"privacy": result.privacy} if result.privacy else {}),
            "held_loss": {str(r): round(v, 5) for r, v in result.held_loss.items()},
            **personal_rmse(result.model, frames, splits),
        }
        print(f"{label}: {report['priors'][label]['mean']}", file=sys.stderr)
    base = report["priors"]["pooled"]["mean"]
    report["ratio_to_pooled"] = {
        label: {k: round(v / base[k], 3) for k, v in prior["mean"].items()}
        for label, prior in report["priors"].items()
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
