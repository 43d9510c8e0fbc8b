"""The clone's learning loop: ask, get answers, retrain; the same for every donor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinkit.clone.donor import Donor, Queries
from twinkit.clone.evolving import (
    DEFAULT_ANSWER_DETECTOR,
    RECHECK_SHARE,
    DonorChange,
    Recheck,
    pick_rechecks,
    recheck_changes,
    recheck_quota,
    window_start,
)
from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool, QueryContext, QueryStrategy
from twinkit.core.errors import TwinkitError

#: the ways a clone may depart from its prior, tried in this order (the first wins ties):
#: the prior's network fine-tuned, kept to the prior's answers on the unlabeled pool (a
#: local personal boundary; it changes least where the labels say nothing), an adapter
#: on the prior's answers held near zero (noisy donors), and a free adapter (a strong
#: personal habit, such as calling many 4s 9s, which it applies wherever it fits)
PERSONALIZATIONS: tuple[dict[str, Any], ...] = (
    {"personal": "finetune"},
    {"personal": "adapter", "pull": 100.0},
    {"personal": "adapter", "pull": 1.0},
)


def personalize(
    population: CloneModel,
    x: np.ndarray,
    labels: Sequence[str],
    *,
    unlabeled: np.ndarray | None = None,
    seed: int = 0,
    check: bool = True,
    folds: int = 3,
    candidates: Sequence[dict[str, Any]] | None = None,
    **fit_kwargs: Any,
) -> CloneModel:
    """A clone: the prior personalised on the donor's labels. No labels, no change: the
    prior itself.

    How it departs from the prior is chosen on the donor's own labels: each of
    ``candidates`` (default :data:`PERSONALIZATIONS`; ``fit_kwargs`` alone when given
    without candidates) is scored by ``folds``-fold cross-validated agreement with the
    donor, and the best is refitted on all the labels, but only if it agrees with the
    donor on more held-out labels than the prior does; otherwise the prior is returned.
    A person whose labels are noise, or ten labels that happen to mislead, cost nothing.
    With ``check=False`` the first candidate is fitted without a vote.
    """
    if len(labels) == 0:
        return population
    x = np.asarray(x, dtype=np.float64)
    said = np.asarray([str(v) for v in labels], dtype=object)
    if candidates is None:
        candidates = [fit_kwargs] if fit_kwargs else list(PERSONALIZATIONS)
    else:
        candidates = [{**c, **fit_kwargs} for c in candidates]

    def tune(rows: np.ndarray, kwargs: dict[str, Any]) -> CloneModel:
        return population.copy(seed=seed).fit(
            x[rows], said[rows].tolist(), prior=population, unlabeled=unlabeled, **kwargs
        )

    if not check:
        return tune(np.arange(len(said)), dict(candidates[0]))
    if len(said) < folds:
        return population
    splits = _folds(x, folds, seed)
    prior_hits = sum(
        int((np.asarray(population.predict(x[held])) == said[held]).sum()) for _, held in splits
    )
    best, best_hits = None, prior_hits
    for kwargs in candidates:
        hits = sum(
            int((np.asarray(tune(kept, dict(kwargs)).predict(x[held])) == said[held]).sum())
            for kept, held in splits
            if len(kept)
        )
        if hits > best_hits:
            best, best_hits = kwargs, hits
    if best is None:
        return population
    return tune(np.arange(len(said)), dict(best))


def _folds(x: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kept, held) row indices of each cross-validation fold. Rows with the same features
    (an item asked again) fall in the same fold, so a fold never scores an answer the
    candidate was trained on a copy of."""
    rng = np.random.default_rng(seed)
    _, first, inverse = np.unique(x, axis=0, return_index=True, return_inverse=True)
    if len(first) == len(x):
        order = rng.permutation(len(x))
        return [(np.setdiff1d(order, order[f::folds]), order[f::folds]) for f in range(folds)]
    rank = np.empty(len(first), dtype=np.int64)
    rank[rng.permutation(len(first))] = np.arange(len(first))
    fold_of = rank[np.asarray(inverse).ravel()] % folds
    return [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)) for f in range(folds)]


