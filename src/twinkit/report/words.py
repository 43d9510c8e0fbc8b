"""Ledger entries in words: what a clinician or an auditor reads, the JSON and hash on
demand. One sentence per entry, from its event and payload; an event this module does not
know is named with its payload's main fields, never dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def _n(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, int | float) else str(value)


def _created(p: Mapping[str, Any]) -> str:
    channels = [
        f"{c.get('name')}" + (f" ({c['unit']})" if c.get("unit") else "")
        for c in p.get("channels") or []
    ]
    kind = p.get("kind", "")
    what = f"Created as a {kind} twin" if kind else "Created"
    return what + (f" recording {', '.join(channels)}" if channels else "") + "."


def _ingested(p: Mapping[str, Any]) -> str:
    imported = p.get("import") or {}
    source = p.get("source", "")
    origin = f" from {source}" if source else ""
    if imported:
        origin = f" from a {imported.get('version') or imported.get('format')} export{origin}"
    text = (
        f"Received {_n(p.get('n_rows', 0))} rows{origin}: {_n(p.get('n_stored', 0))} stored, "
        f"{_n(p.get('n_quarantined', 0))} held in quarantine, "
        f"{_n(p.get('n_duplicates', 0))} repeats skipped."
    )
    converted = imported.get("conversions") or {}
    if converted:
        text += " Converted " + ", ".join(f"{k} {v}" for k, v in converted.items()) + "."
    part = imported.get("part")
    if part:
        text += f" Part {part} of one import."
    return text


def _registered(p: Mapping[str, Any]) -> str:
    metrics = p.get("metrics") or {}
    score = metrics.get("score")
    scored = f", holdout RMSE {score:.2f}" if isinstance(score, int | float) else ""
    agreement = metrics.get("agreement")
    if isinstance(agreement, int | float):
        scored = f", agreeing with the donor on {agreement:.0%} of held-out items"
    until = str(p.get("data_end") or "")[:16].replace("T", " ")
    data = f", learned from data up to {until} UTC" if until else ""
    return f"Model v{p.get('version')} ({p.get('model')}) fitted{data}{scored}."


def _promoted(p: Mapping[str, Any]) -> str:
    reason = p.get("reason")
    how = "by hand" if p.get("manual") else "automatically"
    return f"Model v{p.get('version')} now serves ({how})" + (f": {reason}." if reason else ".")


def _refused(p: Mapping[str, Any]) -> str:
    reason = p.get("reason")
    return f"Model v{p.get('version')} was not promoted" + (f": {reason}." if reason else ".")


def _rolled_back(p: Mapping[str, Any]) -> str:
    reason = p.get("reason")
    text = f"Rolled back from v{p.get('from_version')} to v{p.get('to_version')}"
    return text + (f": {reason}." if reason else ".")


def _released(p: Mapping[str, Any]) -> str:
    ids = p.get("quarantine_ids") or p.get("ids") or []
    count = len(ids) if isinstance(ids, list) else ids
    return f"Released {_n(count)} quarantined row(s) into the data."


def _retracted(p: Mapping[str, Any]) -> str:
    reason = p.get("reason")
    count = p.get("n_retracted")
    what = f"Removed {_n(count)} row(s)" if count is not None else "Removed rows"
    return what + (f": {reason}." if reason else ".")


def _drift(p: Mapping[str, Any]) -> str:
    stream = p.get("stream", "a stream")
    detector = p.get("detector")
    by = f" ({detector})" if detector else ""
    return f"A change was detected in {stream}{by}."


def _band(p: Mapping[str, Any]) -> str:
    scales = p.get("scales") or {}
    if isinstance(scales, dict) and scales:
        shown = ", ".join(f"x{float(v):.2f} at +{h} min" for h, v in scales.items())
        return f"The forecast band was rescaled to fit recent readings: {shown}."
    return "The forecast band was rescaled to fit recent readings."


_SENTENCES: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "twin_created": _created,
    "twin_deleted": lambda p: "The twin was deleted.",
    "batch_ingested": _ingested,
    "model_registered": _registered,
    "model_promoted": _promoted,
    "promotion_refused": _refused,
    "model_rolled_back": _rolled_back,
    "quarantine_released": _released,
    "rows_retracted": _retracted,
    "drift_detected": _drift,
    "band_recalibrated": _band,
    "monitor_policy_set": lambda p: f"Monitoring set to {p.get('policy')} ({p.get('detector')}).",
    "population_registered": lambda p: (
        f"Population prior v{p.get('version')} "
        f"({p.get('model')}) trained on {_n(len(p.get('twins') or []))} twins."
    ),
    "population_sharing": lambda p: (
        f"{p.get('owner')} "
        + ("now shares" if p.get("share") else "stopped sharing")
        + " data for population priors."
    ),
    "clone_queries": lambda p: f"Asked the donor about {_n(len(p.get('items') or []))} item(s).",
}


def in_words(event: str, payload: Mapping[str, Any]) -> str:
    """One sentence for a ledger entry.

    >>> print(in_words("batch_ingested", {"n_rows": 576, "n_stored": 570, "n_quarantined": 6,
    ...       "n_duplicates": 0, "source": "c.csv", "import": {"version": "Clarity CSV"}}))
    Received 576 rows from a Clarity CSV export from c.csv: 570 stored, 6 held in quarantine,
    0 repeats skipped.
    >>> in_words("model_promoted", {"version": 2, "manual": False, "reason": "better"})
    'Model v2 now serves (automatically): better.'
    >>> in_words("something_new", {"a": 1})
    'something new: a=1'
    """
    sentence = _SENTENCES.get(event)
    if sentence is not None:
        try:
            return sentence(payload)
        except (TypeError, ValueError, KeyError, AttributeError):
            pass  # an unexpected payload: fall back to naming its fields
    fields = ", ".join(
        f"{k}={v}" for k, v in list(payload.items())[:4] if isinstance(v, str | int | float)
    )
    return f"{event.replace('_', ' ')}: {fields}" if fields else event.replace("_", " ")
