"""Poisoning of a clone's training labels on the 8x8 digits: label flips and a corner-patch
backdoor as attacks, and the out-of-fold loss and spectral-signature screens that find
them, down to the opt-in PoisonScreen quarantining flipped labels at ingest."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.data.importers import DecisionBatch, parse_batch
from twinkit.engine import TwinEngine
from twinkit.immunity.poison import (
    Trigger,
    apply_trigger,
    attack_success_rate,
    backdoor,
    flip_labels,
)
from twinkit.immunity.screening import Suspicion, screen_poison, suspicious_rows
from twinkit.screen import DEFAULT_DECISION_SCREENS, Screen, ScreenContext
from twinkit.screen.poison import PoisonScreen

CLASSES = [str(d) for d in range(10)]
PATCH = Trigger.patch((8, 8), size=3, value=1.0)
#: the backdoor's target class and share of the training rows it poisons
TARGET, BACKDOOR_RATE = "0", 0.03
#: the share of training labels flipped at random
FLIP_RATE = 0.1


@dataclass(frozen=True)
class Digits:
    """The digits, pixels in [0, 1], labels as class names: 1,400 to train, 397 to test."""

    x: np.ndarray
    y: list[str]
    x_test: np.ndarray
    y_test: list[str]


@pytest.fixture(scope="session")
def digits() -> Digits:
    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = [CLASSES[int(v)] for v in data.target]
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    return Digits(x[train], [y[i] for i in train], x[test], [y[i] for i in test])


def train(x: np.ndarray, y: list[str]) -> CloneModel:
    return CloneModel(CLASSES, 64, hidden=(64,), seed=0).fit(x, y)


def accuracy(model: CloneModel, x: np.ndarray, y: list[str]) -> float:
    return float(np.mean(np.asarray(model.predict(x)) == np.asarray(y)))


def mask(rows: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rows] = True
    return out


@pytest.fixture(scope="session")
def clean_accuracy(digits: Digits) -> float:
    return accuracy(train(digits.x, digits.y), digits.x_test, digits.y_test)


@dataclass(frozen=True)
class Flipped:
    labels: list[str]
    flipped: np.ndarray  # bool per training row
    loss: Suspicion


@pytest.fixture(scope="session")
def flipped(digits: Digits) -> Flipped:
    """10% of the training labels flipped at random, and the loss screen's verdict."""
    labels, rows = flip_labels(digits.y, FLIP_RATE, CLASSES, seed=1)
    loss = suspicious_rows(digits.x, labels, CLASSES, method="loss", folds=5, seed=0)
    return Flipped(labels, mask(rows, len(labels)), loss)


@dataclass(frozen=True)
class Backdoored:
    x: np.ndarray
    labels: list[str]
    poisoned: np.ndarray  # bool per training row


@pytest.fixture(scope="session")
def backdoored(digits: Digits) -> Backdoored:
    x, labels, rows = backdoor(
        digits.x, digits.y, trigger=PATCH, target=TARGET, rate=BACKDOOR_RATE, seed=2
    )
    return Backdoored(x, labels, mask(rows, len(labels)))


# -- label flipping ----------------------------------------------------------------------
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 1.0])
def test_flip_labels_flips_exactly_the_share_to_other_classes(digits: Digits, rate: float) -> None:
    labels, rows = flip_labels(digits.y, rate, CLASSES, seed=3)

    assert len(rows) == round(rate * len(digits.y))
    assert rows.dtype == np.int64
    assert np.array_equal(rows, np.unique(rows))
    changed = np.flatnonzero(np.asarray(labels) != np.asarray(digits.y))
    assert np.array_equal(changed, rows)  # every listed row changed, and no other
    assert set(labels) <= set(CLASSES)
    if rate >= 0.37:  # flips go to every other class, not one favourite
        assert len({(digits.y[i], labels[i]) for i in rows}) > 60


