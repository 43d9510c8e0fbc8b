"""Donors: recorded answers, a model standing in for a person, answers that come later."""

from __future__ import annotations

import numpy as np
import pytest

from twinkit.clone import Donor, ModelDonor, PoolDonor, Queries, QueueDonor


def queries(*ids: str | None) -> Queries:
    """One 2-feature query per id (features: the row number twice)."""
    return Queries(np.repeat(np.arange(len(ids), dtype=np.float64)[:, None], 2, axis=1), list(ids))


def test_pool_donor_answers_only_recorded_items() -> None:
    """A pool donor answers the items they labelled, and ``None`` for unknown items and
    for synthetic samples (no item id)."""
    donor = PoolDonor({"x": "cat", "y": "dog"})
    assert donor.label(queries("y", None, "x", "z")) == ["dog", None, "cat", None]
    assert donor.label(queries()) == []


def test_model_donor_labels_any_features_as_strings() -> None:
    """A model donor labels synthetic samples too (by their features) and answers an
    empty batch without calling the model."""
    calls: list[int] = []

    def threshold(x: np.ndarray) -> list[str]:
        calls.append(len(x))
        return ["1" if v > 0.5 else "0" for v in x[:, 0]]

    donor = ModelDonor(threshold)
    assert donor.label(queries(None, "a", None)) == ["0", "1", "1"]
    assert donor.label(queries()) == []
    assert calls == [3]


def test_queue_donor_answers_later() -> None:
    """A queue donor answers nothing at first and queues the items; after ``answer`` the
    next ``label`` hands the answers back. Synthetic samples are never queued."""
    # Prepare
    donor = QueueDonor()

    # Execute / Assert: first round, nothing is known
    assert donor.label(queries("a", "b", None)) == [None, None, None]
    assert sorted(donor.pending) == ["a", "b"]

    # the person answers one of them
    assert donor.answer({"a": "cat"}) == []
    assert sorted(donor.pending) == ["b"]
    assert donor.label(queries("a", "b")) == ["cat", None]


def test_queue_donor_reports_answers_for_items_never_asked() -> None:
    """``answer`` returns the ids that were not waiting for an answer and records
    nothing for them; answers for queued items are stored as strings."""
    donor = QueueDonor()
    donor.label(queries("a"))
    unknown = donor.answer({"ghost": "dog", "a": "cat"})
    assert unknown == ["ghost"]
    assert donor.received == {"a": "cat"}
    assert "ghost" not in donor.pending
    assert donor.label(queries("ghost")) == [None]


def test_every_donor_satisfies_the_protocol() -> None:
    """The three donors are ``Donor``s (runtime-checkable protocol)."""
    for donor in (PoolDonor({}), ModelDonor(lambda x: ["a"] * len(x)), QueueDonor()):
        assert isinstance(donor, Donor)


def test_queries_need_one_id_per_row() -> None:
    """Features and item ids of a batch of queries must have the same length."""
    with pytest.raises(ValueError, match="one item id"):
        Queries(np.zeros((3, 2)), ["a", "b"])
    assert len(queries("a", None)) == 2
