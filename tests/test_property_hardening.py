"""Property: whatever times, values and metadata arrive, and in whatever order twins are
ingested, retracted, deleted and created again (by two owners, with the same ids), every
operation either works or raises a named twinkit error, every twin stays forecastable or
says clearly why not, and the ledger verifies (issue #16's property test)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinkit.core.errors import ForecastInputError, NotFoundError, TwinkitError
from twinkit.engine import TwinEngine

#: bare ids and owner/id: bob's p1 makes a bare "p1" name two twins (a clear refusal)
TWINS = ("p1", "p2", "local/p1", "bob/p1")
BASE = pd.DataFrame(
    {
        "time": pd.date_range("2026-01-01", periods=288, freq="5min", tz="UTC").strftime(
            "%Y-%m-%dT%H:%M:%SZ"
        ),
        "channel": "glucose",
        "value": [120.0 + (i % 48) for i in range(288)],
    }
)

times = st.one_of(
    # plausible: every five minutes over a few days of 2026
    st.integers(0, 3 * 288).map(
        lambda i: (pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=5 * i)).isoformat()
    ),
    st.sampled_from(
        [
            "9999-12-31T23:59:59Z",
            "0001-01-01T00:00:00Z",
            "1969-12-31T23:59:59Z",
            "2262-04-12T00:00:00Z",
            "now",
            "today",
            "",
            "2026-13-01T00:00:00Z",
            "2026-01-01T00:00:00+14:00",
            "not a time",
        ]
    ),
)
values = st.one_of(
    st.floats(40.0, 400.0),
    st.sampled_from([float("nan"), float("inf"), -1e308, 1e308, 0.0, -0.0]),
)
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5))
metadata = st.dictionaries(
    st.text(max_size=5),
    st.recursive(json_leaf, lambda c: st.lists(c, max_size=3), max_leaves=5),
    max_size=4,
)


@dataclass(frozen=True)
class Create:
    twin: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class Ingest:
    twin: str
    rows: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Retract:
    twin: str
    from_slot: int


@dataclass(frozen=True)
class Delete:
    twin: str


Op = Create | Ingest | Retract | Delete

twin_ids = st.sampled_from(TWINS)
ops = st.lists(
    st.one_of(
        st.builds(Create, twin_ids, metadata),
        st.builds(
            Ingest,
            twin_ids,
            st.lists(st.tuples(times, values), min_size=1, max_size=40).map(tuple),
        ),
        st.builds(Retract, twin_ids, st.integers(0, 3 * 288)),
        st.builds(Delete, twin_ids),
    ),
    max_size=12,
)


def _apply(engine: TwinEngine, op: Op) -> None:
    if isinstance(op, Create):
        engine.create_twin(op.twin, "state", metadata=op.metadata, channels=["glucose"])
    elif isinstance(op, Ingest):
        frame = pd.DataFrame(
            {
                "time": [t for t, _ in op.rows],
                "channel": "glucose",
                "value": [v for _, v in op.rows],
            }
        )
        engine.ingest(frame, twin=op.twin)
    elif isinstance(op, Retract):
        start = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=5 * op.from_slot)
        engine.retract(op.twin, "property test", start=start)
    else:
        engine.delete_twin(op.twin)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops)
def test_any_sequence_keeps_twins_forecastable_or_clear_and_the_ledger_whole(
    sequence: list[Op],
) -> None:
    engine = TwinEngine("sqlite://")
    engine.create_twin("p1", "state", channels=["glucose"])
    engine.ingest(BASE, twin="p1")  # a day of plausible readings: p1 starts forecastable
    for op in sequence:
        with contextlib.suppress(TwinkitError):  # anything but a named error fails
            _apply(engine, op)

    unclear = []
    for twin in engine.list_twins():
        try:
            engine.fit(twin.ref, model="linear_ar", horizons=(30,))
            engine.forecast(twin.ref, (30,))
        except (ForecastInputError, NotFoundError) as exc:
            if not str(exc):
                unclear.append(twin.ref)
    assert unclear == []
    report = engine.verify()
    assert report.ok, report.problems
    engine.store.dispose()
