"""The built-in screens: non-finite values, implausible values, conflicting duplicates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from twinkit.data.importers import Batch, DecisionBatch, SignalBatch
from twinkit.screen.base import DUPLICATE, Screen, ScreenContext


def _none(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


class NonFinite:
    """NaN or infinite values (signals) or features (decisions)."""

    name = "non_finite"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        out = _none(len(batch))
        if isinstance(batch, SignalBatch):
            bad = ~np.isfinite(batch.frame["value"].to_numpy())
            out[bad] = "non-finite value"
        else:
            bad_cols = ~np.isfinite(batch.features)
            for i in np.flatnonzero(bad_cols.any(axis=1)):
                names = [n for n, b in zip(batch.feature_names, bad_cols[i], strict=True) if b]
                out[i] = f"non-finite feature(s) {names}"
        return out


class OutOfRange:
    """Signal values outside their channel's declared plausible range."""

    name = "out_of_range"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        out = _none(len(batch))
        if not isinstance(batch, SignalBatch) or not context.ranges:
            return out
        frame = batch.frame
        limits = pd.DataFrame(
            [(t, c, lo, hi) for (t, c), (lo, hi) in context.ranges.items()],
            columns=["twin_id", "channel", "low", "high"],
        )
        joined = frame[["twin_id", "channel"]].merge(limits, how="left", on=["twin_id", "channel"])
        low = joined["low"].fillna(-np.inf).to_numpy()
        high = joined["high"].fillna(np.inf).to_numpy()
        values = frame["value"].to_numpy()
        bad = candidates & ((values < low) | (values > high))
        channels = frame["channel"].to_numpy()
        for i in np.flatnonzero(bad):
            out[i] = (
                f"value {values[i]:g} outside the plausible range "
                f"[{low[i]:g}, {high[i]:g}] of {channels[i]}"
            )
        return out


def _key_conflicts(
    batch_keys: pd.DataFrame,
    key: list[str],
    field: str,
    candidates: np.ndarray,
    stored: pd.DataFrame | None,
    what: str,
) -> np.ndarray:
    """Flag repeats of a key: an identical repeat is a duplicate, a different one a conflict."""
    n = len(batch_keys)
    out = _none(n)
    frame = batch_keys.assign(_i=np.arange(n))[candidates]
    # Within the batch: a key seen with different values is held whole; nobody can tell
    # which reading is right.
    groups = frame.groupby(key, sort=False)[field]
    n_distinct = groups.transform("nunique").to_numpy()
    conflicted = n_distinct > 1
    if conflicted.any():
        listed = groups.transform(lambda s: ", ".join(sorted(map(str, s.unique()))))
        for i, values in zip(
            frame["_i"].to_numpy()[conflicted], listed.to_numpy()[conflicted], strict=True
        ):
            out[i] = f"conflicting {what}s for the same key in this batch: {values}"
    repeat = frame.duplicated(key, keep="first").to_numpy() & ~conflicted
    out[frame["_i"].to_numpy()[repeat]] = DUPLICATE
    if stored is not None and len(stored):
        rest = frame[~conflicted & ~repeat]
        merged = rest.merge(stored, on=key, how="inner", suffixes=("", "_stored"))
        if len(merged):
            same = (merged[field] == merged[f"{field}_stored"]).to_numpy()
            idx = merged["_i"].to_numpy()
            out[idx[same]] = DUPLICATE
            for i, old in zip(idx[~same], merged[f"{field}_stored"].to_numpy()[~same], strict=True):
                out[i] = f"conflicts with the stored {what} {old}"
    return out


class ConflictingValue:
    """A (twin, channel, time) sent twice with different values, or differing from the store."""

    name = "conflicting_value"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        if not isinstance(batch, SignalBatch):
            return _none(len(batch))
        keys = batch.frame[["twin_id", "channel", "t", "value"]]
        return _key_conflicts(
            keys, ["twin_id", "channel", "t"], "value", candidates, context.stored, "value"
        )


class ConflictingLabel:
    """The same item labelled twice differently by one person, or differing from the store."""

    name = "conflicting_label"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        if not isinstance(batch, DecisionBatch):
            return _none(len(batch))
        keys = batch.frame[["twin_id", "item_id", "label"]]
        return _key_conflicts(
            keys, ["twin_id", "item_id"], "label", candidates, context.stored, "label"
        )


DEFAULT_SIGNAL_SCREENS: tuple[Screen, ...] = (NonFinite(), OutOfRange(), ConflictingValue())
DEFAULT_DECISION_SCREENS: tuple[Screen, ...] = (NonFinite(), ConflictingLabel())
