"""Which of a twin's past windows a replay buffer keeps."""

from __future__ import annotations

import numpy as np


def reservoir(n: int, k: int, seed: int = 0) -> np.ndarray:
    """Reservoir sampling (Vitter's algorithm R) of ``k`` of ``n`` items seen in order:
    every item is kept with probability k/n, whatever ``n`` turns out to be, in one pass.
    Returns the kept positions, sorted.

    >>> reservoir(10, 3, seed=0).tolist()
    [6, 7, 9]
    >>> reservoir(2, 5).tolist()
    [0, 1]
    """
    if n < 0 or k < 0:
        raise ValueError("n and k must not be negative")
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    kept = np.arange(k)
    for i in range(k, n):
        j = int(rng.integers(0, i + 1))
        if j < k:
            kept[j] = i
    return np.sort(kept)


def stratified(levels: np.ndarray, k: int, bins: int = 4, seed: int = 0) -> np.ndarray:
    """``k`` positions spread evenly over ``bins`` regimes: equal-width bins of the range of
    ``levels`` (e.g. each window's mean glucose), so that a buffer keeps the rare regimes
    (a week of highs after an illness) as well as the common one; a regime with too few
    windows gives its share to the others. Returns sorted positions.

    >>> levels = np.array([1.0] * 90 + [10.0] * 10)
    >>> picked = stratified(levels, 10, bins=2, seed=0)
    >>> int((levels[picked] == 10.0).sum())
    5
    """
    n = len(levels)
    if k >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    edges = np.linspace(float(np.min(levels)), float(np.max(levels)), bins + 1)[1:-1]
    regime = np.searchsorted(edges, levels, side="left")
    groups = [np.flatnonzero(regime == r) for r in range(bins)]
    groups = [g for g in groups if len(g)]
    share = [k // len(groups) + (1 if i < k % len(groups) else 0) for i in range(len(groups))]
    picked: list[np.ndarray] = []
    spare = 0
    for group, want in sorted(zip(groups, share, strict=True), key=lambda gs: len(gs[0])):
        take = min(len(group), want + spare)
        spare = want + spare - take
        picked.append(rng.choice(group, size=take, replace=False))
    return np.sort(np.concatenate(picked))
