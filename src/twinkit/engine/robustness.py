"""A decision twin's robustness report: its clone, trained on the twin's own labels, under
registered evasion attacks, undefended and vaccinated
(:func:`~twinkit.immunity.evasion.evasion_report`).

A twin's features are in the units its donor's items came in, while attack budgets are
fractions of a valid range: each feature is scaled to [0, 1] by the smallest and largest
value among the twin's own labelled items, so ``eps=0.1`` lets an attack move every
feature by a tenth of its observed range and never outside it. The labelled items are
split, per label and seeded, into a training part (the clone learns it, the vaccine is
made from it) and a held-out part (what is attacked and scored).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from twinkit.core.errors import TwinkitError
from twinkit.core.twin import TwinKind, public_id
from twinkit.engine import reads
from twinkit.immunity.base import DEFAULT_ATTACKS, ClassifierAttack, attack_class

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

#: fewest labelled decisions a report is made from
MIN_LABELS = 12
#: share of each label's items held out to be attacked
TEST_SHARE = 1 / 3


def labelled_items(
    ctx: EngineContext, twin_id: str
) -> tuple[np.ndarray, list[str], list[str], np.ndarray, np.ndarray]:
    """The twin's labelled decisions: (features scaled to [0, 1], labels, feature names,
    each feature's low and high in its own units). Refuses a twin that is not a decision
    twin, or has fewer than :data:`MIN_LABELS` complete rows or a single label."""
    twin = reads.get_twin(ctx, twin_id)
    if twin.kind is not TwinKind.DECISION:
        raise TwinkitError(
            f"twin {twin.id!r} is a {twin.kind.value} twin; robustness reports are for "
            "decision twins"
        )
    stored = reads.decisions(ctx, twin_id)
    rows = [json.loads(f) for f in stored["features"]]
    names = sorted({name for row in rows for name in row})
    raw = np.asarray(
        [[np.nan if row.get(n) is None else float(row[n]) for n in names] for row in rows],
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    complete = np.asarray(np.isfinite(raw).all(axis=1) & bool(names), dtype=bool)
    labels = [str(v) for v, ok in zip(stored["label"], complete.tolist(), strict=True) if ok]
    raw = raw[complete]
    if len(labels) < MIN_LABELS or len(set(labels)) < 2:
        raise TwinkitError(
            f"twin {twin.id!r} has {len(labels)} labelled decision(s) with every feature and "
            f"{len(set(labels))} distinct label(s); a robustness report needs at least "
            f"{MIN_LABELS} and two labels: upload more decisions first"
        )
    low, high = raw.min(axis=0), raw.max(axis=0)
    span = np.where(high > low, high - low, 1.0)  # a constant feature stays at 0
    return (raw - low) / span, labels, names, low, high


def holdout_split(labels: Sequence[str], share: float, seed: int) -> np.ndarray:
    """A mask of held-out rows: ``round(share * n)`` of each label's rows (at least one of
    a label with two or more, none of a label seen once), chosen at random with ``seed``.

    >>> int(holdout_split(["a"] * 6 + ["b"] * 3 + ["c"], 1 / 3, seed=0).sum())
    3
    """
    held = np.zeros(len(labels), dtype=bool)
    rng = np.random.default_rng(seed)
    values = np.asarray(labels, dtype=object)
    for label in sorted(set(labels)):
        rows = np.flatnonzero(values == label)
        if len(rows) < 2:
            continue
        k = min(len(rows) - 1, max(1, round(share * len(rows))))
        held[rng.choice(rows, size=k, replace=False)] = True
    return held


def check_attacks(attacks: Sequence[str], image_shape: tuple[int, int] | None = None) -> None:
    """Refuse, before any work, an attack that is not a registered classifier attack, or
    that perturbs images when the twin's decisions are flat features (a twin whose
    metadata says ``"image": [h, w]`` is attacked as images of that shape)."""
    for name in attacks:
        cls = attack_class(name, "classifier")
        if issubclass(cls, ClassifierAttack) and cls.needs_images and image_shape is None:
            raise TwinkitError(
                f"the {name} attack perturbs images, and this twin's decisions are flat "
                'features (its metadata has no "image": [height, width]): choose another '
                "attack"
            )


def clone_robustness(
    ctx: EngineContext,
    twin_id: str,
    *,
    eps: Sequence[float] = (0.05, 0.1),
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    vaccine: int = 100,
    pgd_steps: int = 20,
    adv_training: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """The robustness report of the twin's clone (the immunity benchmark's layout without
    its poisoning part, see :func:`~twinkit.immunity.evasion.evasion_report`; ``attacks``
    any registered classifier attacks), plus ``twin``, the scaling of the features and
    how the items were split."""
    from twinkit.immunity.evasion import evasion_report, split_items

    shape = reads.get_twin(ctx, twin_id).image_shape
    check_attacks(attacks, shape)
    x, labels, names, low, high = labelled_items(ctx, twin_id)
    held = holdout_split(labels, TEST_SHARE, seed)
    y = np.asarray(labels, dtype=object)
    items = split_items(x[~held], y[~held].tolist(), x[held], y[held].tolist(), shape)
    report = evasion_report(
        items,
        eps=eps,
        vaccine=vaccine,
        seed=seed,
        pgd_steps=pgd_steps,
        attacks=attacks,
        adv_training=adv_training,
    )
    report["twin"] = public_id(twin_id)
    report["data"]["source"] = (
        "the twin's own labelled decisions, split per label: the clone is trained on "
        f"{int((~held).sum())} and attacked on the {int(held.sum())} held out"
    )
    report["threat_model"]["feature_scaling"] = {
        "features": names,
        "low": low.tolist(),
        "high": high.tolist(),
        "note": "eps is a fraction of each feature's range among the twin's labelled items",
    }
    return report


__all__ = [
    "MIN_LABELS",
    "TEST_SHARE",
    "check_attacks",
    "clone_robustness",
    "holdout_split",
    "labelled_items",
]
