"""The attack contract: what every registered :class:`~twinkit.immunity.base.Attack`
keeps, checked with the tiny instance its class builds (``tiny()``) on a tiny model.

A classifier attack is run on a small clone (an MLP over four features in [0, 1], or a
CNN over 8x8 images for an attack that needs images); a forecaster attack on a small
linear AR forecaster of a noisy sine.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import pandas as pd

from twinkit.checks._common import expect, raises
from twinkit.checks.forecasters import sinusoid
from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.immunity.base import (
    ACCESSES,
    NORMS,
    Attack,
    ClassifierAttack,
    ForecasterAttack,
    attack_class,
    registered_attacks,
)
from twinkit.immunity.history_tampering import HistoryBudget
from twinkit.models.linear_ar import LinearAR

#: a check of an attack class
AttackCheck = Callable[[type[Attack]], None]

CLASSES = ["a", "b", "c"]
#: a budget large enough that any working attack changes some answer of a tiny clone
LARGE_EPS = 0.5
SMALL_EPS = 0.15
#: float rounding allowed on a budget or a range
TOLERANCE = 1e-9
#: the forecaster checks' fastest change between readings, per minute
MAX_RATE = 4.0


def tiny_clone(images: bool, seed: int = 0) -> tuple[CloneModel, np.ndarray, list[str]]:
    """A small trained clone, and the items it was trained on (features in [0, 1])."""
    rng = np.random.default_rng(seed)
    n = 60
    which = np.arange(n) % len(CLASSES)
    labels = [CLASSES[i] for i in which]
    if images:
        # A bright 4x4 block in a corner that says the class, over faint noise.
        x = rng.uniform(0.0, 0.3, (n, 8, 8))
        for row, k in enumerate(which):
            top, left = (0, 0) if k == 0 else (0, 4) if k == 1 else (4, 0)
            x[row, top : top + 4, left : left + 4] = rng.uniform(0.7, 1.0, (4, 4))
        flat = x.reshape(n, -1)
        model = CloneModel(CLASSES, 64, image_shape=(8, 8), cnn_width=4, seed=seed)
    else:
        centres = np.asarray(
            [[0.25, 0.25, 0.5, 0.5], [0.75, 0.25, 0.5, 0.5], [0.5, 0.75, 0.5, 0.5]]
        )
        flat = np.clip(centres[which] + rng.normal(0.0, 0.08, (n, 4)), 0.0, 1.0)
        model = CloneModel(CLASSES, 4, hidden=(16,), seed=seed)
    return model.fit(flat, labels, epochs=30), flat, labels


def _classifier(cls: type[Attack]) -> type[ClassifierAttack]:
    if not issubclass(cls, ClassifierAttack):
        raise AssertionError(f"{cls.__name__} is not a classifier attack")
    return cls


def _forecaster(cls: type[Attack]) -> type[ForecasterAttack]:
    if not issubclass(cls, ForecasterAttack):
        raise AssertionError(f"{cls.__name__} is not a forecaster attack")
    return cls


def _size(delta: np.ndarray, norm: str) -> np.ndarray:
    out: np.ndarray = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    return out


def _eps(cls: type[ClassifierAttack], linf: float, n_features: int) -> float:
    """A budget in the attack's norm as large as ``linf`` is in L-infinity."""
    return linf if cls.norm == "linf" else linf * math.sqrt(n_features)


def check_attack_declares(cls: type[Attack]) -> None:
    """It is registered under its name and declares what it attacks, its norm, budget,
    targeting and access; ``tiny()`` builds one; a check it names is a registered query
    attack of its norm."""
    name = cls.__name__
    expect(attack_class(cls.name) is cls, f"{name}: not registered as {cls.name!r}")
    expect(cls.norm in NORMS, f"{name}: norm {cls.norm!r} is not one of {NORMS}")
    expect(cls.access in ACCESSES, f"{name}: access {cls.access!r} is not one of {ACCESSES}")
    expect(isinstance(cls.targeted, bool), f"{name}: targeted must be True or False")
    expect(bool(cls.budget.strip()), f"{name}: says nothing of its budget")
    expect(bool(cls.summary().strip()), f"{name}: no docstring to summarise it")
    expect(type(cls.tiny()) is cls, f"{name}.tiny() built another class")
    if issubclass(cls, ClassifierAttack) and cls.checked_by is not None:
        check = attack_class(cls.checked_by, "classifier")
        expect(
            check.access == "query" and check.norm == cls.norm,
            f"{name}: its check {cls.checked_by!r} must be a query attack in {cls.norm}",
        )


