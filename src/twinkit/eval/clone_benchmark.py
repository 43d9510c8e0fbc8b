"""``twinkit eval clone``: how faithfully each query strategy clones each person.

For every person (``twin_id``) with at least ``min_labels`` labels, and for each seed:
a share of their items is held out for testing; the population prior is trained on the
other people's labels only; each strategy asks about ``k`` of the person's remaining
items (their recorded answers are the donor), the clone is retrained after each batch,
and its agreement with the person on the test items is recorded at every budget.
Baselines: ``population`` (no personal labels), ``personal_full`` (all the person's
training labels), ``majority`` (the other people's majority answer for the same item,
scored only on test items someone else answered).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from twinkit.clone.active import learn_clone, personalize
from twinkit.clone.donor import PoolDonor
from twinkit.clone.metrics import advice, agreement, kappa
from twinkit.clone.model import CloneModel
from twinkit.clone.prior import feature_columns, train_population
from twinkit.clone.query import Pool
from twinkit.clone.strategies import STRATEGIES, strategy
from twinkit.core.errors import TwinkitError
from twinkit.core.progress import ProgressFn, Steps


def _stats(values: Sequence[float]) -> dict[str, float]:
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return {"agreement_mean": float("nan"), "agreement_std": float("nan")}
    return {
        "agreement_mean": round(float(np.mean(clean)), 4),
        "agreement_std": round(float(np.std(clean)), 4),
    }


def evaluate_clones(
    frame: pd.DataFrame,
    budgets: Sequence[int] = (10, 20, 40),
    strategies: Sequence[str] = STRATEGIES,
    *,
    test_frac: float = 0.3,
    min_labels: int = 30,
    seeds: Sequence[int] = (0, 1, 2),
    batch: int = 10,
    truth: Mapping[str, str] | None = None,
    advice_threshold: float = 0.9,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """The report described in the module docstring, as a JSON-ready dict.

    Means and standard deviations are across people, of each person's mean over seeds.
    ``truth`` (item id -> true label), where given, adds each person's accuracy and the
    advice figures: the person's accuracy against the truth on their test items, and
    theirs if they took the ``personal_full`` clone's answer whenever it disagrees with
    confidence above ``advice_threshold``.
    """
    if not 0.0 < test_frac < 1.0:
        raise TwinkitError(f"--test-frac must be between 0 and 1, got {test_frac}")
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown:
        raise TwinkitError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
    features = feature_columns(frame)
    frame = frame.assign(label=frame["label"].astype(str), item_id=frame["item_id"].astype(str))
    classes = sorted(frame["label"].unique())
    if len(classes) < 2:
        raise TwinkitError(f"decisions need at least two labels, found {classes}")
    counts = frame.groupby("twin_id").size()
    people = sorted(str(t) for t in counts[counts >= min_labels].index)
    skipped = {str(t): int(n) for t, n in counts[counts < min_labels].items()}
    if not people:
        raise TwinkitError(
            f"no person has at least {min_labels} labels (most: {int(counts.max())})"
        )
    budgets = sorted(set(int(b) for b in budgets))
    per_twin: dict[str, Any] = {}
    advice_rows: list[dict[str, Any]] = []
    say = Steps(len(people) * len(seeds), progress)
    for person in people:
        mine = frame[frame["twin_id"] == person].reset_index(drop=True)
        others = frame[frame["twin_id"] != person]
        runs: dict[str, dict[int, list[float]]] = {s: {b: [] for b in budgets} for s in strategies}
        kappas: dict[str, dict[int, list[float]]] = {
            s: {b: [] for b in budgets} for s in strategies
        }
        base: dict[str, list[float]] = {"population": [], "personal_full": [], "majority": []}
        covered: list[int] = []
        for seed in seeds:
            say(f"{person} seed {seed}")
            rng = np.random.default_rng(seed)
            order = rng.permutation(len(mine))
            n_test = max(1, round(len(mine) * test_frac))
            test, train = mine.iloc[order[:n_test]], mine.iloc[order[n_test:]]
            test_x = test[features].to_numpy(dtype=np.float64)
            test_y = test["label"].tolist()
            population = train_population(others, classes, features, seed)
            base["population"].append(agreement(test_y, population.predict(test_x)))
            train_x = train[features].to_numpy(dtype=np.float64)
            full = personalize(
                population, train_x, train["label"].tolist(), unlabeled=train_x, seed=seed
            )
            base["personal_full"].append(agreement(test_y, full.predict(test_x)))
            votes = others.groupby("item_id")["label"].agg(
                lambda s: Counter(s).most_common(1)[0][0]
            )
            seen = test["item_id"].isin(votes.index).to_numpy()
            covered.append(int(seen.sum()))
            if seen.any():
                majority = votes.loc[test["item_id"][seen]].tolist()
                base["majority"].append(agreement(np.asarray(test_y)[seen].tolist(), majority))
            if truth is not None:
                known = test["item_id"].isin(list(truth)).to_numpy()
                if known.any():
                    proba = full.predict_proba(test_x[known])
                    advice_rows.append(
                        {
                            "twin": person,
                            **advice(
                                [truth[i] for i in test["item_id"][known]],
                                np.asarray(test_y)[known].tolist(),
                                [classes[i] for i in proba.argmax(axis=1)],
                                proba.max(axis=1),
                                advice_threshold,
                            ),
                        }
                    )
            for name in strategies:
                pool = Pool(train_x, train["item_id"].tolist())
                donor = PoolDonor(dict(zip(train["item_id"], train["label"], strict=True)))

                def score(
                    clone: CloneModel, x: np.ndarray = test_x, y: list[str] = test_y
                ) -> tuple[float, float]:
                    said = clone.predict(x)
                    return agreement(y, said), kappa(y, said)

                run = learn_clone(
                    pool,
                    donor,
                    strategy(name, seed),
                    population,
                    budgets,
                    batch=batch,
                    seed=seed,
                    evaluate=score,
                    follow=False,  # recorded answers do not change: no rechecks
                )
                if len(run.asked) != len(set(run.asked)):
                    raise TwinkitError(f"{name} asked an item twice")  # pragma: no cover
                for b in budgets:
                    runs[name][b].append(run.at_budget[b][0])
                    kappas[name][b].append(run.at_budget[b][1])
        row: dict[str, Any] = {
            "n_labels": len(mine),
            "n_test": max(1, round(len(mine) * test_frac)),
            "majority_covered": round(float(np.mean(covered)), 1),
            "baselines": {k: _mean(v) for k, v in base.items()},
            "strategies": {s: {str(b): _mean(runs[s][b]) for b in budgets} for s in strategies},
            "kappa": {s: {str(b): _mean(kappas[s][b]) for b in budgets} for s in strategies},
        }
        if truth is not None:
            labelled = mine[mine["item_id"].isin(list(truth))]
            if len(labelled):
                gold = labelled["item_id"].map(truth).to_numpy()
                right = labelled["label"].to_numpy() == gold
                row["accuracy_vs_truth"] = round(float(right.mean()), 4)
        per_twin[person] = row
    strategies_out = {
        s: {
            str(b): {
                **_stats([per_twin[p]["strategies"][s][str(b)] for p in people]),
                "kappa_mean": round(
                    float(np.nanmean([per_twin[p]["kappa"][s][str(b)] for p in people])), 4
                ),
            }
            for b in budgets
        }
        for s in strategies
    }
    baselines_out = {
        name: _stats([per_twin[p]["baselines"][name] for p in people])
        for name in ("population", "personal_full", "majority")
    }
    report: dict[str, Any] = {
        "strategies": strategies_out,
        "baselines": baselines_out,
        "per_twin": per_twin,
        "advice": _advice_summary(advice_rows, advice_threshold),
        "data": {
            "rows": len(frame),
            "people": len(people),
            "skipped": skipped,
            "classes": classes,
            "features": len(features),
            "budgets": budgets,
            "test_frac": test_frac,
            "min_labels": min_labels,
            "batch": batch,
        },
        "seeds": list(seeds),
    }
    return report


def _mean(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return round(float(np.mean(clean)), 4) if clean else float("nan")


def _advice_summary(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    if not rows:
        return {}
    n = sum(r["n"] for r in rows)
    return {
        "threshold": threshold,
        "clone": "personal_full",
        "items": n,
        "donor_accuracy": round(sum(r["donor_accuracy"] * r["n"] for r in rows) / n, 4),
        "advised_accuracy": round(sum(r["advised_accuracy"] * r["n"] for r in rows) / n, 4),
        "overrides": sum(r["overrides"] for r in rows),
    }
