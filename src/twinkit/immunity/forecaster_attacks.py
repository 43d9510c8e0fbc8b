"""twinkit's evasion attack on forecasters, registered by name: black-box PGD on a
history (:func:`~twinkit.immunity.history_tampering.attack_history`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Self

import numpy as np
import pandas as pd

from twinkit.core.errors import TwinkitError
from twinkit.immunity.base import (
    Access,
    AttackNorm,
    AttackSettings,
    ForecasterAttack,
    register_attack,
)
from twinkit.immunity.history_tampering import HistoryBudget, TamperedHistory, attack_history
from twinkit.models.base import Forecaster


@register_attack
class HistoryPGD(ForecasterAttack):
    """Black-box PGD on a history: signed steps on finite-difference gradients of the
    forecast mean."""

    name: ClassVar[str] = "history_pgd"
    norm: ClassVar[AttackNorm] = "linf"
    budget: ClassVar[str] = (
        "HistoryBudget: each of the last `window` readings moves by at most `eps` target "
        "units, within the sensor's range and its fastest rate of change"
    )
    targeted: ClassVar[bool] = True  # it pushes each horizon's forecast a chosen way
    access: ClassVar[Access] = "query"

    def __init__(self, steps: int = 2, delta: float = 1.0) -> None:
        if steps < 1 or not delta > 0:
            raise TwinkitError(f"need steps >= 1 and delta > 0, got {steps} and {delta}")
        self.steps = steps
        self.delta = delta

    @classmethod
    def from_settings(cls, settings: AttackSettings) -> Self:
        return cls(steps=2 if settings.steps is None else max(1, settings.steps))

    @classmethod
    def tiny(cls) -> Self:
        return cls(steps=1)

    def generate(
        self,
        model: Forecaster,
        context: pd.DataFrame,
        horizons: Sequence[int],
        direction: Sequence[float] | np.ndarray,
        budget: HistoryBudget,
        *,
        seed: int = 0,
        origin: pd.Timestamp | None = None,
    ) -> TamperedHistory:
        # Finite differences and a fixed set of candidate steps: nothing to seed.
        return attack_history(
            model,
            context,
            horizons,
            direction,
            budget,
            steps=self.steps,
            delta=self.delta,
            origin=origin,
        )


#: the forecaster attack a benchmark runs unless told otherwise
DEFAULT_FORECASTER_ATTACK = HistoryPGD.name

__all__ = ["DEFAULT_FORECASTER_ATTACK", "HistoryPGD"]
