"""Confusion labels, border categories and a donor's personal confusion zone."""

from __future__ import annotations

import numpy as np

from twinkit.clone.confusion import (
    border_categories,
    combined_proba,
    confusion_labels,
    confusion_sets,
    confusion_zone,
    swap_rates,
)

DIGITS = ["1", "4", "7"]

#: hand-made probability rows over the classes 1, 4, 7 (default margin 0.2)
PROBA = np.array(
    [
        [0.45, 0.05, 0.50],  # 1 and 7 within 0.05: "1|7"
        [0.90, 0.05, 0.05],  # clear 1
        [0.50, 0.45, 0.05],  # "1|4"
        [0.10, 0.48, 0.42],  # "4|7"
        [0.05, 0.05, 0.90],  # clear 7
        [0.36, 0.30, 0.34],  # all three close; top two are 1 and 7
        [0.00, 0.30, 0.70],  # 4 is 0.4 behind: clear 7
    ]
)


def test_confusion_labels_name_ambiguous_rows_by_every_close_class() -> None:
    """A row whose runner-up is within the margin gets a "1|7"-style label (classes in
    their listed order, not by probability); a clear row gets its single class."""
    labels = confusion_labels(PROBA, DIGITS)
    assert labels == ["1|7", "1", "1|4", "4|7", "7", "1|4|7", "7"]


def test_a_narrower_margin_makes_fewer_rows_ambiguous() -> None:
    """With margin 0.03 only rows whose top two are closer than 0.03 stay ambiguous;
    with margin 1.0 every class is possible everywhere."""
    proba = np.array([[0.44, 0.06, 0.50], [0.49, 0.02, 0.49]])
    assert confusion_labels(proba, DIGITS, margin=0.03) == ["7", "1|7"]
    assert confusion_labels(proba, DIGITS, margin=1.0) == ["1|4|7", "1|4|7"]


def test_confusion_sets_list_the_most_probable_class_first() -> None:
    """Confusion sets are class indices ordered by probability, highest first."""
    assert confusion_sets(PROBA[[0, 3, 1]]) == [(2, 0), (1, 2), (0,)]


def test_border_categories_group_rows_by_their_top_pair() -> None:
    """Each ambiguous row falls on the border of its two most probable classes (pair
    sorted a < b); clear rows fall on no border; the three-way row counts for its top two."""
    borders = border_categories(PROBA)
    assert list(borders) == [(0, 1), (0, 2), (1, 2)]
    assert borders[(0, 1)].tolist() == [2]
    assert borders[(0, 2)].tolist() == [0, 5]
    assert borders[(1, 2)].tolist() == [3]
    assert border_categories(PROBA[[1, 4, 6]]) == {}


def test_combined_proba_is_the_mean_of_the_models() -> None:
    """A row that confuses either model is confusing: the combination is the mean."""
    a = np.array([[1.0, 0.0, 0.0]])
    b = np.array([[0.0, 0.2, 0.8]])
    np.testing.assert_allclose(combined_proba(a, b), [[0.5, 0.1, 0.4]])


def planted_answers(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """100 items of each of three classes (reference answers); the person says class 1
    for 40 of the class-0 items; both the person and other people say 0 for the same
    10 class-2 items (a confusion everybody shares)."""
    reference = np.repeat(np.arange(3), 100)
    person = reference.copy()
    general = reference.copy()
    zeros = np.flatnonzero(reference == 0)
    twos = np.flatnonzero(reference == 2)
    person[rng.choice(zeros, 40, replace=False)] = 1
    shared = rng.choice(twos, 10, replace=False)
    person[shared] = 0
    general[shared] = 0
    return reference, person, general


def test_confusion_zone_names_the_planted_biased_pair_only() -> None:
    """A person who says B where people in general say A in 40% of cases (others 0%)
    has exactly that pair in their zone; the 10% 2->0 confusion that everybody shares,
    and pairs nobody confuses, are not in it."""
    # Prepare
    reference, person, general = planted_answers(np.random.default_rng(41))

    # Execute
    zone = confusion_zone(reference, person, general, ["A", "B", "C"])

    # Assert
    assert [(p.expected, p.said) for p in zone] == [("A", "B")]
    bias = zone[0]
    assert bias.person_rate == 0.4
    assert bias.general_rate == 0.0
    assert bias.excess == 0.4
    assert bias.support == 100
    assert bias.to_dict()["excess"] == 0.4


def test_confusion_zone_with_other_items_for_people_in_general() -> None:
    """``general`` may come from other items (with their own ``reference_general``):
    rates are compared, not item-by-item answers; a person who confuses a pair less than
    others do shows a negative excess, and pairs are sorted by the size of the excess."""
    # Prepare: others say B for 30% of their A items; the person for 5%, and C->A 50%
    reference = np.repeat(np.arange(3), 20)
    person = reference.copy()
    person[:1] = 1  # 1 of 20 A items -> B: 5%
    person[40:50] = 0  # 10 of 20 C items -> A: 50%
    others_reference = np.repeat(np.arange(3), 10)
    others = others_reference.copy()
    others[:3] = 1  # 3 of 10 A items -> B: 30%

    # Execute
    zone = confusion_zone(
        reference, person, others, ["A", "B", "C"], reference_general=others_reference
    )

    # Assert
    assert [(p.expected, p.said) for p in zone] == [("C", "A"), ("A", "B")]
    assert zone[1].excess < 0
    assert abs(zone[1].excess + 0.25) < 1e-12


def test_confusion_zone_needs_support() -> None:
    """A pair whose expected class has fewer than ``min_support`` items is not reported,
    however different the rates."""
    reference = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    person = np.array([1, 1, 1, 1, 1, 1, 1, 1])
    assert confusion_zone(reference, person, reference, ["A", "B"], min_support=5) == []
    zone = confusion_zone(reference, person, reference, ["A", "B"], min_support=2)
    assert [(p.expected, p.said, p.person_rate) for p in zone] == [("A", "B", 1.0)]


def test_swap_rates_are_row_normalised() -> None:
    """Each row of the swap matrix sums to one where its class was expected, else zero."""
    rates = swap_rates(np.array([0, 0, 0, 1]), np.array([0, 1, 1, 1]), 3)
    np.testing.assert_allclose(rates, [[1 / 3, 2 / 3, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
