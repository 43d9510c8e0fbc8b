"""Poisoning: attacks on a clone's *training* labels, and the screens that find them.

A clone learns from the labels it is given, so whoever can add rows to its training set
can teach it. Two attacks, as a red team's tools:

- :func:`flip_labels`: a share of the rows relabelled to another class, at random or
  from one source class to one target class (targeted).
- :func:`backdoor`: a trigger (a bright patch in a corner of an image, or a fixed value
  for a few tabular features, :class:`Trigger`) stamped onto a share of the rows, which
  are relabelled to a target class. A clone trained on them answers the target whenever
  it sees the trigger (:func:`apply_trigger`, :func:`attack_success_rate`) and is
  otherwise as accurate as before, which is what makes a backdoor hard to notice.

Two screens, each a score per row (higher is more suspicious) and a rule that flags:

- ``"loss"`` (label flips): every row is scored by a clone that never saw it, one of
  ``folds`` clones each trained on the other folds (stratified by label). A row whose
  given label that clone finds improbable, out-of-fold probability below ``threshold``
  (0.2 by default), is flagged; with ``contamination`` the ``contamination`` share of
  rows with the highest out-of-fold loss are flagged instead. A flipped label disagrees
  with its neighbours' labels, which the other folds teach; an honest label rarely does.
  A second round (the default) scores again with clones trained without the rows the
  first one flagged, which the flips then mislead less.
- ``"spectral"`` (backdoors; spectral signatures, Tran et al. 2018): within each class,
  the rows' representations are centred and projected on the class's top singular
  direction; the squared projection is the score. Backdoored rows share one direction
  (the trigger's) that clean rows of their new class lack, so they stand out along it.
  Two departures from the paper, both measured on the digits: the centre is the
  coordinate-wise median, not the mean (a backdoor puts all its rows in one class, often
  a third of it, which drags a mean halfway toward them and hides them), and each
  class's scores are divided by their median so that classes compare, so that the
  ``ceil(1.5 * contamination * n)`` most outlying rows *overall* are flagged (the
  paper's rule, ``1.5 * contamination`` of *each* class, is ``per_class=True``; it
  under-flags the one class a backdoor fills). The representation is the features
  scaled per feature (``"input"``, the default) or the last hidden layer of a clone
  trained on the rows (``"hidden"``, as in the paper; weaker for the small networks here).

:func:`suspicious_rows` runs one screen; :func:`screen_poison` runs several and gives a
reason per flagged row, which :class:`twinkit.screen.poison.PoisonScreen` turns into
quarantine at ingest. Every function is seeded: a seed fixes the result.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.models.torch_threads import one_thread

#: labels of rows: any values, read as class names with ``str`` (as a clone reads them)
LabelsLike = Sequence[Any] | np.ndarray
#: a bound of the valid input range: one number, or an array broadcast to the features
Bound = float | np.ndarray
#: the poison screens: out-of-fold loss (label flips), spectral signatures (backdoors)
Method = Literal["loss", "spectral"]
#: what the spectral screen looks at: scaled features, or a trained clone's last hidden layer
Representation = Literal["input", "hidden"]

#: the loss screen flags a row whose label has out-of-fold probability below this
DEFAULT_THRESHOLD = 0.2
#: the share of rows the spectral screen assumes poisoned when not told
DEFAULT_CONTAMINATION = 0.05
#: the spectral screen flags 1.5 times the assumed share (Tran et al. 2018)
SPECTRAL_MARGIN = 1.5

# Below this, a spread or a probability is taken as zero.
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


# -- screens ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Suspicion:
    """One screen's verdict: ``scores`` (higher is more suspicious), the rows ``flagged``,
    and a ``reasons`` string per flagged row (``None`` elsewhere).

    The loss screen's score is the out-of-fold cross-entropy ``-log p(label)``, and
    ``proba`` the out-of-fold probabilities (rows, classes); the spectral screen's is the
    squared projection over its class's median, and ``proba`` is ``None``.
    """

    method: Method
    scores: np.ndarray
    flagged: np.ndarray
    reasons: np.ndarray
    proba: np.ndarray | None = None


@dataclass(frozen=True)
class PoisonScreening:
    """Several screens at once: a row is ``flagged`` if any screen flags it; its reason
    joins theirs with "; ". ``results`` holds each screen's :class:`Suspicion`."""

    flagged: np.ndarray
    reasons: np.ndarray
    results: dict[str, Suspicion] = field(default_factory=dict)


