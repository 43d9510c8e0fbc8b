"""Query strategies and the learning loop: nothing asked twice, uncertainty near borders."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from twinkit.clone import (
    STRATEGIES,
    Pool,
    PoolDonor,
    Queries,
    QueryContext,
    QueryStrategy,
    learn_clone,
    strategy,
)
from twinkit.clone.model import CloneModel
from twinkit.clone.query import UncertaintyQuery, margins
from twinkit.core.errors import TwinkitError

CLASSES = ["a", "b", "c"]
#: a short fine-tuning per batch, without the cross-validated check (the defaults cost
#: about 4 x 300 steps per batch): the loop, not the fit, is under test
QUICK = {"epochs": 40, "check": False}


class Spy(QueryStrategy):
    """Wraps a strategy and records, per call, what was free, what it chose and the
    clone's margins on the chosen rows at the time."""

    def __init__(self, inner: QueryStrategy) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: list[tuple[set[int], list[int]]] = []
        self.chosen_margins: list[float] = []

    def select(self, context: QueryContext, k: int, rng: np.random.Generator) -> np.ndarray:
        free = {int(i) for i in context.pool.unasked()}
        rows = self.inner.select(context, k, rng)
        self.calls.append((free, [int(r) for r in rows]))
        if len(rows):
            proba = context.clone.predict_proba(context.pool.features[rows])
            self.chosen_margins += [float(m) for m in margins(proba)]
        return rows


def blob_pool(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], n: int = 200
) -> tuple[Pool, PoolDonor]:
    """A pool of ``n`` blob items and a donor who recorded the true class of each."""
    x, y = make_blobs(n, 51)
    ids = [f"item-{i:03d}" for i in range(n)]
    donor = PoolDonor({item: CLASSES[c] for item, c in zip(ids, y, strict=True)})
    return Pool(x, ids), donor


@pytest.mark.parametrize("name", STRATEGIES)
def test_no_item_is_asked_twice(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]],
    blob_prior: CloneModel,
    name: str,
    pinned_torch: None,
) -> None:
    """With every strategy, budgets 10/20/30 in batches of 10 ask exactly 30 distinct
    pool items; each batch is drawn from items unasked at that moment, none twice in a
    batch; the clone is evaluated at every budget and every answer is recorded."""
    # Prepare
    pool, donor = blob_pool(make_blobs)
    spy = Spy(strategy(name, seed=0))

    # Execute
    run = learn_clone(
        pool,
        donor,
        spy,
        blob_prior,
        (10, 20, 30),
        batch=10,
        seed=0,
        evaluate=lambda c: c,
        fit_kwargs=QUICK,
        follow=False,  # the strategy alone, without the follower's checks
    )

    # Assert
    assert run.strategy == name
    assert len(run.asked) == 30
    assert len(set(run.asked)) == 30
    assert set(run.asked) <= set(pool.item_ids)
    assert [len(chosen) for _, chosen in spy.calls] == [10, 10, 10]
    for free, chosen in spy.calls:
        assert len(set(chosen)) == len(chosen)
        assert set(chosen) <= free
    asked_rows = [pool.item_ids.index(item) for item in run.asked]
    assert sorted(asked_rows) == sorted(np.flatnonzero(pool.asked).tolist())
    assert run.answered == {item: donor.answers[item] for item in run.asked}
    assert sorted(run.at_budget) == [10, 20, 30]
    assert run.clone is run.at_budget[30]


