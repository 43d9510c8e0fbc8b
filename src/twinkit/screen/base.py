"""The screening protocol: each screen gives a reason for the rows it would quarantine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from twinkit.data.importers import Batch


@dataclass(frozen=True)
class ScreenContext:
    """What the store knows that a screen may need; screens never touch the store.

    ``ranges`` maps (twin_id, channel) to its plausible (low, high). ``stored`` holds the
    already stored rows that share a key with the batch (signals: twin_id, channel, t,
    value; decisions: twin_id, item_id, label). ``history``: for a decisions batch, every
    stored decision of its twins (twin_id, item_id, features as canonical JSON, label),
    when a screen asks for it (``uses_history``).
    """

    ranges: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    stored: pd.DataFrame | None = None
    history: pd.DataFrame | None = None


class Screen(Protocol):
    """A rule that flags rows. Return one reason per row, ``None`` where the row is fine."""

    name: str

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        """``candidates`` marks rows no earlier screen flagged; flag only among them."""
        ...


@dataclass
class Screening:
    """The outcome: why each quarantined row is held, and which rows repeat stored ones."""

    reasons: np.ndarray  # object array: str or None per row
    screens: np.ndarray  # object array: the name of the screen that held the row, or None
    duplicate: np.ndarray  # bool: an exact repeat of a row in the batch or the store

    @property
    def quarantined(self) -> np.ndarray:
        return np.asarray(~pd.isna(self.reasons), dtype=bool)

    @property
    def accepted(self) -> np.ndarray:
        return np.asarray(~self.quarantined & ~self.duplicate, dtype=bool)


def run_screens(batch: Batch, screens: Sequence[Screen], context: ScreenContext) -> Screening:
    """Apply screens in order; the first screen to flag a row gives its reason."""
    n = len(batch)
    reasons = np.full(n, None, dtype=object)
    names = np.full(n, None, dtype=object)
    duplicate = np.zeros(n, dtype=bool)
    for screen in screens:
        candidates = pd.isna(reasons) & ~duplicate
        if not candidates.any():
            break
        flagged = screen.flag(batch, candidates, context)
        take = candidates & ~pd.isna(flagged)
        is_dup = take & (flagged == DUPLICATE)
        duplicate |= is_dup
        reasons[take & ~is_dup] = flagged[take & ~is_dup]
        names[take & ~is_dup] = screen.name
    return Screening(reasons, names, duplicate)


#: the reason a screen gives for an exact repeat: it is not stored again, nor quarantined
DUPLICATE = "duplicate"