def test_flip_labels_is_reproducible_by_seed(digits: Digits) -> None:
    first = flip_labels(digits.y, 0.1, CLASSES, seed=5)
    again = flip_labels(digits.y, 0.1, CLASSES, seed=5)
    other = flip_labels(digits.y, 0.1, CLASSES, seed=6)

    assert first[0] == again[0]
    assert np.array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_targeted_flips_only_source_to_target(digits: Digits) -> None:
    sources = np.flatnonzero(np.asarray(digits.y) == "3")

    labels, rows = flip_labels(digits.y, 0.5, CLASSES, seed=0, targeted=("3", "8"))

    assert len(rows) == round(0.5 * len(sources))  # a share of the source class
    assert set(rows) <= set(sources)
    assert {labels[i] for i in rows} == {"8"}
    changed = np.flatnonzero(np.asarray(labels) != np.asarray(digits.y))
    assert np.array_equal(changed, rows)


def test_flip_labels_rejects_what_it_cannot_do(digits: Digits) -> None:
    with pytest.raises(TwinkitError, match="share between 0 and 1"):
        flip_labels(digits.y, 1.5, CLASSES, seed=0)
    with pytest.raises(TwinkitError, match="not one of"):
        flip_labels(["1", "x"], 0.5, ["1", "2"], seed=0)
    with pytest.raises(TwinkitError, match="two different classes"):
        flip_labels(digits.y, 0.1, CLASSES, seed=0, targeted=("3", "3"))


# -- backdoors ---------------------------------------------------------------------------
def test_patch_trigger_is_the_bottom_right_corner() -> None:
    corner = {r * 8 + c for r in range(5, 8) for c in range(5, 8)}

    assert set(PATCH.features) == corner
    assert set(PATCH.values) == {1.0}
    assert Trigger.patch((8, 8), size=2, corner="top_left").features == (0, 1, 8, 9)
    with pytest.raises(TwinkitError, match="does not fit"):
        Trigger.patch((8, 8), size=9)


def test_backdoor_stamps_the_trigger_within_range_and_relabels(
    digits: Digits, backdoored: Backdoored
) -> None:
    rows = np.flatnonzero(backdoored.poisoned)
    clean = ~backdoored.poisoned
    pixels = np.asarray(PATCH.features)

    assert len(rows) == round(BACKDOOR_RATE * len(digits.y))
    assert all(digits.y[i] != TARGET for i in rows)  # only other classes are poisoned
    assert all(backdoored.labels[i] == TARGET for i in rows)
    assert (backdoored.x[np.ix_(rows, pixels)] == 1.0).all()
    assert backdoored.x.min() >= 0.0 and backdoored.x.max() <= 1.0
    # the rest of each poisoned row, and every other row, is untouched
    others = np.setdiff1d(np.arange(64), pixels)
    assert np.array_equal(backdoored.x[np.ix_(rows, others)], digits.x[np.ix_(rows, others)])
    assert np.array_equal(backdoored.x[clean], digits.x[clean])
    assert [backdoored.labels[i] for i in np.flatnonzero(clean)] == [
        digits.y[i] for i in np.flatnonzero(clean)
    ]
    again = backdoor(digits.x, digits.y, trigger=PATCH, target=TARGET, rate=0.03, seed=2)
    assert np.array_equal(again[2], rows)


def test_tabular_trigger_and_its_range() -> None:
    x = np.random.default_rng(0).normal(size=(100, 5))
    labels = ["a"] * 50 + ["b"] * 50

    xp, yp, rows = backdoor(
        x, labels, trigger={3: 2.5, 0: -2.0}, target="b", rate=0.2, seed=0, low=-3.0, high=3.0
    )

    assert len(rows) == 20 and all(labels[i] == "a" and yp[i] == "b" for i in rows)
    assert (xp[rows][:, [0, 3]] == [-2.0, 2.5]).all()
    assert np.array_equal(apply_trigger(x, Trigger.of({0: -2.0, 3: 2.5}))[rows], xp[rows])
    with pytest.raises(TwinkitError, match="outside the valid range"):
        backdoor(x, labels, trigger={0: 5.0}, target="b", rate=0.1, seed=0, low=-3, high=3)
    with pytest.raises(TwinkitError, match="only 50 are not labelled"):
        backdoor(x, labels, trigger={0: 1.0}, target="b", rate=0.6, seed=0, low=-3, high=3)


