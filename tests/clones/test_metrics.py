"""Fidelity of a clone to its donor, and whether its advice helps the donor."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twinkit.clone.metrics import advice, agreement, fidelity, kappa

CLASSES = ["cat", "dog", "fox"]


def test_agreement_is_the_share_of_equal_answers() -> None:
    """Three of four equal answers: 0.75; no answers: NaN; unequal lengths: an error."""
    assert agreement(["a", "b", "c", "a"], ["a", "b", "c", "b"]) == 0.75
    assert math.isnan(agreement([], []))
    with pytest.raises(ValueError, match="3 donor answers but 2 clone answers"):
        agreement(["a", "b", "c"], ["a", "b"])


def test_kappa_is_one_for_identical_and_near_zero_for_independent_answers() -> None:
    """Identical answers give kappa 1 (also when everybody says the same class);
    independent random answers over three classes give kappa near 0."""
    rng = np.random.default_rng(71)
    donor = [str(v) for v in rng.choice(CLASSES, 5000)]
    clone = [str(v) for v in rng.choice(CLASSES, 5000)]
    assert kappa(donor, donor) == pytest.approx(1.0)
    assert kappa(["cat"] * 5, ["cat"] * 5) == 1.0
    assert abs(kappa(donor, clone)) < 0.05
    assert math.isnan(kappa([], []))


def test_kappa_is_negative_for_systematic_disagreement() -> None:
    """A clone that always answers the other of two classes agrees less than chance."""
    donor = ["cat", "dog"] * 10
    clone = ["dog", "cat"] * 10
    assert kappa(donor, clone) == pytest.approx(-1.0)


def test_fidelity_reports_a_class_by_class_confusion_matrix() -> None:
    """The confusion matrix is (classes x classes), rows the donor's answers, columns
    the clone's, in the listed class order, even for classes nobody used; its rows sum to
    the donor's counts."""
    donor = ["cat", "cat", "dog", "dog", "dog"]
    clone = ["cat", "dog", "dog", "dog", "cat"]
    report = fidelity(donor, clone, CLASSES)
    matrix = np.asarray(report["confusion"])
    assert matrix.shape == (3, 3)
    assert matrix.tolist() == [[1, 1, 0], [1, 2, 0], [0, 0, 0]]
    assert report["n"] == 5
    assert report["agreement"] == pytest.approx(0.6)
    assert report["classes"] == CLASSES
    assert report["kappa"] == pytest.approx(kappa(donor, clone))


def test_confident_clone_advice_raises_the_donors_accuracy() -> None:
    """Where the donor is wrong and the clone, confident (> 0.9), is right, taking the
    clone's answer raises accuracy; unconfident disagreements are not overridden."""
    truth = ["cat", "dog", "fox", "cat", "dog", "fox"]
    donor = ["cat", "cat", "fox", "dog", "dog", "cat"]  # wrong on items 1, 3, 5
    clone = ["cat", "dog", "fox", "cat", "cat", "fox"]  # right on 1, 3, 5; wrong on 4
    confidence = np.array([0.99, 0.95, 0.99, 0.97, 0.50, 0.60])

    report = advice(truth, donor, clone, confidence, threshold=0.9)

    assert report["donor_accuracy"] == pytest.approx(3 / 6)
    assert report["overrides"] == 2  # items 1 and 3; 4 and 5 are not confident
    assert report["advised_accuracy"] == pytest.approx(5 / 6)
    assert report["advised_accuracy"] > report["donor_accuracy"]


def test_advice_of_a_confidently_wrong_clone_costs_accuracy() -> None:
    """The same rule takes a confident but wrong clone's answer too: advice is only as
    good as the clone, and the report shows the loss."""
    truth = ["cat", "dog"]
    donor = ["cat", "dog"]
    clone = ["dog", "dog"]
    report = advice(truth, donor, clone, np.array([0.95, 0.95]))
    assert report["donor_accuracy"] == 1.0
    assert report["advised_accuracy"] == 0.5
    assert report["overrides"] == 1
