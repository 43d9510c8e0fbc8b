"""Evasion attacks on a clone of the 8x8 digits: budgets, strength, targets, seeds, and a
cross-check against the Adversarial Robustness Toolbox's PGD."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.immunity import (
    InputLogits,
    false_alarm,
    fgsm,
    make_safe,
    pgd,
    robust_accuracy,
    square,
)
from twinkit.immunity.attacks import Norm, numpy_global_seed
from twinkit.models.torch_threads import seeded

DIGIT_CLASSES = [str(d) for d in range(10)]
#: an L-infinity budget (pixels in [0, 1]) where PGD leaves a little accuracy, so that
#: "stronger" is measurable; at 0.1 it leaves none
EPS = 0.05


@dataclass(frozen=True)
class Digits:
    """A digits clone and its held-out items: pixels in [0, 1], labels as indices."""

    model: CloneModel
    x: np.ndarray
    y: np.ndarray

    @property
    def names(self) -> list[str]:
        return [DIGIT_CLASSES[int(v)] for v in self.y]


@pytest.fixture(scope="session")
def digits() -> Digits:
    """An MLP clone trained on 1,400 digits; the other 397 are the items attacked."""
    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:]
    model = CloneModel(DIGIT_CLASSES, 64, hidden=(64,), seed=0).fit(
        x[train], [DIGIT_CLASSES[v] for v in y[train]]
    )
    return Digits(model, x[test], y[test])


@pytest.fixture(scope="session")
def pgd_linf(digits: Digits) -> np.ndarray:
    """Untargeted PGD-Linf at EPS, 40 steps, one random start, seed 0."""
    return pgd(digits.model, digits.x, digits.y, EPS)


# -- budgets -----------------------------------------------------------------------------
@pytest.mark.parametrize("eps", [0.0, 0.02, 0.1, 0.3])
def test_linf_budget_and_range_hold_exactly(digits: Digits, eps: float) -> None:
    for x_adv in (
        fgsm(digits.model, digits.x, digits.y, eps),
        pgd(digits.model, digits.x, digits.y, eps, steps=10, restarts=2),
        pgd(digits.model, digits.x, None, eps, steps=10, targeted=True, target="3"),
    ):
        assert x_adv.shape == digits.x.shape
        assert x_adv.dtype == np.float64
        assert np.abs(x_adv - digits.x).max() <= eps + 1e-7
        assert x_adv.min() >= 0.0
        assert x_adv.max() <= 1.0


@pytest.mark.parametrize("eps", [0.0, 0.3, 1.0, 3.0])
def test_l2_budget_and_range_hold_exactly(digits: Digits, eps: float) -> None:
    for x_adv in (
        pgd(digits.model, digits.x, digits.y, eps, norm="l2", steps=10, restarts=2),
        pgd(digits.model, digits.x, None, eps, norm="l2", steps=10, targeted=True, target=3),
    ):
        assert np.linalg.norm(x_adv - digits.x, axis=1).max() <= eps + 1e-6
        assert x_adv.min() >= 0.0
        assert x_adv.max() <= 1.0


def test_per_feature_range_holds(digits: Digits) -> None:
    # The border pixels may not change at all, the others only inside [0.1, 0.9] or
    # where they already are.
    low = np.full(64, 0.1)
    high = np.full(64, 0.9)
    border = np.zeros((8, 8), dtype=bool)
    border[[0, -1], :] = border[:, [0, -1]] = True
    x = np.clip(digits.x, low, high)
    low[border.ravel()] = high[border.ravel()] = 0.5
    x[:, border.ravel()] = 0.5
    runs: tuple[tuple[Norm, float], ...] = (("linf", 0.2), ("l2", 1.5))
    for norm, eps in runs:
        x_adv = pgd(digits.model, x, digits.y, eps, norm=norm, steps=10, low=low, high=high)
        assert (x_adv >= low).all()
        assert (x_adv <= high).all()
        assert (x_adv[:, border.ravel()] == 0.5).all()


# -- strength ----------------------------------------------------------------------------
def test_attacks_lower_accuracy_and_pgd_beats_fgsm(digits: Digits, pgd_linf: np.ndarray) -> None:
    clean = robust_accuracy(digits.model, digits.x, digits.y)
    under_fgsm = robust_accuracy(
        digits.model, fgsm(digits.model, digits.x, digits.y, EPS), digits.y
    )
    under_pgd = robust_accuracy(digits.model, pgd_linf, digits.y)
    assert clean > 0.9
    assert under_fgsm < clean - 0.3
    assert under_pgd <= under_fgsm
    assert under_pgd < 0.1
    # A larger budget leaves nothing standing; so does a moderate L2 one.
    strong = pgd(digits.model, digits.x, digits.y, 0.1)
    assert robust_accuracy(digits.model, strong, digits.y) < 0.02
    l2 = pgd(digits.model, digits.x, digits.y, 1.0, norm="l2")
    assert robust_accuracy(digits.model, l2, digits.y) < 0.05


def test_labels_as_names_or_indices_give_the_same_attack(
    digits: Digits, pgd_linf: np.ndarray
) -> None:
    by_name = pgd(digits.model, digits.x, digits.names, EPS)
    np.testing.assert_array_equal(by_name, pgd_linf)
    assert robust_accuracy(digits.model, pgd_linf, digits.names) == robust_accuracy(
        digits.model, pgd_linf, digits.y
    )


def test_targeted_pgd_reaches_the_target(digits: Digits) -> None:
    for target in ("0", "8"):
        x_adv = pgd(digits.model, digits.x, None, 0.2, targeted=True, target=target)
        hit = np.mean(np.asarray(digits.model.predict(x_adv)) == target)
        assert hit > 0.9, (target, hit)
    # one target per item: the next digit
    nxt = (digits.y + 1) % 10
    x_adv = pgd(digits.model, digits.x, None, 0.2, targeted=True, target=nxt)
    assert robust_accuracy(digits.model, x_adv, nxt) > 0.9
    # targeted FGSM moves toward the target too, if far less surely (one step overshoots)
    for target in ("0", "8"):
        x_fgsm = fgsm(digits.model, digits.x, None, EPS, targeted=True, target=target)
        before = np.mean(np.asarray(digits.model.predict(digits.x)) == target)
        assert np.mean(np.asarray(digits.model.predict(x_fgsm)) == target) > before + 0.05


def test_make_safe_and_false_alarm_move_predictions_their_way(digits: Digits) -> None:
    model, dangerous, safe = digits.model, "1", "7"
    ones = digits.x[digits.y == 1]
    sevens = digits.x[digits.y == 7]
    assert np.mean(np.asarray(model.predict(ones)) == safe) < 0.1
    assert np.mean(np.asarray(model.predict(sevens)) == dangerous) < 0.1

    disguised = make_safe(model, ones, dangerous, safe, 0.15)
    assert np.mean(np.asarray(model.predict(disguised)) == safe) > 0.9
    alarmed = false_alarm(model, sevens, safe, dangerous, 0.15)
    assert np.mean(np.asarray(model.predict(alarmed)) == dangerous) > 0.9

    # With labels, only the rows of the class named first are attacked.
    mixed = make_safe(model, digits.x, dangerous, safe, 0.15, labels=digits.names)
    untouched = digits.y != 1
    np.testing.assert_array_equal(mixed[untouched], digits.x[untouched])
    assert np.mean(np.asarray(model.predict(mixed[~untouched])) == safe) > 0.9
    assert np.abs(mixed - digits.x).max() <= 0.15 + 1e-7


# -- reproducibility ---------------------------------------------------------------------
def test_same_seed_same_attack_other_seed_other_start(digits: Digits, pgd_linf: np.ndarray) -> None:
    np.testing.assert_array_equal(pgd(digits.model, digits.x, digits.y, EPS, seed=0), pgd_linf)
    other = pgd(digits.model, digits.x, digits.y, EPS, seed=1)
    assert not np.array_equal(other, pgd_linf)
    # batching does not change a deterministic (no random start) attack
    fixed = pgd(digits.model, digits.x, digits.y, EPS, steps=10, random_start=False)
    batched = pgd(
        digits.model, digits.x, digits.y, EPS, steps=10, random_start=False, batch_size=64
    )
    np.testing.assert_allclose(batched, fixed, atol=1e-6)


def test_more_restarts_are_never_weaker(digits: Digits, pgd_linf: np.ndarray) -> None:
    three = pgd(digits.model, digits.x, digits.y, EPS, restarts=3)
    assert robust_accuracy(digits.model, three, digits.y) <= robust_accuracy(
        digits.model, pgd_linf, digits.y
    )
    # per item: every item the single run fooled, three runs fool too
    fooled_once = digits.model.predict_proba(pgd_linf).argmax(axis=1) != digits.y
    fooled_thrice = digits.model.predict_proba(three).argmax(axis=1) != digits.y
    assert (fooled_thrice | ~fooled_once).all()


# -- input checks ------------------------------------------------------------------------
def test_bad_inputs_are_named(digits: Digits) -> None:
    model, x, y = digits.model, digits.x, digits.y
    with pytest.raises(TwinkitError, match="outside the valid range"):
        pgd(model, x + 0.5, y, EPS)
    with pytest.raises(TwinkitError, match="eps"):
        fgsm(model, x, y, -0.1)
    with pytest.raises(TwinkitError, match="needs a target"):
        pgd(model, x, y, EPS, targeted=True)
    with pytest.raises(TwinkitError, match="true labels"):
        pgd(model, x, None, EPS)
    with pytest.raises(TwinkitError, match="not one of"):
        pgd(model, x[:2], ["1", "eleven"], EPS)
    with pytest.raises(TwinkitError, match="not a class index"):
        robust_accuracy(model, x[:2], np.array([1, 10]))
    with pytest.raises(TwinkitError, match="norm"):
        pgd(model, x, y, EPS, norm="l1")  # type: ignore[arg-type]
    with pytest.raises(TwinkitError, match="same"):
        make_safe(model, x, "1", "1", EPS)


# -- against a reference implementation --------------------------------------------------
def test_input_logits_are_the_clones_answers(digits: Digits) -> None:
    with torch.no_grad():
        logits = InputLogits(digits.model)(torch.as_tensor(digits.x))
    proba = torch.softmax(logits, dim=1).numpy()
    np.testing.assert_allclose(proba, digits.model.predict_proba(digits.x), atol=1e-6)


@pytest.mark.parametrize("eps", [0.03, EPS])
def test_pgd_at_least_as_strong_as_art(digits: Digits, eps: float) -> None:
    """Same budget, steps, step size and random start as the Adversarial Robustness
    Toolbox's PGD; robust accuracy averaged over 5 seeds (one seed's random starts move it
    by about a point)."""
    from art.attacks.evasion import ProjectedGradientDescentPyTorch
    from art.estimators.classification import PyTorchClassifier

    steps, seeds = 40, range(5)
    classifier = PyTorchClassifier(
        InputLogits(digits.model),
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(digits.x.shape[1],),
        nb_classes=len(digits.model.classes),
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    ours, theirs = [], []
    for seed in seeds:
        x_ours = pgd(digits.model, digits.x, digits.y, eps, steps=steps, seed=seed)
        ours.append(robust_accuracy(digits.model, x_ours, digits.y))
        attack = ProjectedGradientDescentPyTorch(
            classifier,
            norm=np.inf,
            eps=eps,
            eps_step=2.5 * eps / steps,
            max_iter=steps,
            num_random_init=1,
            batch_size=len(digits.x),
            verbose=False,
        )
        with numpy_global_seed(seed), seeded(seed):
            x_theirs = attack.generate(digits.x.astype(np.float32), y=np.asarray(digits.y))
        x_theirs_np = np.asarray(x_theirs, dtype=np.float64)
        assert np.abs(x_theirs_np - digits.x).max() <= eps + 1e-6
        theirs.append(robust_accuracy(digits.model, np.clip(x_theirs_np, 0.0, 1.0), digits.y))
    assert np.mean(ours) <= np.mean(theirs) + 0.01, (ours, theirs)


@pytest.fixture(scope="session")
def binarized_cnn() -> tuple[CloneModel, np.ndarray, np.ndarray]:
    """A CNN clone of the 8x8 digits that thresholds its pixels at 0.5, and 200 held-out
    items."""
    data = load_digits()
    x = np.asarray(data.data, dtype=np.float64) / 16.0
    y = np.asarray(data.target, dtype=np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:1400], order[1400:1600]
    model = CloneModel(DIGIT_CLASSES, 64, image_shape=(8, 8), binarize=0.5, seed=0)
    model.fit(x[train], [DIGIT_CLASSES[v] for v in y[train]])
    return model, x[test], y[test]


def test_square_keeps_the_budget_is_seeded_and_needs_images(
    binarized_cnn: tuple[CloneModel, np.ndarray, np.ndarray], digits: Digits
) -> None:
    """Square's items lie in the ball and the range exactly; a seed fixes them; a clone
    without an image shape is refused."""
    model, x, y = binarized_cnn
    eps = 0.3
    found = square(model, x[:50], y[:50], eps, queries=100, seed=0)
    assert np.abs(found - x[:50]).max() <= eps + 1e-12
    assert found.min() >= 0.0 and found.max() <= 1.0
    np.testing.assert_array_equal(found, square(model, x[:50], y[:50], eps, queries=100, seed=0))
    with pytest.raises(TwinkitError, match="needs an image clone"):
        square(digits.model, digits.x, digits.y, eps)


def test_a_thresholded_clone_is_attacked_through_its_threshold(
    binarized_cnn: tuple[CloneModel, np.ndarray, np.ndarray],
) -> None:
    """The threshold has no gradient, yet PGD through its straight-through gradient (BPDA)
    and the gradient-free Square attack both fool the binarized clone on items that only
    cross the threshold can change."""
    model, x, y = binarized_cnn
    clean = robust_accuracy(model, x, y)
    eps = 0.3
    by_pgd = robust_accuracy(model, pgd(model, x, y, eps, seed=0), y)
    by_square = robust_accuracy(model, square(model, x, y, eps, queries=300, seed=0), y)
    assert clean > 0.8, clean
    assert by_pgd < clean - 0.2, (clean, by_pgd)
    assert by_square < clean - 0.1, (clean, by_square)
