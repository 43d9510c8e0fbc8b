"""The clone's learning loop: ask, get answers, retrain; the same for every donor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinkit.clone.donor import Donor
from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool, QueryContext, QueryStrategy
from twinkit.core.errors import TwinkitError


def personalize(
    population: CloneModel,
    x: np.ndarray,
    labels: Sequence[str],
    *,
    unlabeled: np.ndarray | None = None,
    seed: int = 0,
    check: bool = True,
    folds: int = 3,
    **fit_kwargs: Any,
) -> CloneModel:
    """A clone: the prior fine-tuned on the donor's labels, kept near the prior (weights
    and answers on ``unlabeled`` items) where the labels say nothing. No labels, no
    change: the prior itself.

    With ``check``, the fine-tuning must earn its place: on ``folds``-fold
    cross-validation over the donor's labels it has to agree with the donor on more
    held-out labels than the prior does, or the prior is returned. A person whose labels
    are noise, or ten labels that happen to mislead, then cost nothing.
    """
    if len(labels) == 0:
        return population
    x = np.asarray(x, dtype=np.float64)
    said = np.asarray([str(v) for v in labels], dtype=object)

    def tune(rows: np.ndarray) -> CloneModel:
        return population.copy(seed=seed).fit(
            x[rows], said[rows].tolist(), prior=population, unlabeled=unlabeled, **fit_kwargs
        )

    if check:
        if len(said) < folds:
            return population
        order = np.random.default_rng(seed).permutation(len(said))
        tuned_hits = prior_hits = 0
        for fold in range(folds):
            held = order[fold::folds]
            kept = np.setdiff1d(order, held)
            if len(kept) == 0:
                continue
            tuned_hits += int((np.asarray(tune(kept).predict(x[held])) == said[held]).sum())
            prior_hits += int((np.asarray(population.predict(x[held])) == said[held]).sum())
        if tuned_hits <= prior_hits:
            return population
    return tune(np.arange(len(said)))


@dataclass
class Trajectory:
    """What one learning run asked and how the clone stood at each budget."""

    strategy: str
    asked: list[str] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)
    at_budget: dict[int, Any] = field(default_factory=dict)
    clone: CloneModel | None = None


def learn_clone(
    pool: Pool,
    donor: Donor,
    strategy: QueryStrategy,
    population: CloneModel,
    budgets: Sequence[int],
    *,
    batch: int = 10,
    seed: int = 0,
    evaluate: Callable[[CloneModel], Any] | None = None,
    fit_kwargs: dict[str, Any] | None = None,
) -> Trajectory:
    """Query the donor in batches of ``batch`` until the largest budget is spent (or the
    pool runs out), retraining the clone after each batch. At each budget (the number of
    questions asked so far) ``evaluate(clone)`` is recorded; budget 0 is the prior.

    A donor may leave queries unanswered (``None``): they count against the budget, as a
    question asked, but teach nothing.
    """
    if not budgets or min(budgets) < 0:
        raise TwinkitError(f"budgets must be non-negative numbers of questions, got {budgets}")
    rng = np.random.default_rng(seed)
    kwargs = dict(fit_kwargs or {})
    targets = sorted(set(int(b) for b in budgets))
    run = Trajectory(strategy.name)
    index = {c: i for i, c in enumerate(population.classes)}
    xs: list[np.ndarray] = []
    ys: list[str] = []
    clone = population
    for budget in targets:
        while len(run.asked) < budget and len(pool.unasked()):
            k = min(batch, budget - len(run.asked))
            context = QueryContext(
                pool,
                clone,
                population,
                np.asarray(xs).reshape(len(xs), pool.features.shape[1]),
                np.asarray([index[y] for y in ys], dtype=np.int64),
            )
            rows = strategy.select(context, k, rng)
            if len(rows) == 0:
                break
            pool.mark(rows)
            queries = pool.queries(rows)
            answers = donor.label(queries)
            for row, item, answer in zip(rows, queries.item_ids, answers, strict=True):
                run.asked.append(str(item))
                if answer is None:
                    continue
                if answer not in index:
                    raise TwinkitError(
                        f"the donor answered {answer!r} for item {item}, "
                        f"not one of {population.classes}"
                    )
                run.answered[str(item)] = answer
                xs.append(pool.features[row])
                ys.append(answer)
            clone = personalize(
                population,
                np.asarray(xs).reshape(len(xs), pool.features.shape[1]),
                ys,
                unlabeled=pool.features,
                seed=seed,
                **kwargs,
            )
        if evaluate is not None:
            run.at_budget[budget] = evaluate(clone)
    run.clone = clone
    return run