def test_a_backdoored_clone_obeys_the_trigger_and_stays_accurate(
    digits: Digits, backdoored: Backdoored, clean_accuracy: float
) -> None:
    honest = train(digits.x, digits.y)
    poisoned = train(backdoored.x, backdoored.labels)

    success = attack_success_rate(poisoned, digits.x_test, PATCH, TARGET, labels=digits.y_test)
    baseline = attack_success_rate(honest, digits.x_test, PATCH, TARGET, labels=digits.y_test)
    poisoned_accuracy = accuracy(poisoned, digits.x_test, digits.y_test)

    assert success > 0.8
    assert baseline < 0.2  # it is the poison, not the patch itself, that says "0"
    assert poisoned_accuracy >= clean_accuracy - 0.03


# -- screening ---------------------------------------------------------------------------
def test_loss_screen_finds_planted_flips(flipped: Flipped) -> None:
    flagged = flipped.loss.flagged

    recall = flagged[flipped.flipped].mean()
    false_quarantine = flagged[~flipped.flipped].mean()

    # The target: recall >= 0.9 with at most 5% of honest rows quarantined.
    assert recall >= 0.9
    assert false_quarantine <= 0.05
    reasons = flipped.loss.reasons
    assert all(str(r).startswith("label improbable: out-of-fold p(label") for r in reasons[flagged])
    assert all(r is None for r in reasons[~flagged])
    assert flipped.loss.proba is not None
    assert np.allclose(flipped.loss.proba.sum(axis=1), 1.0)


def test_training_on_unflagged_rows_is_as_accurate_as_clean_training(
    digits: Digits, flipped: Flipped, clean_accuracy: float
) -> None:
    keep = np.flatnonzero(~flipped.loss.flagged)

    screened = train(digits.x[keep], [flipped.labels[i] for i in keep])

    assert accuracy(screened, digits.x_test, digits.y_test) >= clean_accuracy - 0.03


def test_loss_screen_is_seeded_and_can_flag_a_share() -> None:
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-2, 1, size=(60, 3)), rng.normal(2, 1, size=(60, 3))]
    labels, rows = flip_labels(["a"] * 60 + ["b"] * 60, 0.1, ["a", "b"], seed=0)

    first = suspicious_rows(x, labels, ["a", "b"], folds=3, seed=4, epochs=20)
    again = suspicious_rows(x, labels, ["a", "b"], folds=3, seed=4, epochs=20)
    share = suspicious_rows(x, labels, ["a", "b"], folds=3, seed=4, epochs=20, contamination=0.1)

    assert np.array_equal(first.scores, again.scores)
    assert share.flagged.sum() == 12
    assert share.flagged[rows].mean() >= 0.75  # the flips are the rows of highest loss


def test_spectral_screen_catches_backdoored_rows(backdoored: Backdoored) -> None:
    spectral = suspicious_rows(
        backdoored.x, backdoored.labels, CLASSES, method="spectral", contamination=BACKDOOR_RATE
    )
    floored = suspicious_rows(
        backdoored.x,
        backdoored.labels,
        CLASSES,
        method="spectral",
        contamination=BACKDOOR_RATE,
        min_score=200.0,
    )
    poisoned = backdoored.poisoned

    # 1.5 x the share is flagged: with every backdoored row caught, 1.5% of the rest
    assert spectral.flagged.sum() == np.ceil(1.5 * BACKDOOR_RATE * len(poisoned))
    assert spectral.flagged[poisoned].mean() >= 0.9
    assert spectral.flagged[~poisoned].mean() <= 0.03
    assert spectral.scores[poisoned].min() > spectral.scores[~poisoned].max()
    assert floored.flagged[poisoned].all() and not floored.flagged[~poisoned].any()
    hidden = suspicious_rows(
        backdoored.x,
        backdoored.labels,
        CLASSES,
        method="spectral",
        contamination=BACKDOOR_RATE,
        representation="hidden",
    )
    assert hidden.flagged[poisoned].mean() >= 0.8  # the paper's representation: weaker here
    assert all(
        str(r).startswith(f"spectral outlier in class '{TARGET}'")
        for r in spectral.reasons[poisoned]
    )


