"""The built-in screens: future times, non-finite values, implausible values, conflicting
duplicates."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from twinkit.core.digest import canonical_order
from twinkit.core.timewindow import TimeWindow, micros_iso
from twinkit.data.importers import Batch, DecisionBatch, SignalBatch
from twinkit.screen.base import DUPLICATE, Screen, ScreenContext


def _none(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


class FutureTime:
    """Signal rows timed after now plus the window's tolerance: a device clock that is wrong,
    not a reading. Held, never stored; release them once their time has come.

    ``now`` is the clock (a function, so that tests can set it).
    """

    name = "future_time"

    def __init__(
        self,
        window: TimeWindow | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.window = window or TimeWindow()
        self.now = now

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        out = _none(len(batch))
        if not isinstance(batch, SignalBatch):
            return out
        latest = self.window.latest_us(self.now())
        t = batch.frame["t"].to_numpy()
        for i in np.flatnonzero(candidates & (t > latest)):
            out[i] = (
                f"time {micros_iso(int(t[i]))} is in the future (after "
                f"{micros_iso(latest)}, now plus the tolerance for clock skew)"
            )
        return out


class DeviceFlag:
    """Rows an importer flagged: a sensor's "Low"/"High" marker, an error code, a value
    beyond what the device measures. Not numbers to learn from, not errors either: held
    with the importer's reason. Applied to every imported batch, before the other screens.
    """

    name = "device_flag"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        out = _none(len(batch))
        if isinstance(batch, SignalBatch) and batch.flags is not None:
            take = candidates & ~pd.isna(batch.flags)
            out[take] = batch.flags[take]
        return out


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
        twin_codes, twin_names = pd.factorize(frame["twin_id"])
        chan_codes, chan_names = pd.factorize(frame["channel"])
        twin_at = {str(name): i for i, name in enumerate(twin_names)}
        chan_at = {str(name): j for j, name in enumerate(chan_names)}
        low_of = np.full((len(twin_names), len(chan_names)), -np.inf)
        high_of = np.full((len(twin_names), len(chan_names)), np.inf)
        for (twin_id, channel), (lo, hi) in context.ranges.items():
            if twin_id in twin_at and channel in chan_at:
                low_of[twin_at[twin_id], chan_at[channel]] = lo
                high_of[twin_at[twin_id], chan_at[channel]] = hi
        low, high = low_of[twin_codes, chan_codes], high_of[twin_codes, chan_codes]
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


def _signal_conflicts(
    frame: pd.DataFrame, candidates: np.ndarray, stored: pd.DataFrame | None
) -> np.ndarray:
    """The signal case of :func:`_key_conflicts`, sort-based in NumPy for million-row batches."""
    out = _none(len(frame))
    idx = np.flatnonzero(candidates)
    twin_codes, _ = pd.factorize(frame["twin_id"].iloc[idx], sort=True)
    chan_codes, _ = pd.factorize(frame["channel"].iloc[idx], sort=True)
    t = frame["t"].to_numpy()[idx]
    values = frame["value"].to_numpy()[idx]
    order = canonical_order(twin_codes, chan_codes, t, values)
    if order is None:
        order = np.arange(len(idx))
    tw, ch, tt, vv = twin_codes[order], chan_codes[order], t[order], values[order]
    same_key = (tw[1:] == tw[:-1]) & (ch[1:] == ch[:-1]) & (tt[1:] == tt[:-1])
    run = np.cumsum(np.r_[True, ~same_key]) - 1
    differs = same_key & (vv[1:] != vv[:-1])
    conflicted_run = np.zeros(run[-1] + 1 if len(run) else 0, dtype=bool)
    conflicted_run[run[1:][differs]] = True
    conflicted = conflicted_run[run]
    repeat = np.r_[False, same_key] & ~conflicted
    rows = idx[order]
    out[rows[repeat]] = DUPLICATE
    for r in np.unique(run[conflicted]):
        members = rows[run == r]
        listed = ", ".join(f"{v:g}" for v in np.unique(vv[run == r]))
        out[members] = f"conflicting values for the same time in this batch: {listed}"
    if stored is not None and len(stored):
        rest = np.zeros(len(frame), dtype=bool)
        rest[rows[~conflicted & ~repeat]] = True
        keys = frame.loc[rest, ["twin_id", "channel", "t", "value"]].assign(_i=np.flatnonzero(rest))
        merged = keys.merge(stored, on=["twin_id", "channel", "t"], suffixes=("", "_stored"))
        same = (merged["value"] == merged["value_stored"]).to_numpy()
        at = merged["_i"].to_numpy()
        out[at[same]] = DUPLICATE
        for i, old in zip(at[~same], merged["value_stored"].to_numpy()[~same], strict=True):
            out[i] = f"conflicts with the stored value {old:g}"
    return out


class ConflictingValue:
    """A (twin, channel, time) sent twice with different values, or differing from the store."""

    name = "conflicting_value"

    def flag(self, batch: Batch, candidates: np.ndarray, context: ScreenContext) -> np.ndarray:
        if not isinstance(batch, SignalBatch) or not candidates.any():
            return _none(len(batch))
        return _signal_conflicts(batch.frame, candidates, context.stored)


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
