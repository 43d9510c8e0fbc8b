"""Federated against pooled population priors (issue #20): the same twins, windows and
seed; RMSE at 30 and 60 min of the personal models built on each prior; strategies under
a poisoned site.

    .venv/bin/python benchmarks/federated.py --cgm-iglu ../shared/data/cgm_iglu --seed 0
    .venv/bin/python benchmarks/federated.py --simglucose 4 --days 7 --seed 0
    .venv/bin/python benchmarks/federated.py --synthetic 8 --sites 4 --seed 0

Data: each twin's glucose split in time, the first 80 % to train the priors on (as a
pooled ``population fit`` takes it) and the last 20 % to score the personal models on.
Sites: with ``--cgm-iglu`` four, one of the five people with type 2 diabetes (Broll) and
three of the Hall cohort dealt round-robin (non-IID by design); with ``--simglucose N``
three, N adolescents, N adults and N children of simglucose's UVA/Padova cohort over
``--days`` days with meals and insulin as covariates (strongly non-IID); with
``--synthetic N`` the N synthetic twins dealt round-robin to ``--sites``. Priors: the GRU pooled
(``fit_population``: up to ``--rounds`` epochs, early stopping), then federated with each
strategy for ``--rounds`` rounds of one local epoch. Each prior is personalised on every
twin's training part (``personalize``) and scored by rolling-origin forecasts over the
twin's last 20 % (``rolling_scores``). Attacks on the first site, every round: it sends
its update negated and scaled by 10 (``sign_flip``), or trains on its glucose changes
negated (``flip_target``). Differential privacy: FedAvg with each site's update clipped
to ``--dp-clip`` and the noise multiplier that spends ``--dp-epsilons`` (at delta 1e-5)
over the rounds. Prints JSON with the data, seed and machine.

``--deployment-rounds R`` (R > 0) also runs FedAvg for R rounds on Flower's deployment
runtime: each site's twins in its own SQLite store, a SuperLink and one SuperNode per
site as processes on this machine (``twinkit federated serve``/``join`` as commands), the
run submitted with ``flwr run``; then the same plan on the simulation engine over the
histories the sites' stores hold. Reported: wall time per run and per round, the bytes
that crossed the loopback interface during the deployed run (HTTP between SuperLink and
SuperNodes, with heartbeats and the app's shipping; other loopback traffic on the machine
counts too) against the weights' own bytes, and the largest difference between the two
runtimes' final weights.

``--unlearning-seeds 0,1,2`` measures forgetting a person (``twinkit federated forget``)
on a store of the data: three people are never seen by any prior; v1 is FedAvg over
``--sites`` round-robin sites without the last person P and two others, v2 goes on from
v1 with them (both ``--rounds`` rounds), then P is forgotten (v2 retrained from v1
without P). A loss-threshold membership-inference attack scores each person: the AUC with
which the prior's per-window loss tells the person's training windows (before their
holdout split) from their later windows, 0.5 being no advantage; P is scored under v2
(a member) and under the replacement, the never-seen people under both. The cost is the
share of a full retrain's rounds, and the seconds against retraining the chain.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.data.datasets.cgm_iglu import load_cgm_iglu
from twinkit.data.datasets.synthetic import synthetic_cohort
from twinkit.engine import TwinEngine
from twinkit.federated import Attacker, LocalTraining, Plan, federate
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


def loopback_bytes() -> int:
    """Bytes received on the loopback interface so far (Linux)."""
    for line in Path("/proc/net/dev").read_text().splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "lo":
            return int(counters.split()[0])
    return 0


def deployment(
    long: pd.DataFrame, members: dict[str, list[str]], template: NeuralForecaster, rounds: int
) -> dict[str, Any]:
    """FedAvg for ``rounds`` rounds on a SuperLink and one SuperNode per site (each site's
    twins in its own store), then the same plan on the simulation engine."""
    from twinkit.engine import federation
    from twinkit.engine.population import collect_histories

    with tempfile.TemporaryDirectory(prefix="twinkit-fed-bench-") as scratch:
        root = Path(scratch)
        stores = {}
        for name, twins in members.items():
            engine = TwinEngine(f"sqlite:///{root / name}.db")
            for twin in twins:
                engine.create_twin(twin, "state")
            engine.ingest(long[long["twin_id"].isin(twins)])
            stores[name] = engine.store
        env = {**federation.flower_env(), "FLWR_HOME": str(root / "flwr")}
        link = "127.0.0.1:19393"
        logs = open(root / "flower.log", "wb")  # noqa: SIM115 - closed below
        processes = [
            subprocess.Popen(
                federation.superlink_command(port=19393), env=env, stdout=logs, stderr=logs
            )
        ]
        for i, store in enumerate(stores.values()):
            command = federation.supernode_command(link, store.url, port=19400 + i)
            processes.append(subprocess.Popen(command, env=env, stdout=logs, stderr=logs))
        plan = Plan.of(template, sites=len(stores), rounds=rounds, seed=template.seed)
        try:
            before = loopback_bytes()
            run = federation.submit(federation.Connection(link), plan)
            crossed = loopback_bytes() - before
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            logs.close()
        histories = {
            name: collect_histories(store, None, template.target).histories
            for name, store in stores.items()
        }
    started = time.perf_counter()
    simulated = federate(template, histories, rounds=rounds, seed=template.seed)
    simulated_s = time.perf_counter() - started
    assert run.model.network is not None and simulated.model.network is not None
    deployed = run.model.network.state_dict()
    weights = sum(v.numel() * 4 for v in deployed.values())
    gap = max(
        float((deployed[k] - v).abs().max())
        for k, v in simulated.model.network.state_dict().items()
    )
    return {
        "sites": len(stores),
        "rounds": rounds,
        "deployed_s": run.seconds,
        "simulated_s": round(simulated_s, 1),
        "deployed_s_per_round": round(run.seconds / rounds, 1),
        "simulated_s_per_round": round(simulated_s / rounds, 1),
        "loopback_bytes_per_round": round(crossed / rounds),
        "weights_bytes": weights,
        "weights_bytes_per_round": 2 * len(stores) * weights,
        "max_weight_difference": gap,
        "held_loss": {
            "deployed": run.record["held_loss"],
            "simulated": {str(r): round(v, 6) for r, v in simulated.held_loss.items()},
        },
    }


def window_auc(prior: NeuralForecaster, seen: pd.DataFrame, later: pd.DataFrame) -> float:
    """How well the prior's per-window loss tells windows of ``seen`` (lower loss ->
    member) from windows of ``later``: the AUC of a loss-threshold attack."""
    from sklearn.metrics import roc_auc_score

    from twinkit.models.base import QUANTILE_LEVELS
    from twinkit.models.neural import window_tensors

    levels = torch.tensor(QUANTILE_LEVELS, dtype=torch.float32)
    losses = []
    assert prior.network is not None
    for frame in (seen, later):
        past, future, target = window_tensors(prior.site_windows([frame]))
        with torch.no_grad():
            diff = target.unsqueeze(-1) - prior.network(past, future)
        pinball = torch.maximum(levels * diff, (levels - 1.0) * diff).mean(dim=(1, 2))
        losses.append(pinball.numpy())
    labels = np.r_[np.ones(len(losses[0])), np.zeros(len(losses[1]))]
    return float(roc_auc_score(labels, -np.r_[losses[0], losses[1]]))


def unlearning(
    long: pd.DataFrame, frames: dict[str, pd.DataFrame], args: argparse.Namespace, seed: int
) -> dict[str, Any]:
    """One seed of the forgetting measurement (see the module)."""
    from twinkit.engine.population import Federation

    names = sorted(frames)
    unseen, late, person = names[-6:-3], names[-3:-1], names[-1]
    initial = [t for t in names if t not in {*unseen, *late, person}]
    with tempfile.TemporaryDirectory(prefix="twinkit-forget-bench-") as scratch:
        engine = TwinEngine(f"sqlite:///{scratch}/t.db")
        for twin in names:
            engine.create_twin(twin, "state")
        engine.ingest(long[long["twin_id"].isin(names)])
        params = {"hidden": args.hidden}
        first = Federation(sites=args.sites, rounds=args.rounds)
        v1 = engine.fit_population("gru", initial, seed=seed, params=params, federation=first)
        go_on = Federation(sites=args.sites, rounds=args.rounds, start_from=v1.version)
        members = [*initial, *late, person]
        started = time.perf_counter()
        v2 = engine.fit_population("gru", members, seed=seed, params=params, federation=go_on)
        v2_s = time.perf_counter() - started
        v2_model = engine.population(v2.version)
        forgotten = engine.forget(person)
        after = engine.population(forgotten.replaced[v2.version])
        assert v2_model is not None and after is not None
        scores: dict[str, Any] = {}
        for label, (_, prior) in (("member", v2_model), ("forgotten", after)):
            assert isinstance(prior, NeuralForecaster)
            auc = {}
            for twin in [person, *unseen]:
                frame = frames[twin]
                split = holdout_split(frame, "glucose", 0.2)
                auc[twin] = round(
                    window_auc(
                        prior, frame.loc[frame.index < split], frame.loc[frame.index >= split]
                    ),
                    4,
                )
            scores[label] = {"person": auc[person], "never_seen": [auc[t] for t in unseen]}
        engine.store.dispose()
    return {
        "seed": seed,
        "person": person,
        "never_seen": unseen,
        "auc_under_v2": scores["member"],
        "auc_after_forgetting": scores["forgotten"],
        "cost_rounds": forgotten.to_dict()["cost"],
        "forget_s": forgotten.seconds,
        "v2_s": round(v2_s, 1),
        "v1_plus_v2_s": round(v1.seconds + v2_s, 1),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--cgm-iglu", type=Path, help="Folder of iglu's example CSV files.")
    source.add_argument("--synthetic", type=int, help="This many synthetic twins.")
    source.add_argument(
        "--simglucose",
        type=int,
        help="This many simglucose adolescents, adults and children each; a site per group.",
    )
    parser.add_argument("--days", type=float, default=7.0, help="Days of simglucose data.")
    parser.add_argument("--cache", type=Path, help="Where to keep simulated cohorts.")
    parser.add_argument("--sites", type=int, default=4, help="Sites (synthetic data).")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--strategies", default="fedavg,fedprox,fedadam")
    parser.add_argument("--robust", default="fedmedian,krum,fedtrimmedavg")
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--dp-epsilons", default="1,4,8", help="Empty for none.")
    parser.add_argument("--dp-clip", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--deployment-rounds", type=int, default=0, help="Rounds on the deployment runtime."
    )
    parser.add_argument("--unlearning-seeds", default="", help="e.g. 0,1,2; empty: skip.")
    parser.add_argument(
        "--skip-priors", action="store_true", help="Only the deployment or unlearning runs."
    )
    args = parser.parse_args(argv)

    if args.cgm_iglu is not None:
        long = load_cgm_iglu(args.cgm_iglu)
        frames = twins_of(long)
        broll = [t for t in frames if t.startswith("broll")]
        hall = [t for t in frames if t not in broll]
        members = {"t2d": sorted(broll), **deal(hall, 3, "hall-")}
        data: dict[str, Any] = {"set": "cgm_iglu", "path": str(args.cgm_iglu)}
    elif args.simglucose is not None:
        from twinkit.data.datasets.simglucose_cohort import simulate_cohort

        groups = ("adolescent", "adult", "child")
        names = [f"{g}#{i:03d}" for g in groups for i in range(1, args.simglucose + 1)]
        long = simulate_cohort(names, args.days, args.seed, cache_dir=args.cache)
        frames = twins_of(long)
        members = {g: sorted(t for t in frames if t.startswith(g)) for g in groups}
        data = {"set": "simglucose", "per_group": args.simglucose, "days": args.days}
    else:
        long = synthetic_cohort(n_twins=args.synthetic, days=4, seed=args.seed)
        frames = twins_of(long)
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

    if args.deployment_rounds > 0:
        report["deployment"] = deployment(long, members, template, args.deployment_rounds)
        print(f"deployment: {report['deployment']}", file=sys.stderr)
    seeds = [int(x) for x in args.unlearning_seeds.split(",") if x]
    if seeds:
        report["unlearning"] = [unlearning(long, frames, args, seed) for seed in seeds]
        print(f"unlearning: {report['unlearning']}", file=sys.stderr)
    if args.skip_priors:
        print(json.dumps(report, indent=2))
        return report

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
