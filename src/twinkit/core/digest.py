"""Canonical hashes of batches and entries: the same content always gives the same sha256."""

from __future__ import annotations

import hashlib
import json
import math
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


def _strings(values: pd.Series) -> bytes:
    return "\x1f".join(values.astype(str).tolist()).encode("utf-8")


def signals_digest(frame: pd.DataFrame) -> str:
    """sha256 of signal rows ``twin_id, channel, t (int64 us), value``, whatever their order."""
    ordered = frame.sort_values(["twin_id", "channel", "t"], kind="stable")
    h = hashlib.sha256(b"signals/v1\n")
    h.update(_strings(ordered["twin_id"]))
    h.update(b"\x1e")
    h.update(_strings(ordered["channel"]))
    h.update(b"\x1e")
    h.update(np.ascontiguousarray(ordered["t"].to_numpy(dtype=np.int64)).tobytes())
    # + 0.0 folds -0.0 into 0.0, which a database may not keep apart
    values = ordered["value"].to_numpy(dtype=np.float64) + 0.0
    h.update(np.ascontiguousarray(values).tobytes())
    return h.hexdigest()


def decisions_digest(frame: pd.DataFrame) -> str:
    """sha256 of decision rows ``twin_id, item_id, features (canonical JSON), label``."""
    ordered = frame.sort_values(["twin_id", "item_id"], kind="stable")
    h = hashlib.sha256(b"decisions/v1\n")
    for column in ("twin_id", "item_id", "features", "label"):
        h.update(_strings(ordered[column]))
        h.update(b"\x1e")
    return h.hexdigest()


def features_json(names: list[str], values: np.ndarray) -> list[str]:
    """One canonical JSON object per row of ``values`` (rows x len(names))."""
    out = []
    for row in values.tolist():
        out.append(
            canonical_json(
                {n: (None if not math.isfinite(v) else v) for n, v in zip(names, row, strict=True)}
            )
        )
    return out


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
