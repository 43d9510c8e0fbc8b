"""Evolving donors: the agreement stream's detector, and a clone that follows its donor.

The detector's rates are asserted over seeded Bernoulli streams, not on one draw; the
figures quoted in :mod:`twinkit.clone.evolving` come from the same streams over more seeds.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from twinkit.clone.active import learn_clone
from twinkit.clone.donor import ModelDonor, Queries
from twinkit.clone.evolving import (
    ANSWER_DETECTORS,
    Recheck,
    donor_changes,
    pick_rechecks,
    recheck_changes,
    window_start,
)
from twinkit.clone.metrics import agreement
from twinkit.clone.model import CloneModel
from twinkit.clone.query import Pool
from twinkit.clone.simulate import ChangingDonor
from twinkit.clone.strategies import strategy
from twinkit.core.errors import TwinkitError

BlobsFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


def _stream(rng: np.random.Generator, rates: list[tuple[int, float]]) -> np.ndarray:
    """Agreement points: for each (n, disagreement rate), n Bernoulli draws."""
    return np.concatenate([rng.random(n) >= rate for n, rate in rates])


def test_a_rise_in_disagreement_is_found_soon_after_it_begins() -> None:
    delays, starts = [], []
    for seed in range(40):
        agree = _stream(np.random.default_rng(seed), [(300, 0.15), (200, 0.45)])
        late = [c for c in donor_changes(agree) if c.at >= 300]
        if late:
            delays.append(late[0].at + 1 - 300)
            starts.append(late[0].start)
    assert len(delays) >= 38  # found in (nearly) every run
    assert np.median(delays) <= 40
    assert abs(np.median(starts) - 300) <= 15  # and it says where the change began


def test_a_steady_donor_raises_few_false_alarms() -> None:
    alarms = answers = 0
    for seed in range(40):
        rng = np.random.default_rng(seed)
        for rate in (0.05, 0.2, 0.35):
            alarms += len(donor_changes(_stream(rng, [(500, rate)])))
            answers += 500
        # a clone that learns: its disagreement falls, which is not a change of the donor
        learning = np.concatenate([np.linspace(0.5, 0.15, 150), np.full(350, 0.15)])
        alarms += len(donor_changes(rng.random(500) >= learning))
        answers += 500
    assert alarms / answers * 10_000 <= 5  # per 10,000 answers


def test_a_fall_in_disagreement_is_not_a_change() -> None:
    agree = _stream(np.random.default_rng(0), [(100, 0.6), (300, 0.05)])
    assert donor_changes(agree) == []


def test_every_named_detector_finds_a_large_rise_and_unknown_names_are_refused() -> None:
    agree = _stream(np.random.default_rng(1), [(200, 0.05), (200, 0.7)])
    for name in ANSWER_DETECTORS:
        found = donor_changes(agree, name)
        assert found and found[0].at >= 200, name
        assert found[0].disagreement_after > found[0].disagreement_before
    with pytest.raises(TwinkitError, match="unknown drift detector"):
        donor_changes(agree, "sometimes")


def test_replaying_a_growing_stream_finds_each_change_once_at_the_same_answer() -> None:
    agree = _stream(np.random.default_rng(2), [(150, 0.1), (150, 0.6)])
    full = donor_changes(agree)
    grown = [donor_changes(agree[:n]) for n in range(160, 301, 10)]
    assert full and all(g == full[: len(g)] for g in grown)
    assert window_start(full) == full[-1].start and window_start([]) == 0


def test_a_changing_donor_answers_with_their_first_habits_then_their_new_ones() -> None:
    donor = ChangingDonor(
        ModelDonor(lambda x: ["old"] * len(x)), ModelDonor(lambda x: ["new"] * len(x)), 3
    )
    queries = Queries(np.zeros((2, 1)), ["i0", "i1"])
    said = donor.label(queries) + donor.label(queries) + donor.label(queries)
    assert said == ["old", "old", "old", "new", "new", "new"]


def _habit(said: str, instead: str) -> Callable[[np.ndarray], list[str]]:
    """Blob classes by the nearest centre, but always ``instead`` for ``said``."""
    centres = np.array([[0.0, 0.0], [2.5, 0.0], [1.25, 2.2]])
    classes = ["a", "b", "c"]

    def answer(x: np.ndarray) -> list[str]:
        out = [classes[i] for i in np.argmin(((x[:, None] - centres) ** 2).sum(-1), axis=1)]
        return [instead if c == said else c for c in out]

    return answer


def test_a_clone_that_follows_its_donor_agrees_more_with_who_they_became(
    make_blobs: BlobsFn, blob_prior: CloneModel
) -> None:
    x, _ = make_blobs(600, 5)
    test_x, _ = make_blobs(300, 6)
    old, new = _habit("a", "b"), _habit("b", "c")
    runs = {}
    for follow in (True, False):
        donor = ChangingDonor(ModelDonor(old), ModelDonor(new), 120)
        run = learn_clone(
            Pool(x, [f"i{i}" for i in range(len(x))]),
            donor,
            strategy("random", 0),
            blob_prior,
            [120, 240],
            batch=10,
            seed=0,
            evaluate=lambda clone: agreement(new(test_x), clone.predict(test_x)),
            follow=follow,
            refit_every=40,
        )
        runs[follow] = run
    followed, not_followed = runs[True], runs[False]
    assert not_followed.changes == [] and not_followed.rechecks == []
    assert len(set(not_followed.asked)) == 240  # every question new
    # up to three of every ten questions ask again where the donor departed from the
    # prior (the first batches have few such answers to ask about)
    assert 60 <= len(followed.rechecks) <= 72
    assert len(set(followed.asked)) == 240 - len(followed.rechecks)
    assert not any(r.contradicts for r in followed.rechecks if r.answer < 120)
    found = [c for c in followed.changes if c.at >= 120]
    assert found and found[0].at + 1 - 120 <= 50
    assert 110 <= followed.window_start <= 130
    assert len(followed.agreed) == len(followed.answers) == 240
    # every 40 answers, and once more at once after the change was found
    assert followed.refits == not_followed.refits + 1 == 7
    assert followed.at_budget[240] >= 0.95
    assert followed.at_budget[240] > not_followed.at_budget[240] + 0.05


def test_rechecks_ask_again_in_the_donors_zone_longest_ago_first() -> None:
    labels = ["b", "a", "b", "c", "b", "b"]
    usual = ["a", "a", "a", "c", "a", "a"]  # what people in general answer
    items = ["i0", "i1", "i2", "i3", "i0", "i4"]  # answer 4 asks i0 again

    # the newest answer per item where the donor departs, oldest first; i0 once
    assert pick_rechecks(labels, usual, items, 0, 10) == [2, 4, 5]
    assert pick_rechecks(labels, usual, items, 0, 2) == [2, 4]
    assert pick_rechecks(labels, usual, items, 3, 10) == [4, 5]  # the window starts later


def test_a_donor_who_contradicts_their_past_answers_is_a_change() -> None:
    steady = [Recheck(3 * n, f"i{n}", "9", "9" if n % 10 else "4") for n in range(100)]
    assert recheck_changes(steady) == []  # one answer in ten differs: their own noise
    turned = steady + [Recheck(300 + 3 * n, f"i{n}", "9", "4") for n in range(20)]
    found = recheck_changes(turned)
    assert len(found) == 1 and found[0].start == steady[-1].answer + 1
    assert 300 < found[0].at <= 300 + 3 * 12
    assert found[0].disagreement_after > 0.9 > 0.2 > found[0].disagreement_before
