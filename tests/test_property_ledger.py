"""Property: valid ingests, re-ingests and fits, in any order, keep the ledger verifying and
store exactly one observation per distinct (twin, channel, time) key sent.

Every key always carries the same value (``value_of``), so batches never conflict.
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from twinkit.core.errors import ForecastInputError
from twinkit.engine import TwinEngine

TWINS = ("p1", "p2")
CHANNELS = ("glucose", "heart_rate")
N_SLOTS = 60  # 5-minute slots a batch's keys are drawn from
STEP_US = 5 * 60 * 1_000_000
START_US = int(pd.Timestamp("2026-01-01T00:00:00Z").value // 1000)

Key = tuple[str, str, int]  # (twin, channel, slot)
EXAMPLES = itertools.count()  # names each example's store


def value_of(key: Key) -> float:
    """The one value a key ever carries: in range for its channel, smooth in time."""
    twin, channel, slot = key
    offset = 7.0 * TWINS.index(twin)
    wave = math.sin(2 * math.pi * slot / 24)
    if channel == "glucose":
        return 120.0 + offset + 30.0 * wave
    return 70.0 + offset + 10.0 * wave


@dataclass(frozen=True)
class Ingest:
    keys: frozenset[Key]


@dataclass(frozen=True)
class Reingest:
    which: int  # an earlier batch, modulo how many were sent


@dataclass(frozen=True)
class Fit:
    twin: str


Op = Ingest | Reingest | Fit

scattered = st.frozensets(
    st.tuples(st.sampled_from(TWINS), st.sampled_from(CHANNELS), st.integers(0, N_SLOTS - 1)),
    min_size=1,
    max_size=25,
)
contiguous = st.builds(
    lambda twin, channel, start, length: frozenset(
        (twin, channel, s) for s in range(start, min(start + length, N_SLOTS))
    ),
    st.sampled_from(TWINS),
    st.sampled_from(CHANNELS),
    st.integers(0, N_SLOTS // 2),
    st.integers(10, N_SLOTS),
)
operations = st.lists(
    st.one_of(
        st.builds(Ingest, st.one_of(scattered, contiguous)),
        st.builds(Reingest, st.integers(0, 50)),
        st.builds(Fit, st.sampled_from(TWINS)),
    ),
    min_size=1,
    max_size=8,
)


def batch_frame(keys: frozenset[Key]) -> pd.DataFrame:
    ordered = sorted(keys)
    micros = [START_US + slot * STEP_US for _, _, slot in ordered]
    return pd.DataFrame(
        {
            "twin_id": [k[0] for k in ordered],
            "time": pd.to_datetime(micros, unit="us", utc=True),
            "channel": [k[1] for k in ordered],
            "value": [value_of(k) for k in ordered],
        }
    )


def try_fit(engine: TwinEngine, twin: str) -> None:
    # Too little data yet: fitting may refuse, but never break the store.
    with contextlib.suppress(ForecastInputError):
        engine.fit(twin, model="persistence", horizons=(30,), params={"max_horizon_min": 30})


def stored_keys(engine: TwinEngine) -> dict[Key, float]:
    out: dict[Key, float] = {}
    for twin in TWINS:
        wide = engine.signals(twin)
        for channel in wide.columns:
            for when, value in wide[channel].dropna().items():
                assert isinstance(when, pd.Timestamp)
                slot = (int(when.value // 1000) - START_US) // STEP_US
                out[(twin, str(channel), slot)] = float(value)
    return out


def observation_count(engine: TwinEngine) -> int:
    return sum(int(engine.twin_summary(t)["observations"]) for t in TWINS)


def run_operations(url: str, ops: list[Op]) -> None:
    """Apply ``ops`` to the fresh store at ``url``, checking the invariants after every step."""
    # Prepare
    engine = TwinEngine(url)
    for twin in TWINS:
        engine.create_twin(twin, "state")
    sent: list[pd.DataFrame] = []
    expected: dict[Key, float] = {}
    try:
        for op in ops:
            # Execute
            if isinstance(op, Ingest):
                frame = batch_frame(op.keys)
                result = engine.ingest(frame)
                assert result.n_quarantined == 0
                assert result.n_stored == len(op.keys - expected.keys())
                sent.append(frame)
                expected.update({key: value_of(key) for key in op.keys})
            elif isinstance(op, Reingest):
                if not sent:
                    continue
                result = engine.ingest(sent[op.which % len(sent)])
                assert result.already_ingested
            else:
                try_fit(engine, op.twin)

            # Assert
            report = engine.verify()
            assert report.ok, report.problems
            assert observation_count(engine) == len(expected)
        assert stored_keys(engine) == expected
    finally:
        engine.store.dispose()


@settings(
    max_examples=25,
    deadline=None,
    database=None,
    # make_db_url makes a fresh store per call, so one per example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(ops=operations)
@example(  # overlapping time windows: the second batch repeats a stored key
    ops=[
        Ingest(frozenset({("p1", "glucose", 0), ("p1", "glucose", 1)})),
        Ingest(frozenset({("p1", "glucose", 1), ("p1", "glucose", 2)})),
        Fit("p1"),
        Reingest(0),
    ]
)
@example(  # enough data for a fit, then more data overlapping it and a refit
    ops=[
        Ingest(frozenset(("p1", "glucose", s) for s in range(N_SLOTS))),
        Fit("p1"),
        Ingest(frozenset(("p1", c, s) for c in CHANNELS for s in range(0, N_SLOTS, 3))),
        Fit("p1"),
        Reingest(0),
    ]
)
def test_ingests_reingests_and_fits_keep_ledger_and_counts(
    make_db_url: Callable[[str], str], ops: list[Op]
) -> None:
    run_operations(make_db_url(f"example-{next(EXAMPLES)}"), ops)