@dataclass
class Trajectory:
    """What one learning run asked and how the clone stood at each budget."""

    strategy: str
    asked: list[str] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)
    at_budget: dict[int, Any] = field(default_factory=dict)
    clone: CloneModel | None = None
    #: every answer in arrival order: (item, label); ``answered`` keeps the newest per item
    answers: list[tuple[str, str]] = field(default_factory=list)
    #: per answer, in arrival order: whether the clone of the moment chose the donor's label
    agreed: list[bool] = field(default_factory=list)
    #: the past questions asked again, and what the donor said (see
    #: :mod:`twinkit.clone.evolving`)
    rechecks: list[Recheck] = field(default_factory=list)
    #: the donor's changes found in the rechecks
    changes: list[DonorChange] = field(default_factory=list)
    #: the first answer (index into the answers in order) the clone learns from
    window_start: int = 0
    #: how many times the clone was personalised
    refits: int = 0


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
    follow: bool = True,
    detector: str = DEFAULT_ANSWER_DETECTOR,
    refit_every: int | None = None,
    rechecks: float = RECHECK_SHARE,
) -> Trajectory:
    """Query the donor in batches of ``batch`` until the largest budget is spent (or the
    pool runs out), retraining the clone after each batch (or once ``refit_every``
    answers have come since the last retraining, and at each budget). At each budget (the
    number of questions asked so far) ``evaluate(clone)`` is recorded; budget 0 is the
    prior. Each answer is first checked against the clone of the moment (``agreed``).

    With ``follow`` (the default) the clone follows a donor who changes their mind
    (:mod:`twinkit.clone.evolving`): ``rechecks`` of the questions (a share, at most that
    share of each batch, rounded up) ask again about past answers in the donor's personal
    zone, ``detector`` watches
    whether the donor now contradicts them, and after a change the clone is retrained at
    once on the answers since it began only. A recheck counts as a question asked (its
    item appears in ``asked`` again) and its answer teaches like any other. Without
    ``follow``, every question is new and every answer teaches for good.

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
    items: list[str] = []  # per answer, the item it answers
    usual: list[str] = []  # per answer, what the population prior answers there
    clone = population
    trained_on = 0  # answers when the clone was last personalised
    asked_again = 0  # rechecks asked

    def retrain() -> CloneModel:
        nonlocal trained_on
        trained_on = len(ys)
        run.refits += 1
        start = run.window_start
        return personalize(
            population,
            np.asarray(xs[start:]).reshape(len(ys) - start, pool.features.shape[1]),
            ys[start:],
            unlabeled=pool.features,
            seed=seed,
            **kwargs,
        )

    for budget in targets:
        while len(run.asked) < budget:
            k = min(batch, budget - len(run.asked))
            quota = recheck_quota(len(run.asked), asked_again, k, rechecks) if follow else 0
            again = pick_rechecks(ys, usual, items, run.window_start, quota)
            asked_again += len(again)
            rows = np.zeros(0, dtype=np.int64)
            if len(pool.unasked()) and k > len(again):
                context = QueryContext(
                    pool,
                    clone,
                    population,
                    np.asarray(xs).reshape(len(xs), pool.features.shape[1]),
                    np.asarray([index[y] for y in ys], dtype=np.int64),
                )
                rows = strategy.select(context, k - len(again), rng)
                pool.mark(rows)
            if len(rows) == 0 and not again:
                break
            fresh = pool.queries(rows)
            features = np.concatenate(
                [
                    fresh.features,
                    np.asarray([xs[j] for j in again]).reshape(len(again), pool.features.shape[1]),
                ]
            )
            asked = [str(i) for i in fresh.item_ids] + [items[j] for j in again]
            before = [None] * len(rows) + [ys[j] for j in again]
            answers = donor.label(Queries(features, list(asked), ["pool"] * len(asked)))
            guesses = clone.predict(features)
            people = population.predict(features)
            for n, (item, answer) in enumerate(zip(asked, answers, strict=True)):
                run.asked.append(item)
                if answer is None:
                    continue
                if answer not in index:
                    raise TwinkitError(
                        f"the donor answered {answer!r} for item {item}, "
                        f"not one of {population.classes}"
                    )
                said_before = before[n]
                if said_before is not None:
                    run.rechecks.append(Recheck(len(ys), item, said_before, answer))
                run.answered[item] = answer
                run.answers.append((item, answer))
                run.agreed.append(guesses[n] == answer)
                xs.append(features[n])
                ys.append(answer)
                items.append(item)
                usual.append(people[n])
            changed = False
            if follow:
                run.changes = recheck_changes(run.rechecks, detector, seed)
                changed = window_start(run.changes) != run.window_start
                run.window_start = window_start(run.changes)
            if changed or len(ys) - trained_on >= (refit_every or 1):
                clone = retrain()
        if len(ys) > trained_on:
            clone = retrain()
        if evaluate is not None:
            run.at_budget[budget] = evaluate(clone)
    run.clone = clone
    return run
