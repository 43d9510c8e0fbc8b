"""Poisoning: attacks on a clone's *training* labels.

A clone learns from the labels it is given, so whoever can add rows to its training set
can teach it. Two attacks, as a red team's tools:

- :func:`flip_labels`: a share of the rows relabelled to another class, at random or
  from one source class to one target class (targeted).
- :func:`backdoor`: a trigger (a bright patch in a corner of an image, or a fixed value
  for a few tabular features, :class:`Trigger`) stamped onto a share of the rows, which
  are relabelled to a target class. A clone trained on them answers the target whenever
  it sees the trigger (:func:`apply_trigger`, :func:`attack_success_rate`) and is
  otherwise as accurate as before, which is what makes a backdoor hard to notice.

The screens that find them are in :mod:`twinkit.immunity.screening`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError

#: labels of rows: any values, read as class names with ``str`` (as a clone reads them)
LabelsLike = Sequence[Any] | np.ndarray
#: a bound of the valid input range: one number, or an array broadcast to the features
Bound = float | np.ndarray

_TINY = 1e-12


# -- labels ----------------------------------------------------------------------------
def _names(values: LabelsLike, what: str) -> list[str]:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise TwinkitError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return [str(v) for v in arr]


def _classes(classes: Sequence[Any]) -> list[str]:
    names = _names(list(classes), "classes")
    if len(names) < 2:
        raise TwinkitError(f"need at least two classes, got {names}")
    if len(set(names)) != len(names):
        raise TwinkitError(f"classes repeat: {names}")
    return names


def _encode(labels: list[str], classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    out = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if label not in index:
            raise TwinkitError(f"label {label!r} (row {i}) is not one of {classes}")
        out[i] = index[label]
    return out


def _check_rate(rate: float, what: str = "rate") -> float:
    value = float(rate)
    if not 0.0 <= value <= 1.0:
        raise TwinkitError(f"{what} must be a share between 0 and 1, got {rate}")
    return value


def _features(x: np.ndarray, n: int | None = None) -> np.ndarray:
    out = np.asarray(x, dtype=np.float64)
    if out.ndim != 2:
        raise TwinkitError(f"expected a (rows, features) matrix, got shape {out.shape}")
    if n is not None and len(out) != n:
        raise TwinkitError(f"{len(out)} feature rows for {n} labels")
    if not np.isfinite(out).all():
        row = int(np.argwhere(~np.isfinite(out))[0][0])
        raise TwinkitError(f"features are not finite (row {row})")
    return out


# -- attacks: label flipping -------------------------------------------------------------
def flip_labels(
    labels: LabelsLike,
    rate: float,
    classes: Sequence[Any],
    *,
    seed: int,
    targeted: tuple[Any, Any] | None = None,
) -> tuple[list[str], np.ndarray]:
    """Relabel a share of the rows to another class; returns the labels and the rows changed.

    Random (``targeted=None``): ``round(rate * n)`` rows drawn without replacement, each
    given a class drawn uniformly from the classes other than its own. Targeted
    (``targeted=(source, target)``): ``round(rate * n_source)`` of the rows labelled
    ``source``, a share of *that class* (the attack's budget is what it can do to one
    class), all relabelled ``target``; no other row changes.

    Labels are read as class names (``str``) and come back as names; every label must be
    one of ``classes``. The rows changed come back sorted (int64); every one of them, and
    no other, differs from its original label. The same seed gives the same flips.

    >>> flip_labels(["a", "a", "b", "b"], 0.5, ["a", "b"], seed=0, targeted=("a", "b"))
    (['a', 'b', 'b', 'b'], array([1]))
    """
    names = _classes(classes)
    given = _names(labels, "labels")
    y = _encode(given, names)
    rate = _check_rate(rate)
    rng = np.random.default_rng(seed)
    out = list(given)
    if targeted is None:
        rows = np.sort(rng.choice(len(y), size=round(rate * len(y)), replace=False))
        # A uniform draw among the k - 1 other classes: shift by 1..k-1, modulo k.
        shift = rng.integers(1, len(names), size=len(rows))
        for row, new in zip(rows, (y[rows] + shift) % len(names), strict=True):
            out[int(row)] = names[int(new)]
        return out, rows.astype(np.int64)
    source, target = (str(c) for c in targeted)
    for name in (source, target):
        if name not in names:
            raise TwinkitError(f"targeted class {name!r} is not one of {names}")
    if source == target:
        raise TwinkitError(f"a targeted flip needs two different classes, got {source!r} twice")
    members = np.flatnonzero(y == names.index(source))
    rows = np.sort(rng.choice(members, size=round(rate * len(members)), replace=False))
    for row in rows:
        out[int(row)] = target
    return out, rows.astype(np.int64)


# -- attacks: backdoors ------------------------------------------------------------------
@dataclass(frozen=True)
class Trigger:
    """A backdoor's trigger: fixed values for a few features (the rest are left alone).

    For an image given as a flat vector, :meth:`patch` builds a square in a corner; for
    tabular data, :meth:`of` takes a mapping ``{feature index: value}``.
    """

    features: tuple[int, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.features:
            raise TwinkitError("a trigger needs at least one feature")
        if len(self.features) != len(self.values):
            raise TwinkitError("a trigger needs one value per feature")
        if len(set(self.features)) != len(self.features):
            raise TwinkitError(f"a trigger's features repeat: {self.features}")
        if min(self.features) < 0:
            raise TwinkitError(f"trigger feature indices must be >= 0, got {self.features}")
        if not all(math.isfinite(v) for v in self.values):
            raise TwinkitError(f"trigger values must be finite, got {self.values}")

    @classmethod
    def of(cls, pattern: Mapping[int, float]) -> Trigger:
        """A tabular trigger: feature index -> the value it is set to."""
        items = sorted((int(k), float(v)) for k, v in pattern.items())
        return cls(tuple(k for k, _ in items), tuple(v for _, v in items))

    @classmethod
    def patch(
        cls,
        image_shape: tuple[int, int],
        size: int = 3,
        value: float = 1.0,
        corner: Literal["bottom_right", "bottom_left", "top_right", "top_left"] = "bottom_right",
    ) -> Trigger:
        """A ``size`` x ``size`` square of ``value`` in a corner of an image of
        ``image_shape`` (height, width), the pixels flattened row by row.

        >>> Trigger.patch((4, 4), size=2).features
        (10, 11, 14, 15)
        """
        height, width = image_shape
        if not 1 <= size <= min(height, width):
            raise TwinkitError(f"a {size}x{size} patch does not fit a {height}x{width} image")
        top = height - size if corner.startswith("bottom") else 0
        left = width - size if corner.endswith("right") else 0
        pixels = [(top + r) * width + (left + c) for r in range(size) for c in range(size)]
        return cls(tuple(pixels), (float(value),) * len(pixels))

    def check(self, n_features: int, low: Bound = -np.inf, high: Bound = np.inf) -> None:
        """Raise unless the trigger fits ``n_features`` and its values lie in the range."""
        if max(self.features) >= n_features:
            raise TwinkitError(
                f"trigger feature {max(self.features)} is outside the {n_features} features"
            )
        lo = np.broadcast_to(np.asarray(low, dtype=np.float64), (n_features,))[list(self.features)]
        hi = np.broadcast_to(np.asarray(high, dtype=np.float64), (n_features,))[list(self.features)]
        values = np.asarray(self.values)
        bad = (values < lo) | (values > hi)
        if bad.any():
            at = int(np.flatnonzero(bad)[0])
            raise TwinkitError(
                f"trigger value {values[at]} for feature {self.features[at]} is outside the "
                f"valid range [{lo[at]}, {hi[at]}]"
            )


def _trigger(trigger: Trigger | Mapping[int, float]) -> Trigger:
    return trigger if isinstance(trigger, Trigger) else Trigger.of(trigger)


def apply_trigger(x: np.ndarray, trigger: Trigger | Mapping[int, float]) -> np.ndarray:
    """A copy of ``x`` (rows, features) with the trigger stamped onto every row."""
    out = _features(x).copy()
    stamp = _trigger(trigger)
    stamp.check(out.shape[1])
    out[:, list(stamp.features)] = np.asarray(stamp.values)
    return out


def backdoor(
    x: np.ndarray,
    labels: LabelsLike,
    *,
    trigger: Trigger | Mapping[int, float],
    target: Any,
    rate: float,
    seed: int,
    low: Bound = 0.0,
    high: Bound = 1.0,
) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Stamp the trigger onto ``round(rate * n)`` rows and relabel them ``target``.

    The rows are drawn without replacement among those *not* labelled ``target`` (a
    stamped row of the target class would teach nothing), so ``rate`` is a share of all
    rows. The trigger's values must lie in ``[low, high]`` (scalars or per-feature
    arrays), so a stamped row of valid features stays valid. Returns the features (a
    float64 copy), the labels as names, and the poisoned rows (sorted int64).
    """
    xs = _features(x)
    names = _names(labels, "labels")
    if len(names) != len(xs):
        raise TwinkitError(f"{len(xs)} feature rows for {len(names)} labels")
    stamp = _trigger(trigger)
    try:
        stamp.check(xs.shape[1], low, high)
    except ValueError as err:
        raise TwinkitError(f"low and high must broadcast to the {xs.shape[1]} features") from err
    goal = str(target)
    others = np.flatnonzero(np.asarray(names, dtype=object) != goal)
    count = round(_check_rate(rate) * len(xs))
    if count > len(others):
        raise TwinkitError(
            f"{count} rows to poison, but only {len(others)} are not labelled {goal!r}"
        )
    rows = np.sort(np.random.default_rng(seed).choice(others, size=count, replace=False))
    out = xs.copy()
    out[np.ix_(rows, np.asarray(stamp.features, dtype=np.int64))] = np.asarray(stamp.values)
    new = list(names)
    for row in rows:
        new[int(row)] = goal
    return out, new, rows.astype(np.int64)


def attack_success_rate(
    model: CloneModel,
    x_clean_nontarget: np.ndarray,
    trigger: Trigger | Mapping[int, float],
    target: Any,
    *,
    labels: LabelsLike | None = None,
) -> float:
    """The share of clean items, stamped with the trigger, that the model answers ``target``.

    Pass items whose true class is not the target; with ``labels`` (their true classes)
    those labelled ``target`` are left out here.
    """
    goal = str(target)
    if goal not in model.classes:
        raise TwinkitError(f"target {goal!r} is not one of the model's classes {model.classes}")
    xs = _features(x_clean_nontarget)
    if labels is not None:
        keep = np.asarray(_names(labels, "labels"), dtype=object) != goal
        if len(keep) != len(xs):
            raise TwinkitError(f"{len(xs)} feature rows for {len(keep)} labels")
        xs = xs[keep]
    if len(xs) == 0:
        raise TwinkitError("no items outside the target class to stamp")
    predicted = np.asarray(model.predict(apply_trigger(xs, trigger)), dtype=object)
    return float(np.mean(predicted == goal))