def test_uncertainty_picks_lower_margin_items_than_random(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Items chosen by uncertainty sampling have, under the clone that chose them, a far
    lower top-1 minus top-2 margin on average than items chosen at random."""
    mean_margin: dict[str, float] = {}
    for name in ("random", "uncertainty"):
        pool, donor = blob_pool(make_blobs)
        spy = Spy(strategy(name))
        learn_clone(
            pool, donor, spy, blob_prior, (10, 20, 30), batch=10, fit_kwargs=QUICK, follow=False
        )
        mean_margin[name] = float(np.mean(spy.chosen_margins))
    assert mean_margin["uncertainty"] < mean_margin["random"] - 0.2


def test_uncertainty_first_batch_is_the_priors_smallest_margins(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Before any label the clone is the prior: the first batch is exactly the ten pool
    items with the smallest margins under the prior (margin and entropy alike rank
    the border first)."""
    pool, _ = blob_pool(make_blobs)
    context = QueryContext(
        pool, blob_prior, blob_prior, np.zeros((0, 2)), np.zeros(0, dtype=np.int64)
    )
    gap = margins(blob_prior.predict_proba(pool.features))
    rows = UncertaintyQuery().select(context, 10, np.random.default_rng(0))
    assert set(rows.tolist()) == set(np.argsort(gap)[:10].tolist())
    by_entropy = UncertaintyQuery("entropy").select(context, 10, np.random.default_rng(0))
    assert float(gap[by_entropy].mean()) < float(np.median(gap))


def test_loop_stops_when_the_pool_runs_out(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """A budget larger than the pool asks every item once and stops; budget 0 records
    the prior itself."""
    pool, donor = blob_pool(make_blobs, n=25)
    run = learn_clone(
        pool,
        donor,
        strategy("random"),
        blob_prior,
        (0, 40),
        batch=10,
        evaluate=lambda c: c,
        fit_kwargs=QUICK,
        follow=False,  # every question new, so the pool is what runs out
    )
    assert sorted(run.asked) == sorted(pool.item_ids)
    assert run.at_budget[0] is blob_prior
    assert run.at_budget[40] is run.clone


def test_unanswered_queries_count_against_the_budget(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """A donor who recorded answers for only half the pool leaves the rest unanswered:
    those questions are spent (asked) but teach nothing (not in ``answered``)."""
    pool, full = blob_pool(make_blobs, n=60)
    donor = PoolDonor({k: v for i, (k, v) in enumerate(full.answers.items()) if i % 2 == 0})
    run = learn_clone(
        pool, donor, strategy("random"), blob_prior, (20,), batch=10, fit_kwargs=QUICK, follow=False
    )
    assert len(run.asked) == 20
    assert set(run.answered) == {item for item in run.asked if item in donor.answers}
    assert len(run.answered) < 20


def test_an_answer_outside_the_classes_is_an_error(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """A donor's answer that is not one of the classes stops the loop, naming it."""
    pool, full = blob_pool(make_blobs, n=20)
    donor = PoolDonor(dict.fromkeys(full.answers, "zebra"))
    with pytest.raises(TwinkitError, match="'zebra'"):
        learn_clone(pool, donor, strategy("random"), blob_prior, (10,))


def test_bad_strategy_names_and_budgets_are_refused(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Unknown strategy names, unknown uncertainty measures, and empty or negative
    budgets are errors."""
    with pytest.raises(TwinkitError, match="unknown query strategy 'bald'"):
        strategy("bald")
    with pytest.raises(TwinkitError, match="'variance'"):
        UncertaintyQuery("variance")
    pool, donor = blob_pool(make_blobs, n=20)
    for budgets in ((), (10, -1)):
        with pytest.raises(TwinkitError, match="budgets"):
            learn_clone(pool, donor, strategy("random"), blob_prior, budgets)


def test_pool_refuses_repeated_ids_and_re_asking() -> None:
    """Pool item ids must be unique; marking an already asked row is an error."""
    with pytest.raises(TwinkitError, match="repeat"):
        Pool(np.zeros((2, 2)), ["x", "x"])
    pool = Pool(np.zeros((3, 2)), ["x", "y", "z"])
    pool.mark(np.array([1]))
    assert pool.unasked().tolist() == [0, 2]
    with pytest.raises(TwinkitError, match="asked twice"):
        pool.mark(np.array([0, 1]))
    queries = pool.queries(np.array([2, 0]))
    assert isinstance(queries, Queries)
    assert queries.item_ids == ["z", "x"]
    assert queries.origin == ["pool", "pool"]


def test_tgan_strategy_runs_on_digits(
    digits: tuple[np.ndarray, np.ndarray], digit_prior: CloneModel, pinned_torch: None
) -> None:
    """The T-GAN strategy works on a 64-feature pool too (the 8x8 digits), with a donor
    who differs from the prior (says 7 for every 1): three batches of ten distinct items."""
    x, y = digits
    ids = [f"d{i}" for i in range(800, 1000)]
    answers = {
        item: ("7" if label == "1" else str(label))
        for item, label in zip(ids, y[800:1000], strict=True)
    }
    run = learn_clone(
        Pool(x[800:1000], ids),
        PoolDonor(answers),
        strategy("tgan", seed=0),
        digit_prior,
        (10, 20, 30),
        batch=10,
        fit_kwargs=QUICK,
        follow=False,
    )
    assert len(set(run.asked)) == 30
