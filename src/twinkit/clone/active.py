"""The clone's learning loop: ask, get answers, retrain; the same for every donor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twinkit.clone.donor import Donor
from twinkit.clone.evolving import (
    CHECK_SHARE,
    DEFAULT_ANSWER_DETECTOR,
    CheckingQuery,
    DonorChange,
    donor_changes,
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
    order = np.random.default_rng(seed).permutation(len(said))
    splits = [(np.setdiff1d(order, order[f::folds]), order[f::folds]) for f in range(folds)]
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


@dataclass
class Trajectory:
    """What one learning run asked and how the clone stood at each budget."""

    strategy: str
    asked: list[str] = field(default_factory=list)
    answered: dict[str, str] = field(default_factory=dict)
    at_budget: dict[int, Any] = field(default_factory=dict)
    clone: CloneModel | None = None
    #: per answer, in arrival order: whether the clone of the moment chose the donor's label
    agreed: list[bool] = field(default_factory=list)
    #: the donor's changes found in ``agreed`` (see :mod:`twinkit.clone.evolving`)
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
    checks: float = CHECK_SHARE,
) -> Trajectory:
    """Query the donor in batches of ``batch`` until the largest budget is spent (or the
    pool runs out), retraining the clone after each batch (or once ``refit_every``
    answers have come since the last retraining, and at each budget). At each budget (the
    number of questions asked so far) ``evaluate(clone)`` is recorded; budget 0 is the
    prior.

    Each answer is first checked against the clone of the moment (``agreed``). With
    ``follow`` (the default) that agreement stream is watched for a change of the donor
    (:func:`twinkit.clone.evolving.donor_changes`, by ``detector``): after one, the clone
    is retrained at once, on the answers since the change began only; and ``checks`` of
    each batch ask where the clone departs from the prior, which is where a donor who
    dropped a habit shows it (:class:`twinkit.clone.evolving.CheckingQuery`).

    A donor may leave queries unanswered (``None``): they count against the budget, as a
    question asked, but teach nothing.
    """
    if not budgets or min(budgets) < 0:
        raise TwinkitError(f"budgets must be non-negative numbers of questions, got {budgets}")
    rng = np.random.default_rng(seed)
    kwargs = dict(fit_kwargs or {})
    if follow and checks > 0:
        strategy = CheckingQuery(strategy, checks)
    targets = sorted(set(int(b) for b in budgets))
    run = Trajectory(strategy.name)
    index = {c: i for i, c in enumerate(population.classes)}
    xs: list[np.ndarray] = []
    ys: list[str] = []
    clone = population
    trained_on = 0  # answers when the clone was last personalised

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
            guesses = clone.predict(queries.features)
            for row, item, answer, guess in zip(
                rows, queries.item_ids, answers, guesses, strict=True
            ):
                run.asked.append(str(item))
                if answer is None:
                    continue
                if answer not in index:
                    raise TwinkitError(
                        f"the donor answered {answer!r} for item {item}, "
                        f"not one of {population.classes}"
                    )
                run.answered[str(item)] = answer
                run.agreed.append(guess == answer)
                xs.append(pool.features[row])
                ys.append(answer)
            changed = False
            if follow:
                run.changes = donor_changes(run.agreed, detector, seed)
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
