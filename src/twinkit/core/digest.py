"""Canonical hashes of batches and entries: the same content always gives the same sha256."""

from __future__ import annotations

import hashlib
import json
import math
import operator
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

GENESIS_HASH = "0" * 64


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces; NaN and infinity are refused.

    >>> canonical_json({"b": 1, "a": [1.5, "x"]})
    '{"a":[1.5,"x"],"b":1}'
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def chain_hash(prev_hash: str, entry: dict[str, Any]) -> str:
    """The hash of a ledger entry, chained to the entry before it."""
    return hashlib.sha256((prev_hash + canonical_json(entry)).encode("utf-8")).hexdigest()


def _strings(values: Iterable[Any]) -> bytes:
    return "\x1f".join(map(str, values)).encode("utf-8")


def canonical_order(*keys: np.ndarray) -> np.ndarray | None:
    """The permutation that sorts rows by ``keys`` (first key first), or None if sorted.

    >>> canonical_order(np.array([0, 0, 1]), np.array([1.0, 2.0, 0.0])) is None
    True
    >>> canonical_order(np.array([1, 0]), np.array([0, 0])).tolist()
    [1, 0]
    """
    n = len(keys[0])
    if n < 2:
        return None
    ascending = np.zeros(n - 1, dtype=bool)  # strictly before on an earlier key
    tied = np.ones(n - 1, dtype=bool)  # equal on every key so far
    for key in keys:
        step = np.diff(key)
        ascending |= tied & (step > 0)
        tied &= step == 0
    if (ascending | tied).all():
        return None
    return np.lexsort(tuple(reversed(keys)))


def signals_digest(frame: pd.DataFrame) -> str:
    """sha256 of signal rows ``twin_id, channel, t (int64 us), value``, whatever their order.

    Names are hashed once each (sorted) and rows by their codes, which keeps a million
    rows well under a second.
    """
    twin_codes, twin_names = pd.factorize(frame["twin_id"], sort=True)
    chan_codes, chan_names = pd.factorize(frame["channel"], sort=True)
    t = frame["t"].to_numpy(dtype=np.int64)
    # + 0.0 folds -0.0 into 0.0, which a database may not keep apart
    values = frame["value"].to_numpy(dtype=np.float64) + 0.0
    order = canonical_order(twin_codes, chan_codes, t, values)
    if order is None:
        order = np.arange(len(t))
    h = hashlib.sha256(b"signals/v2\n")
    h.update(_strings(twin_names))
    h.update(b"\x1e")
    h.update(_strings(chan_names))
    h.update(b"\x1e")
    for column in (twin_codes.astype(np.int64), chan_codes.astype(np.int64), t, values):
        h.update(np.ascontiguousarray(column[order]).tobytes())
    return h.hexdigest()


def decisions_digest(frame: pd.DataFrame) -> str:
    """sha256 of decision rows ``twin_id, item_id, features (canonical JSON), label``."""
    ordered = frame.sort_values(["twin_id", "item_id"], kind="stable")
    h = hashlib.sha256(b"decisions/v1\n")
    for column in ("twin_id", "item_id", "features", "label"):
        h.update(_strings(ordered[column].tolist()))
        h.update(b"\x1e")
    return h.hexdigest()


def quarantine_rows_digest(rows: list[list[Any]]) -> str:
    """sha256 of a batch's quarantined rows: [row, record JSON, reason], by row."""
    return hashlib.sha256(canonical_json(sorted(rows)).encode("utf-8")).hexdigest()


def features_json(names: list[str], values: np.ndarray) -> list[str]:
    """One canonical JSON object per row of ``values`` (rows x len(names)).

    The same text as :func:`canonical_json` of ``{name: value}`` (a non-finite value as
    null), written without building and sorting a dict per row: the keys are sorted and
    encoded once, so the cost stays linear in the cells however wide the rows.

    >>> features_json(["b", "a"], np.array([[1.5, float("nan")]]))
    ['{"a":null,"b":1.5}']
    """
    if values.shape[1] != len(names):
        raise ValueError(f"{values.shape[1]} value columns for {len(names)} feature names")
    last = {name: j for j, name in enumerate(names)}  # as in a dict, a repeated name's last
    keys = sorted(last)
    prefixes = [canonical_json(key) + ":" for key in keys]
    ordered = values[:, [last[key] for key in keys]]
    finite = np.isfinite(ordered).all(axis=1)
    out = []
    # repr is what json writes for a float (and an int); only rows with a NaN or an
    # infinity need a look at each value.
    for row, all_finite in zip(ordered.tolist(), finite.tolist(), strict=True):
        cells = map(repr, row) if all_finite else map(_json_number, row)
        out.append("{" + ",".join(map(operator.add, prefixes, cells)) + "}")
    return out


def _json_number(value: float) -> str:
    return repr(value) if math.isfinite(value) else "null"


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