def test_screen_poison_merges_both_screens_with_reasons(
    digits: Digits, backdoored: Backdoored
) -> None:
    labels, rows = flip_labels(backdoored.labels, 0.05, CLASSES, seed=7)
    flips = mask(rows, len(labels)) & ~backdoored.poisoned

    screening = screen_poison(backdoored.x, labels, CLASSES, contamination=BACKDOOR_RATE + 0.05)

    loss, spectral = screening.results["loss"], screening.results["spectral"]
    assert np.array_equal(screening.flagged, loss.flagged | spectral.flagged)
    assert screening.flagged[flips].mean() >= 0.8
    assert screening.flagged[backdoored.poisoned].mean() >= 0.9
    both = np.flatnonzero(loss.flagged & spectral.flagged)
    for i in np.flatnonzero(screening.flagged):
        reason = str(screening.reasons[i])
        assert ("label improbable" in reason) == bool(loss.flagged[i])
        assert ("spectral outlier in class" in reason) == bool(spectral.flagged[i])
    assert all("; " in str(screening.reasons[i]) for i in both)


def test_trigger_screen_finds_every_stamped_row_and_no_honest_one(
    digits: Digits, backdoored: Backdoored
) -> None:
    trigger = suspicious_rows(backdoored.x, backdoored.labels, CLASSES, method="trigger")
    honest = suspicious_rows(digits.x, digits.y, CLASSES, method="trigger")

    assert np.array_equal(trigger.flagged, backdoored.poisoned)
    assert not honest.flagged.any()  # no stamped pattern, nothing held
    assert all(
        str(r).startswith("trigger-like features") and f"labelled '{TARGET}'" in str(r)
        for r in trigger.reasons[backdoored.poisoned]
    )
    assert all(r is None for r in trigger.reasons[~backdoored.poisoned])


def test_trigger_screen_spares_a_feature_that_honestly_marks_one_class(digits: Digits) -> None:
    # Prepare: an extra feature set on a fifth of the honest '3's only. It is rare and
    # pure like a trigger, but the rest of those rows agree with their label.
    rng = np.random.default_rng(3)
    threes = np.flatnonzero(np.asarray(digits.y) == "3")
    marked = rng.choice(threes, size=len(threes) // 5, replace=False)
    marker = np.zeros((len(digits.x), 1))
    marker[marked] = 1.0
    x = np.hstack([digits.x, marker])

    # Execute: the same feature stamped on other digits relabelled '3' is a backdoor
    honest = suspicious_rows(x, digits.y, CLASSES, method="trigger")
    others = rng.choice(np.flatnonzero(np.asarray(digits.y) != "3"), size=30, replace=False)
    planted_x, planted_y = x.copy(), list(digits.y)
    planted_x[others, -1] = 1.0
    for i in others:
        planted_y[i] = "3"
    planted = suspicious_rows(planted_x, planted_y, CLASSES, method="trigger")

    # Assert: the honest marker is spared, the planted one holds every row carrying it
    assert not honest.flagged.any()
    assert planted.flagged[others].all()
    assert np.array_equal(planted.flagged, planted_x[:, -1] == 1.0)


def test_poison_screen_takes_a_sequence_of_screens() -> None:
    screen = PoisonScreen(method=("loss", "trigger"))
    assert screen.methods == ("loss", "trigger")
    assert PoisonScreen(method="both").methods == ("loss", "spectral")
    with pytest.raises(TwinkitError, match="method must be"):
        PoisonScreen(method=("loss", "median"))  # type: ignore[arg-type]


# -- at ingest ---------------------------------------------------------------------------
@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TwinEngine]:
    """An engine whose decisions pass the default screens and then a PoisonScreen."""
    screens: tuple[Screen, ...] = (*DEFAULT_DECISION_SCREENS, PoisonScreen())
    engine = TwinEngine(f"sqlite:///{tmp_path}/poison.db", decision_screens=screens)
    engine.create_twin("donor", "decision")
    yield engine
    engine.store.dispose()


