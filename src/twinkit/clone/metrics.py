"""How faithful a clone is to its donor, and whether its advice helps the donor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import cohen_kappa_score, confusion_matrix


def agreement(donor: Sequence[Any], clone: Sequence[Any]) -> float:
    """Share of items on which the clone answers what the donor answered."""
    a, b = np.asarray(donor, dtype=object), np.asarray(clone, dtype=object)
    if len(a) != len(b):
        raise ValueError(f"{len(a)} donor answers but {len(b)} clone answers")
    return float((a == b).mean()) if len(a) else float("nan")


def kappa(donor: Sequence[Any], clone: Sequence[Any]) -> float:
    """Cohen's kappa between donor and clone (agreement beyond chance); 1.0 when both
    answer one and the same class everywhere."""
    a, b = [str(v) for v in donor], [str(v) for v in clone]
    if not a:
        return float("nan")
    if len(set(a) | set(b)) == 1:
        return 1.0
    return float(cohen_kappa_score(a, b))


def fidelity(donor: Sequence[Any], clone: Sequence[Any], classes: Sequence[str]) -> dict[str, Any]:
    """Agreement, kappa and the clone-versus-donor confusion matrix (rows: donor)."""
    return {
        "n": len(donor),
        "agreement": agreement(donor, clone),
        "kappa": kappa(donor, clone),
        "classes": list(classes),
        "confusion": confusion_matrix(
            [str(v) for v in donor], [str(v) for v in clone], labels=list(classes)
        ).tolist(),
    }


def advice(
    truth: Sequence[Any],
    donor: Sequence[Any],
    clone: Sequence[Any],
    clone_confidence: np.ndarray,
    threshold: float = 0.9,
) -> dict[str, float]:
    """The donor's accuracy alone, and if they took the clone's answer whenever it
    disagrees with them with confidence above ``threshold``."""
    t, d, c = (np.asarray(v, dtype=object) for v in (truth, donor, clone))
    take = (c != d) & (np.asarray(clone_confidence) > threshold)
    advised = np.where(take, c, d)
    return {
        "threshold": threshold,
        "n": len(t),
        "donor_accuracy": float((d == t).mean()) if len(t) else float("nan"),
        "advised_accuracy": float((advised == t).mean()) if len(t) else float("nan"),
        "overrides": int(take.sum()),
    }