def stratified_folds(y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold number (0..folds-1) per row; each class is spread evenly over the folds.

    Within a class the rows are shuffled and dealt out in turn, from a random first fold,
    so even a class of one row does not always land in fold 0.
    """
    if folds < 2:
        raise TwinkitError(f"cross-validation needs at least 2 folds, got {folds}")
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        out[rows] = (int(rng.integers(folds)) + np.arange(len(rows))) % folds
    return out


def out_of_fold_proba(
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    *,
    folds: int = 5,
    seed: int = 0,
    hidden: Sequence[int] = (64,),
    image_shape: tuple[int, int] | None = None,
    epochs: int | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Each row's class probabilities from a clone trained on the other folds only.

    ``y`` holds class indices into ``classes``; fold ``f``'s clone is a
    :class:`CloneModel` (an MLP with ``hidden`` layers, or a CNN with ``image_shape``)
    seeded ``seed + f``, trained as :meth:`CloneModel.fit` trains by default. Rows marked
    in ``exclude`` are scored but no clone trains on them.
    """
    names = list(classes)
    fold = stratified_folds(y, folds, seed)
    proba = np.zeros((len(y), len(names)))
    usable = np.ones(len(y), dtype=bool) if exclude is None else ~np.asarray(exclude, dtype=bool)
    for f in range(folds):
        test = fold == f
        if not test.any():
            continue
        train = ~test & usable
        if not train.any():
            raise TwinkitError("too few rows to hold one fold out: give more rows or fewer folds")
        model = CloneModel(
            names, x.shape[1], hidden=hidden, image_shape=image_shape, seed=seed + f
        ).fit(x[train], [names[i] for i in y[train]], epochs=epochs)
        proba[test] = model.predict_proba(x[test])
    return proba


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """A mask of the ``count`` highest scores (ties broken by row order)."""
    out = np.zeros(len(scores), dtype=bool)
    if count > 0:
        out[np.argsort(-scores, kind="stable")[:count]] = True
    return out


def _loss_screen(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    *,
    folds: int,
    seed: int,
    threshold: float,
    contamination: float | None,
    rounds: int,
    hidden: Sequence[int],
    image_shape: tuple[int, int] | None,
    epochs: int | None,
) -> Suspicion:
    if rounds < 1:
        raise TwinkitError(f"the loss screen needs at least one round, got {rounds}")
    flagged = np.zeros(len(y), dtype=bool)
    for _ in range(rounds):
        # After the first round, the clones train without the rows it flagged.
        proba = out_of_fold_proba(
            x,
            y,
            classes,
            folds=folds,
            seed=seed,
            hidden=hidden,
            image_shape=image_shape,
            epochs=epochs,
            exclude=flagged,
        )
        p_label = proba[np.arange(len(y)), y]
        scores = -np.log(np.maximum(p_label, _TINY))
        if contamination is None:
            flagged = p_label < threshold
        else:
            flagged = _top(scores, round(contamination * len(y)))
    reasons = np.full(len(y), None, dtype=object)
    best = proba.argmax(axis=1)
    for i in np.flatnonzero(flagged):
        reasons[i] = (
            f"label improbable: out-of-fold p(label {classes[y[i]]!r})={p_label[i]:.2f}, "
            f"the other folds' clone says {classes[best[i]]!r} (p={proba[i, best[i]]:.2f})"
        )
    return Suspicion("loss", scores, np.asarray(flagged, dtype=bool), reasons, proba)


def scaled_features(x: np.ndarray) -> np.ndarray:
    """Features centred and divided by their spread, the spread floored at a quarter of
    the features' root-mean-square spread: a near-constant feature (a corner pixel that
    is almost always dark) would otherwise turn its rare values into huge outliers."""
    spread = x.std(axis=0)
    rms = float(np.sqrt(np.mean(spread**2)))
    floor = 0.25 * rms if rms > _TINY else 1.0
    out: np.ndarray = (x - x.mean(axis=0)) / np.maximum(spread, floor)
    return out


def hidden_representation(model: CloneModel, x: np.ndarray) -> np.ndarray:
    """The input of the model's last linear layer (its penultimate representation)."""
    last = [m for m in model.network.modules() if isinstance(m, nn.Linear)][-1]
    seen: list[torch.Tensor] = []

    def keep(_module: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        seen.append(args[0].detach())

    handle = last.register_forward_hook(keep)
    try:
        with torch.no_grad(), one_thread():
            model.logits_of(model.standardize(x))
    finally:
        handle.remove()
    out: np.ndarray = seen[-1].numpy().astype(np.float64)
    return out


def spectral_scores(representation: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per class: squared projection on the top singular direction of the rows centred at
    their coordinate-wise median, over the class's median of it (a class of fewer than 3
    rows scores 0: it has no direction to stand out along)."""
    scores = np.zeros(len(y))
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) < 3:
            continue
        centred = torch.as_tensor(
            representation[rows] - np.median(representation[rows], axis=0), dtype=torch.float64
        )
        # In torch on one thread: NumPy's threaded BLAS crawls beside torch's idle threads.
        with one_thread():
            _, _, vt = torch.linalg.svd(centred, full_matrices=False)
            squared = ((centred @ vt[0]) ** 2).numpy()
        scale = float(np.median(squared))
        if scale <= _TINY:
            scale = float(squared.mean())
        scores[rows] = squared / scale if scale > _TINY else 0.0
    return scores


def _spectral_screen(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    *,
    seed: int,
    contamination: float,
    per_class: bool,
    min_score: float,
    representation: Representation,
    hidden: Sequence[int],
    image_shape: tuple[int, int] | None,
    epochs: int | None,
) -> Suspicion:
    if representation == "input":
        rep = scaled_features(x)
    elif representation == "hidden":
        model = CloneModel(
            classes, x.shape[1], hidden=hidden, image_shape=image_shape, seed=seed
        ).fit(x, [classes[i] for i in y], epochs=epochs)
        rep = hidden_representation(model, x)
    else:
        raise TwinkitError(f"representation must be 'input' or 'hidden', not {representation!r}")
    scores = spectral_scores(rep, y)
    if per_class:
        flagged = np.zeros(len(y), dtype=bool)
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            count = math.ceil(SPECTRAL_MARGIN * contamination * len(rows))
            flagged[rows[_top(scores[rows], count)]] = True
    else:
        flagged = _top(scores, math.ceil(SPECTRAL_MARGIN * contamination * len(y)))
    flagged &= scores > min_score
    reasons = np.full(len(y), None, dtype=object)
    for i in np.flatnonzero(flagged):
        reasons[i] = (
            f"spectral outlier in class {classes[y[i]]!r}: squared projection "
            f"{scores[i]:.1f}x the class median on its top singular direction"
        )
    return Suspicion("spectral", scores, flagged, reasons)


def suspicious_rows(
    x: np.ndarray,
    labels: LabelsLike,
    classes: Sequence[Any],
    *,
    method: Method = "loss",
    folds: int = 5,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    contamination: float | None = None,
    rounds: int = 2,
    per_class: bool = False,
    min_score: float = 0.0,
    representation: Representation = "input",
    hidden: Sequence[int] = (64,),
    image_shape: tuple[int, int] | None = None,
    epochs: int | None = None,
) -> Suspicion:
    """Score every row of a training set for poisoning with one screen, and flag.

    ``method="loss"`` (label flips): ``folds``-fold out-of-fold probabilities of each
    row's label, from clones (MLP ``hidden``, or CNN ``image_shape``) trained on the other
    folds; flags rows with ``p(label) < threshold``, or with ``contamination`` the
    ``round(contamination * n)`` rows of highest out-of-fold loss. With ``rounds`` = 2 (the
    default) it does it twice, the second time with clones trained without the rows the
    first round flagged, so that flipped labels teach them less: on 700 digits with 10%
    flipped that holds 40% fewer honest rows (2.7% instead of 4.6%) and finds more
    flips (99% instead of 97%), for twice the clone fits.

    ``method="spectral"`` (backdoors): spectral signatures on ``representation``; flags
    the ``ceil(1.5 * contamination * n)`` rows (``contamination`` defaults to
    :data:`DEFAULT_CONTAMINATION`) of highest class-normalised score, or with
    ``per_class`` that share of each class. It flags that many whatever the data (give
    the share you fear; a third of the flags are clean rows when the guess is right),
    unless ``min_score`` > 0 also asks a flagged row to score above it: on the 8x8 digits
    clean rows score up to about 170 (99% below 60) and rows carrying a 3x3 corner patch
    over 1,000, so 200 there flags the backdoor and almost no clean row.

    See the module's docstring for why these rules. Labels are read as class names and
    must all be in ``classes``.
    """
    names = _classes(classes)
    given = _names(labels, "labels")
    xs = _features(x, len(given))
    y = _encode(given, names)
    threshold = _check_rate(threshold, "threshold")
    if contamination is not None:
        contamination = _check_rate(contamination, "contamination")
    if len(y) == 0:
        raise TwinkitError("no rows to screen")
    if method == "loss":
        return _loss_screen(
            xs,
            y,
            names,
            folds=folds,
            seed=seed,
            threshold=threshold,
            contamination=contamination,
            rounds=rounds,
            hidden=hidden,
            image_shape=image_shape,
            epochs=epochs,
        )
    if method == "spectral":
        return _spectral_screen(
            xs,
            y,
            names,
            seed=seed,
            contamination=DEFAULT_CONTAMINATION if contamination is None else contamination,
            per_class=per_class,
            min_score=min_score,
            representation=representation,
            hidden=hidden,
            image_shape=image_shape,
            epochs=epochs,
        )
    raise TwinkitError(f"method must be 'loss' or 'spectral', not {method!r}")


def screen_poison(
    x: np.ndarray,
    labels: LabelsLike,
    classes: Sequence[Any],
    *,
    methods: Sequence[Method] = ("loss", "spectral"),
    folds: int = 5,
    seed: int = 0,
    threshold: float = DEFAULT_THRESHOLD,
    contamination: float | None = None,
    rounds: int = 2,
    per_class: bool = False,
    min_score: float = 0.0,
    representation: Representation = "input",
    hidden: Sequence[int] = (64,),
    image_shape: tuple[int, int] | None = None,
    epochs: int | None = None,
) -> PoisonScreening:
    """Run each of ``methods`` (:func:`suspicious_rows`, same options) and merge: a row is
    flagged if any flags it, with their reasons joined by "; ", e.g. ``"label improbable:
    out-of-fold p(label '4')=0.02, ..."`` or ``"spectral outlier in class '7': ..."``.

    Note that ``contamination``, when given, changes the loss screen's rule too (top share
    by loss instead of ``threshold``).
    """
    if not methods:
        raise TwinkitError("no screening methods given")
    results: dict[str, Suspicion] = {}
    for method in dict.fromkeys(methods):
        results[method] = suspicious_rows(
            x,
            labels,
            classes,
            method=method,
            folds=folds,
            seed=seed,
            threshold=threshold,
            contamination=contamination,
            rounds=rounds,
            per_class=per_class,
            min_score=min_score,
            representation=representation,
            hidden=hidden,
            image_shape=image_shape,
            epochs=epochs,
        )
    n = len(next(iter(results.values())).flagged)
    flagged = np.zeros(n, dtype=bool)
    reasons = np.full(n, None, dtype=object)
    for result in results.values():
        for i in np.flatnonzero(result.flagged):
            reasons[i] = (
                result.reasons[i] if reasons[i] is None else (f"{reasons[i]}; {result.reasons[i]}")
            )
        flagged |= result.flagged
    return PoisonScreening(flagged, reasons, results)