def decisions_frame(x: np.ndarray, labels: list[str], twin: str = "donor") -> pd.DataFrame:
    frame = pd.DataFrame(x, columns=[f"p{j}" for j in range(x.shape[1])])
    frame.insert(0, "item_id", [f"item-{i:04d}" for i in range(len(x))])
    frame.insert(0, "twin_id", twin)
    frame["label"] = labels
    return frame


def test_the_poison_screen_is_opt_in() -> None:
    assert not any(isinstance(s, PoisonScreen) for s in DEFAULT_DECISION_SCREENS)
    assert not any(isinstance(s, PoisonScreen) for s in TwinEngine("sqlite://").decision_screens)


def test_poison_screen_quarantines_flipped_labels_at_ingest(
    guarded: TwinEngine, digits: Digits
) -> None:
    # Prepare: 700 of the donor's answers, 10% of them flipped
    x, honest = digits.x[:700], digits.y[:700]
    labels, rows = flip_labels(honest, FLIP_RATE, CLASSES, seed=8)
    frame = decisions_frame(x, labels)
    flipped_items = {f"item-{i:04d}" for i in rows}

    # Execute
    result = guarded.ingest(frame)

    # Assert: the flips are held with a reason, nothing is lost, and they can come back
    held = guarded.quarantine("donor")
    held_items = {q["record"]["item_id"] for q in held}
    recall = len(held_items & flipped_items) / len(flipped_items)
    false_quarantine = len(held_items - flipped_items) / (len(frame) - len(flipped_items))
    assert recall >= 0.9
    assert false_quarantine <= 0.05
    assert result.quarantine_reasons == {"poison": len(held)}
    assert all(q["reason"].startswith("possible poisoning: label improbable") for q in held)
    assert result.n_stored + result.n_quarantined == len(frame) == result.n_rows
    assert guarded.twin_summary("donor")["decisions"] == result.n_stored
    assert guarded.verify().ok

    assert guarded.release([q["id"] for q in held]) == len(held)
    assert guarded.quarantine("donor") == []
    assert guarded.twin_summary("donor")["decisions"] == len(frame)
    assert guarded.verify().ok


def test_poison_screen_leaves_small_batches_and_signals_alone(digits: Digits) -> None:
    labels, _ = flip_labels(digits.y[:40], 0.5, CLASSES, seed=0)
    batch = parse_batch(decisions_frame(digits.x[:40], labels), "small")
    assert isinstance(batch, DecisionBatch)
    screen = PoisonScreen()

    flags = screen.flag(batch, np.ones(len(batch), dtype=bool), ScreenContext())

    assert all(f is None for f in flags)  # under 50 rows: too few to cross-validate on
    times = pd.date_range("2026-01-01", periods=60, freq="5min", tz="UTC")
    signals = pd.DataFrame(
        {"twin_id": "s", "time": times.strftime("%Y-%m-%dT%H:%M:%SZ"), "channel": "g", "value": 1.0}
    )
    signal_batch = parse_batch(signals, "signals")
    assert all(f is None for f in screen.flag(signal_batch, np.ones(60, bool), ScreenContext()))
    with pytest.raises(TwinkitError, match="method must be"):
        PoisonScreen(method="median")  # type: ignore[arg-type]
