"""Personalisation on top of a prior, and what a clone cannot learn (leakage)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from twinkit.clone import ModelDonor, Pool, Queries, learn_clone, personalize, strategy
from twinkit.clone.metrics import agreement
from twinkit.clone.model import CloneModel

CLASSES = ["a", "b", "c"]


def donor_labels(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A donor who answers like everybody, except that the "a" items in the upper half
    plane (second feature above 0) are "b" to them."""
    out = np.asarray([CLASSES[i] for i in y], dtype=object)
    out[in_region(x, y)] = "b"
    return out


def in_region(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where the donor parts from people in general."""
    return np.asarray((y == 0) & (x[:, 1] > 0.0))


def test_personalize_learns_the_donors_region_and_keeps_the_rest(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Fifteen donor labels, all from the region where the donor differs, plus the
    unlabeled pool: the clone agrees with the donor there (the prior never does), and
    elsewhere agrees with the donor almost as often as the prior does."""
    # Prepare
    x_pool, y_pool = make_blobs(300, 21)
    x_test, y_test = make_blobs(600, 22)
    rows = np.flatnonzero(in_region(x_pool, y_pool))[:15]
    said = donor_labels(x_pool, y_pool)[rows]
    truth = donor_labels(x_test, y_test)
    region = in_region(x_test, y_test)

    # Execute
    clone = personalize(blob_prior, x_pool[rows], list(said), unlabeled=x_pool, seed=0)

    # Assert
    prior_says = np.asarray(blob_prior.predict(x_test), dtype=object)
    clone_says = np.asarray(clone.predict(x_test), dtype=object)
    assert agreement(list(truth[region]), list(prior_says[region])) <= 0.1
    assert agreement(list(truth[region]), list(clone_says[region])) >= 0.8
    elsewhere_prior = agreement(list(truth[~region]), list(prior_says[~region]))
    elsewhere_clone = agreement(list(truth[~region]), list(clone_says[~region]))
    assert elsewhere_clone >= elsewhere_prior - 0.08
    assert clone is not blob_prior


def test_distillation_keeps_the_priors_answers_far_from_the_labels(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Labels that all say "b" on one corner of blob "a": with distillation on the pool,
    the clone still answers like the prior on items far (> 1.5) from every label;
    without it (``distill=0``) the same labels drag many of those items along."""
    # Prepare
    x_pool, y_pool = make_blobs(300, 21)
    x_test, _ = make_blobs(600, 22)
    rows = np.flatnonzero(in_region(x_pool, y_pool))[:15]
    said = list(donor_labels(x_pool, y_pool)[rows])
    gaps = np.linalg.norm(x_test[:, None, :] - x_pool[rows][None, :, :], axis=2)
    far = gaps.min(axis=1) > 1.5

    # Execute
    kept = personalize(blob_prior, x_pool[rows], said, unlabeled=x_pool, seed=0, distill=1.0)
    loose = personalize(blob_prior, x_pool[rows], said, unlabeled=x_pool, seed=0, distill=0.0)

    # Assert
    prior_far = blob_prior.predict(x_test[far])
    assert far.sum() >= 100
    assert agreement(prior_far, kept.predict(x_test[far])) >= 0.95
    assert agreement(prior_far, loose.predict(x_test[far])) < 0.8


def test_personalize_without_labels_returns_the_prior(blob_prior: CloneModel) -> None:
    """No labels, no change: the prior itself comes back, untrained further."""
    assert personalize(blob_prior, np.zeros((0, 2)), []) is blob_prior


def test_personalize_leaves_the_prior_untouched(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """Fine-tuning a clone trains a copy: the prior's probabilities are unchanged."""
    x, _ = make_blobs(50, 23)
    before = blob_prior.predict_proba(x)
    personalize(blob_prior, x[:10], ["c"] * 10, unlabeled=x, epochs=20)
    assert np.array_equal(blob_prior.predict_proba(x), before)


def test_random_donor_gives_chance_agreement_on_new_items(
    digits: tuple[np.ndarray, np.ndarray], digit_prior: CloneModel
) -> None:
    """A donor who answers at random (any of ten digits) teaches nothing that carries
    over: on held-out items the clone agrees with that donor's (random) answers about as
    often as chance, far below what the prior's gold-label training would give if the
    clone were judged against gold, i.e. the gold labels do not leak into the score."""
    # Prepare
    x, y = digits
    classes = digit_prior.classes
    rng = np.random.default_rng(31)

    def at_random(features: np.ndarray) -> list[str]:
        return [str(v) for v in rng.choice(classes, len(features))]

    donor = ModelDonor(at_random)
    pool = Pool(x[800:1000], [f"d{i}" for i in range(800, 1000)])

    # Execute
    run = learn_clone(
        pool, donor, strategy("random"), digit_prior, (30,), batch=10, seed=0, follow=False
    )
    test = x[1000:1400]
    said = donor.label(Queries(test, [None] * len(test)))

    # Assert
    assert run.clone is not None
    assert len(run.answered) == 30
    assert agreement(said, run.clone.predict(test)) < 0.25
    assert agreement(list(y[1000:1400]), said) < 0.25  # the donor itself is at chance


def test_check_keeps_the_prior_when_fine_tuning_cannot_beat_it(
    make_blobs: Callable[[int, int], tuple[np.ndarray, np.ndarray]], blob_prior: CloneModel
) -> None:
    """With the cross-validated check (the default), labels that say exactly what the
    prior says cannot be predicted better than the prior does: the prior comes back.
    Fewer labels than folds also return the prior; ``check=False`` trains regardless."""
    x, _ = make_blobs(30, 24)
    same = blob_prior.predict(x)
    assert personalize(blob_prior, x, same, unlabeled=x, epochs=20) is blob_prior
    assert personalize(blob_prior, x[:2], same[:2], folds=3) is blob_prior
    assert personalize(blob_prior, x[:2], same[:2], check=False, epochs=5) is not blob_prior