def check_classifier_attack_budget(cls: type[Attack]) -> None:
    """Items come back as float64 of the same shape, inside the range and within the
    budget in the attack's norm; a zero budget changes nothing."""
    attack_cls = _classifier(cls)
    model, x, labels = tiny_clone(attack_cls.needs_images)
    attack = attack_cls.tiny()
    name = cls.__name__
    eps = _eps(attack_cls, SMALL_EPS, model.n_features)
    found = attack.generate(model, x, labels, eps, seed=0)
    expect(isinstance(found, np.ndarray), f"{name}: returned a {type(found).__name__}")
    expect(found.shape == x.shape and found.dtype == np.float64, f"{name}: {found.shape}")
    expect(bool(np.isfinite(found).all()), f"{name}: values not finite")
    inside = (found >= -TOLERANCE) & (found <= 1.0 + TOLERANCE)
    expect(bool(inside.all()), f"{name}: values outside the range [0, 1]")
    worst = float(_size(found - x, attack_cls.norm).max())
    expect(worst <= eps + TOLERANCE, f"{name}: moved an item by {worst} > eps {eps}")
    same = attack.generate(model, x, labels, 0.0, seed=0)
    expect(bool(np.allclose(same, x, rtol=0.0, atol=1e-12)), f"{name}: eps 0 moved items")


def check_classifier_attack_fools(cls: type[Attack]) -> None:
    """At a large budget it changes the answer to some item the clone answered right."""
    attack_cls = _classifier(cls)
    model, x, labels = tiny_clone(attack_cls.needs_images)
    found = attack_cls.tiny().generate(
        model, x, labels, _eps(attack_cls, LARGE_EPS, model.n_features), seed=0
    )
    right = np.asarray(model.predict(x)) == np.asarray(labels)
    fooled = right & (np.asarray(model.predict(found)) != np.asarray(labels))
    expect(bool(fooled.any()), f"{cls.__name__}: fooled none of {int(right.sum())} items")


def check_classifier_attack_seeded(cls: type[Attack]) -> None:
    """The same seed gives the same items."""
    attack_cls = _classifier(cls)
    model, x, labels = tiny_clone(attack_cls.needs_images)
    eps = _eps(attack_cls, SMALL_EPS, model.n_features)
    first = attack_cls.tiny().generate(model, x, labels, eps, seed=5)
    second = attack_cls.tiny().generate(model, x, labels, eps, seed=5)
    expect(np.array_equal(first, second), f"{cls.__name__}: seed 5 gave two results")


def check_classifier_attack_target(cls: type[Attack]) -> None:
    """A targeted attack moves items toward the target (more answer it than before);
    an untargeted one refuses a target."""
    attack_cls = _classifier(cls)
    model, x, labels = tiny_clone(attack_cls.needs_images)
    attack = attack_cls.tiny()
    eps = _eps(attack_cls, LARGE_EPS, model.n_features)
    if not attack_cls.targeted:
        raises(
            TwinkitError,
            partial(attack.generate, model, x, labels, eps, target="a"),
            f"{cls.__name__}: untargeted, given a target",
        )
        return
    found = attack.generate(model, x, None, eps, seed=0, target="a")
    before = int(np.sum(np.asarray(model.predict(x)) == "a"))
    after = int(np.sum(np.asarray(model.predict(found)) == "a"))
    expect(after > before, f"{cls.__name__}: target 'a' answered {after} times, {before} before")
    worst = float(_size(found - x, attack_cls.norm).max())
    expect(worst <= eps + TOLERANCE, f"{cls.__name__}: targeted, moved an item by {worst}")


def check_classifier_attack_bad_input(cls: type[Attack]) -> None:
    """Bad input is refused with a TwinkitError: a wrong feature count, a value not
    finite or outside the range, a negative budget, labels of the wrong count or unknown,
    a clone not yet trained."""
    attack_cls = _classifier(cls)
    model, x, labels = tiny_clone(attack_cls.needs_images)
    attack = attack_cls.tiny()
    nan, outside = x.copy(), x.copy()
    nan[0, 0], outside[1, 1] = np.nan, 1.5
    unknown = [*labels[:-1], "no such class"]
    untrained = CloneModel(CLASSES, model.n_features, image_shape=model.image_shape, seed=0)
    cases: dict[str, Callable[[], object]] = {
        "a feature too many": partial(
            attack.generate, model, np.hstack([x, x[:, :1]]), labels, 0.1
        ),
        "a NaN": partial(attack.generate, model, nan, labels, 0.1),
        "a value outside the range": partial(attack.generate, model, outside, labels, 0.1),
        "a negative budget": partial(attack.generate, model, x, labels, -0.1),
        "a label too few": partial(attack.generate, model, x, labels[:-1], 0.1),
        "an unknown label": partial(attack.generate, model, x, unknown, 0.1),
        "an untrained clone": partial(attack.generate, untrained, x, labels, 0.1),
    }
    for what, action in cases.items():
        raises(TwinkitError, action, f"{cls.__name__}: {what}")


def _forecast_setup() -> tuple[LinearAR, pd.DataFrame, HistoryBudget]:
    frame = sinusoid(n=300, seed=0)
    model = LinearAR.tiny(target="y", seed=0).fit(frame)
    return model, frame, HistoryBudget(eps=5.0, window=6, low=0.0, high=400.0, max_rate=MAX_RATE)


