"""twinkit's evasion attacks on a clone, registered by name: FGSM, PGD (L-infinity and L2),
BPDA and Square.

Each class is a thin, registered front to a function of :mod:`twinkit.immunity.attacks`,
which holds the maths: ``PGD(steps=40).generate(model, x, y, eps, seed=0)`` is
``pgd(model, x, y, eps, steps=40, seed=0)``, number for number.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np

from twinkit.clone.model import CloneModel
from twinkit.core.errors import TwinkitError
from twinkit.immunity.attacks import Bound, Labels, Norm, Target, fgsm, pgd, square
from twinkit.immunity.base import (
    Access,
    AttackNorm,
    AttackSettings,
    ClassifierAttack,
    register_attack,
)

_LINF_BUDGET = (
    "eps: the most any one feature may change, in the features' units (a fraction of the "
    "range for features in [0, 1])"
)


@register_attack
class FGSM(ClassifierAttack):
    """The fast gradient sign method (Goodfellow et al. 2015): one signed-gradient step."""

    name: ClassVar[str] = "fgsm"
    norm: ClassVar[AttackNorm] = "linf"
    budget: ClassVar[str] = _LINF_BUDGET
    targeted: ClassVar[bool] = True
    access: ClassVar[Access] = "gradient"

    def generate(
        self,
        model: CloneModel,
        x: np.ndarray,
        y: Labels | None,
        eps: float,
        *,
        seed: int = 0,
        low: Bound = 0.0,
        high: Bound = 1.0,
        target: Target | None = None,
    ) -> np.ndarray:
        # One deterministic step: nothing to seed.
        return fgsm(
            model, x, y, eps, low=low, high=high, targeted=target is not None, target=target
        )


@register_attack
class PGD(ClassifierAttack):
    """Projected gradient descent (Madry et al. 2018) in an L-infinity ball, random start."""

    name: ClassVar[str] = "pgd"
    norm: ClassVar[AttackNorm] = "linf"
    budget: ClassVar[str] = _LINF_BUDGET
    targeted: ClassVar[bool] = True
    access: ClassVar[Access] = "gradient"
    checked_by: ClassVar[str | None] = "square"

    def __init__(self, steps: int = 40, restarts: int = 1) -> None:
        if steps < 0 or restarts < 1:
            raise TwinkitError(f"need steps >= 0 and restarts >= 1, got {steps} and {restarts}")
        self.steps = steps
        self.restarts = restarts

    @classmethod
    def from_settings(cls, settings: AttackSettings) -> Self:
        return cls(
            steps=40 if settings.steps is None else settings.steps,
            restarts=1 if settings.restarts is None else settings.restarts,
        )

    @classmethod
    def tiny(cls) -> Self:
        return cls(steps=5)

    def generate(
        self,
        model: CloneModel,
        x: np.ndarray,
        y: Labels | None,
        eps: float,
        *,
        seed: int = 0,
        low: Bound = 0.0,
        high: Bound = 1.0,
        target: Target | None = None,
    ) -> np.ndarray:
        norm: Norm = self.norm
        return pgd(
            model,
            x,
            y,
            eps,
            norm=norm,
            steps=self.steps,
            restarts=self.restarts,
            targeted=target is not None,
            target=target,
            low=low,
            high=high,
            seed=seed,
        )


@register_attack
class PGDL2(PGD):
    """Projected gradient descent (Madry et al. 2018) in an L2 ball, random start."""

    name: ClassVar[str] = "pgd_l2"
    norm: ClassVar[AttackNorm] = "l2"
    budget: ClassVar[str] = (
        "eps: the largest Euclidean length of the change to an item's features, in their units"
    )
    # Square searches an L-infinity ball, which is not this attack's threat model.
    checked_by: ClassVar[str | None] = None


@register_attack
class BPDA(PGD):
    """PGD through a threshold input layer with a straight-through gradient (BPDA)."""

    # Backward pass differentiable approximation (Athalye et al. 2018). Every gradient
    # attack here reads a clone's gradient through InputLogits, which already passes it
    # straight through a ``binarize`` threshold, so BPDA is PGD; it has its own name so
    # that a report can ask for it and say what it ran. On a clone without a threshold
    # there is nothing to approximate, and it is plain PGD.
    name: ClassVar[str] = "bpda"


@register_attack
class Square(ClassifierAttack):
    """The Square attack (Andriushchenko et al. 2020): random search on the answers alone."""

    name: ClassVar[str] = "square"
    norm: ClassVar[AttackNorm] = "linf"
    budget: ClassVar[str] = "eps: the most any one pixel may change, pixels in [0, 1]"
    targeted: ClassVar[bool] = False
    access: ClassVar[Access] = "query"
    needs_images: ClassVar[bool] = True

    def __init__(self, queries: int = 5000) -> None:
        if queries < 1:
            raise TwinkitError(f"queries must be at least 1, got {queries}")
        self.queries = queries

    @classmethod
    def from_settings(cls, settings: AttackSettings) -> Self:
        return cls(queries=5000 if settings.queries is None else settings.queries)

    @classmethod
    def tiny(cls) -> Self:
        return cls(queries=50)

    def generate(
        self,
        model: CloneModel,
        x: np.ndarray,
        y: Labels | None,
        eps: float,
        *,
        seed: int = 0,
        low: Bound = 0.0,
        high: Bound = 1.0,
        target: Target | None = None,
    ) -> np.ndarray:
        self._refuse_target(target)
        if y is None:
            raise TwinkitError("the Square attack needs the items' true labels y")
        if np.any(np.asarray(low) != 0.0) or np.any(np.asarray(high) != 1.0):
            raise TwinkitError("the Square attack works on pixels in [0, 1]: low 0, high 1")
        return square(model, x, y, eps, queries=self.queries, seed=seed)


__all__ = ["BPDA", "FGSM", "PGD", "PGDL2", "Square"]
