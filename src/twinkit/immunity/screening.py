"""Poison screens: which rows of a clone's training set look poisoned.

Two screens, each a score per row (higher is more suspicious) and a rule that flags:

- ``"loss"`` (label flips): every row is scored by a clone that never saw it, one of
  ``folds`` clones each trained on the other folds (stratified by label). A row whose
  given label that clone finds improbable, out-of-fold probability below ``threshold``
  (0.2 by default), is flagged; with ``contamination`` the ``contamination`` share of
  rows with the highest out-of-fold loss are flagged instead. A flipped label disagrees
  with its neighbours' labels, which the other folds teach; an honest label rarely does.
  A second round (the default) scores again with clones trained without the rows the
  first one flagged, which the flips then mislead less.
- ``"trigger"`` (backdoors that stamp a few features, such as a corner patch): a
  feature is *set* in a row when it lies more than half its largest deviation from its
  median. A feature set in a rare group of rows (at least ``TRIGGER_MIN_ROWS``, at most
  a quarter of all rows) that nearly all carry one label (``TRIGGER_PURITY``) is a
  candidate; it is confirmed when, with the candidate features put back at their
  medians, the rows' nearest neighbours among the other rows mostly say another label.
  Every row where a confirmed feature is set is flagged. A planted patch is exactly
  that: rows of every kind of item, all relabelled to the target, sharing a few pixels
  that no honest item sets; a feature that honestly marks one class (a stroke only
  sixes reach) fails the neighbour test, as the rest of those items agree with the
  label. Its limit: a genuine rule on a rare indicator feature (set only when the
  decision is "reject", with the rest of the row looking like accepted ones) looks the
  same, and is flagged for a person to release.
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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.immunity.base import DEFAULT_THRESHOLD, Method, Representation
from twinkit.immunity.poison import (
    LabelsLike,
    _check_rate,
    _classes,
    _encode,
    _features,
    _names,
)
from twinkit.models.torch_threads import one_thread

#: the share of rows the spectral screen assumes poisoned when not told
DEFAULT_CONTAMINATION = 0.05
#: the spectral screen flags 1.5 times the assumed share (Tran et al. 2018)
SPECTRAL_MARGIN = 1.5
#: the trigger screen's candidate feature: at least this share of the rows where it is
#: set carry one label
TRIGGER_PURITY = 0.98
#: ... and is set in at least this many rows (fewer are noise, not a planted pattern)
TRIGGER_MIN_ROWS = 10
#: ... and in at most this share of all rows (a trigger is rare)
TRIGGER_MAX_SHARE = 0.25
#: ... and without it, the nearest neighbours of at least this share of those rows say
#: another label
TRIGGER_DISAGREEMENT = 0.5
#: neighbours asked in that test
TRIGGER_NEIGHBOURS = 5

# Below this, a spread or a probability is taken as zero.
_TINY = 1e-12


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


def _trigger_screen(
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    *,
    purity: float,
    min_rows: int,
) -> Suspicion:
    n = len(y)
    median = np.median(x, axis=0)
    deviation = np.abs(x - median)
    reach = deviation.max(axis=0)
    active = (deviation > 0.5 * reach) & (reach > _TINY)
    support = active.sum(axis=0)
    counts = np.stack([active[y == c].sum(axis=0) for c in range(len(classes))])
    top_class = counts.argmax(axis=0)
    share = counts.max(axis=0) / np.maximum(support, 1)
    candidates = np.flatnonzero(
        (support >= min_rows) & (support <= TRIGGER_MAX_SHARE * n) & (share >= purity)
    )
    scores = np.zeros(n)
    flagged = np.zeros(n, dtype=bool)
    reasons = np.full(n, None, dtype=object)
    if len(candidates) == 0:
        return Suspicion("trigger", scores, flagged, reasons)
    # The neighbour test: the rows with the candidates put back at their medians, asked
    # of the rows where no candidate is set (scaled, so no feature dominates the distance).
    suspects = active[:, candidates].any(axis=1)
    if suspects.all():
        return Suspicion("trigger", scores, flagged, reasons)
    bare = x.copy()
    bare[:, candidates] = median[candidates]
    bare = scaled_features(bare)
    k = min(TRIGGER_NEIGHBOURS, int((~suspects).sum()))
    knn = KNeighborsClassifier(n_neighbors=k).fit(bare[~suspects], y[~suspects])
    said = np.full(n, -1)
    said[suspects] = knn.predict(bare[suspects])
    confirmed: list[int] = []
    for feature in candidates.tolist():
        rows = active[:, feature]
        disagreement = float(np.mean(said[rows] != top_class[feature]))
        if disagreement >= TRIGGER_DISAGREEMENT:
            confirmed.append(feature)
            scores[rows] = np.maximum(scores[rows], disagreement)
            flagged[rows] = True
    for i in np.flatnonzero(flagged):
        mine = [f for f in confirmed if active[i, f]]
        first = mine[0]
        reasons[i] = (
            f"trigger-like features {mine[:6]}{'...' if len(mine) > 6 else ''}: feature "
            f"{first} is set in {int(support[first])} rows, {share[first]:.0%} labelled "
            f"{classes[top_class[first]]!r}, and without the candidates their neighbours "
            f"say another label for {scores[i]:.0%} of them"
        )
    return Suspicion("trigger", scores, flagged, reasons)


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

    ``threshold`` trades missed flips for held honest rows. On sklearn's digits with 10%
    flipped (MLP, two flip seeds) 0.02 found 87-100% of the flips and 0.2 (the default)
    97-100%. On 4,000 MNIST digits (CNN) 0.02 found 92% and held 1.4% of the honest rows
    where 0.2 found 99% and held 3.8%, yet a clone trained on the rows 0.02 kept was less
    accurate (0.925 against 0.936, mean of 5 training seeds): the flips it leaves mislead
    the second round and the clone more than the honest rows it keeps help.

    ``method="trigger"`` (backdoors stamping a few features): rows carrying a rare
    feature that nearly only one label has and that the rest of the row does not explain
    (see the module); on MNIST with a 3x3 corner patch on 5% of the rows it flags every
    stamped row and no other. It takes no options.

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
    if method == "trigger":
        return _trigger_screen(xs, y, names, purity=TRIGGER_PURITY, min_rows=TRIGGER_MIN_ROWS)
    raise TwinkitError(f"method must be 'loss', 'spectral' or 'trigger', not {method!r}")


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