def check_forecaster_attack_budget(cls: type[Attack]) -> None:
    """Only the last ``window`` target readings move, each by at most ``eps``, inside the
    range and the rate limit; nothing else in the history changes; the objective it
    reports is what the forecast from its history gives, and no worse than the truth's."""
    attack_cls = _forecaster(cls)
    model, frame, budget = _forecast_setup()
    horizons, direction = (15, 30), np.asarray([1.0, 1.0])
    found = attack_cls.tiny().generate(model, frame, horizons, direction, budget, seed=0)
    name = cls.__name__
    rows = np.asarray(found.rows)
    expect(0 < len(rows) <= budget.window, f"{name}: moved {len(rows)} readings")
    expect(bool((rows >= len(frame) - budget.window - 1).all()), f"{name}: moved old readings")
    moved = found.context["y"].to_numpy() - frame["y"].to_numpy()
    untouched = np.delete(moved, rows)
    expect(bool(np.all(untouched == 0.0)), f"{name}: changed a reading outside its rows")
    expect(
        bool(np.abs(moved[rows]).max() <= budget.eps + TOLERANCE),
        f"{name}: a reading moved by more than eps {budget.eps}",
    )
    values = found.context["y"].to_numpy()[rows]
    expect(bool(((values >= budget.low) & (values <= budget.high)).all()), f"{name}: range")
    steps = np.abs(np.diff(found.context["y"].to_numpy()[rows[0] - 1 :]))
    truth = np.abs(np.diff(frame["y"].to_numpy()[rows[0] - 1 :]))
    allowed = np.maximum(MAX_RATE * 5.0, truth) + TOLERANCE  # readings 5 minutes apart
    expect(bool((steps <= allowed).all()), f"{name}: a change faster than the rate limit")
    clean = float(direction @ model.predict(frame, horizons).mean)
    pushed = float(direction @ model.predict(found.context, horizons).mean)
    expect(
        math.isclose(pushed, found.objective, rel_tol=1e-9, abs_tol=1e-9),
        f"{name}: reports objective {found.objective}, its history gives {pushed}",
    )
    expect(pushed >= clean - TOLERANCE, f"{name}: pushed the forecast back ({pushed} < {clean})")


def check_forecaster_attack_seeded(cls: type[Attack]) -> None:
    """The same seed gives the same history."""
    attack_cls = _forecaster(cls)
    model, frame, budget = _forecast_setup()
    first, second = (
        attack_cls.tiny().generate(model, frame, (30,), [1.0], budget, seed=5) for _ in range(2)
    )
    expect(
        np.array_equal(first.tampered, second.tampered),
        f"{cls.__name__}: seed 5 gave two histories",
    )


def check_forecaster_attack_bad_input(cls: type[Attack]) -> None:
    """Refused with a TwinkitError: a direction per horizon of the wrong count, a
    history without the target, too few readings before the origin."""
    attack_cls = _forecaster(cls)
    model, frame, budget = _forecast_setup()
    attack = attack_cls.tiny()
    cases: dict[str, Callable[[], object]] = {
        "two directions for one horizon": partial(
            attack.generate, model, frame, (30,), [1.0, 1.0], budget
        ),
        "no target column": partial(
            attack.generate, model, frame.rename(columns={"y": "z"}), (30,), [1.0], budget
        ),
        "one reading": partial(attack.generate, model, frame.iloc[:1], (30,), [1.0], budget),
    }
    for what, action in cases.items():
        raises(TwinkitError, action, f"{cls.__name__}: {what}")


def attack_checks(cls: type[Attack]) -> tuple[AttackCheck, ...]:
    """Every check an attack class is held to, in order (by what it attacks)."""
    if issubclass(cls, ForecasterAttack):
        return (
            check_attack_declares,
            check_forecaster_attack_budget,
            check_forecaster_attack_seeded,
            check_forecaster_attack_bad_input,
        )
    return (
        check_attack_declares,
        check_classifier_attack_budget,
        check_classifier_attack_fools,
        check_classifier_attack_seeded,
        check_classifier_attack_target,
        check_classifier_attack_bad_input,
    )


def check_attack(cls: type[Attack]) -> None:
    """Run every attack check on ``cls``; raises AssertionError at the first broken one."""
    expect(
        issubclass(cls, ClassifierAttack | ForecasterAttack),
        f"{cls.__name__}: subclass ClassifierAttack or ForecasterAttack",
    )
    for check in attack_checks(cls):
        check(cls)


def attack_classes() -> Iterator[type[Attack]]:
    """Every registered attack class."""
    for name in registered_attacks():
        yield attack_class(name)


__all__ = [
    "AttackCheck",
    "attack_checks",
    "attack_classes",
    "check_attack",
    "check_attack_declares",
    "check_classifier_attack_bad_input",
    "check_classifier_attack_budget",
    "check_classifier_attack_fools",
    "check_classifier_attack_seeded",
    "check_classifier_attack_target",
    "check_forecaster_attack_bad_input",
    "check_forecaster_attack_budget",
    "check_forecaster_attack_seeded",
    "tiny_clone",
]
