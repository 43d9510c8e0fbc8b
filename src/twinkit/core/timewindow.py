"""The plausible time window of a reading: nothing before ``earliest``, nothing in the future."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from twinkit.core.errors import ImplausibleDataError, TwinkitError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_iso(micros: int) -> str:
    """int64 microseconds since the epoch as ISO-8601 UTC, for any year Python can hold
    (pandas' nanosecond timestamps stop at 2262; a message about a bad time must not).

    >>> micros_iso(0)
    '1970-01-01T00:00:00Z'
    >>> micros_iso(253402300799_000000)
    '9999-12-31T23:59:59Z'
    """
    try:
        moment = _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        return f"{int(micros)} us since 1970"
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeWindow:
    """When a reading may have been taken.

    A reading before ``earliest`` rejects its batch at validation (the error names the
    row); a reading after now + ``future_tolerance`` (clock skew allowed for) is held in
    quarantine with the reason, never stored as data, and can be released once its time
    has come.

    >>> window = TimeWindow()
    >>> window.earliest_us
    0
    >>> window.latest_us(now=datetime(2026, 1, 1, tzinfo=UTC)) == (
    ...     (datetime(2026, 1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1))
    True
    """

    earliest: datetime = _EPOCH
    future_tolerance: timedelta = timedelta(hours=1)

    def __post_init__(self) -> None:
        if self.earliest.tzinfo is None:
            raise TwinkitError("the time window's earliest time needs a UTC offset")
        if self.future_tolerance < timedelta(0):
            raise TwinkitError("the time window's future tolerance cannot be negative")

    @property
    def earliest_us(self) -> int:
        return (self.earliest - _EPOCH) // timedelta(microseconds=1)

    def latest_us(self, now: datetime | None = None) -> int:
        """The latest plausible time: ``now`` (default: the clock) plus the tolerance."""
        moment = (now or datetime.now(UTC)) + self.future_tolerance
        return (moment - _EPOCH) // timedelta(microseconds=1)

    def check_stored(self, twin_id: str, t: np.ndarray, now: datetime | None = None) -> None:
        """Raise a clear per-twin error if stored times (int64 us) fall outside the window.

        Rows stored before the window was enforced can hold any time; a year-9999 reading
        would make a fit lay a five-minute grid over eight thousand years. Such a twin gets
        this error; the caller's other twins go on.
        """
        if not len(t):
            return
        low, high = int(t.min()), int(t.max())
        latest = self.latest_us(now)
        if low >= self.earliest_us and high <= latest:
            return
        outside = (t < self.earliest_us) | (t > latest)
        first = int(t[outside].min()) if low < self.earliest_us else high
        raise ImplausibleDataError(
            f"twin {twin_id!r} has {int(outside.sum())} stored reading(s) outside the "
            f"plausible time window [{micros_iso(self.earliest_us)}, now + "
            f"{self.future_tolerance}] (e.g. at {micros_iso(first)}): retract them "
            f"(twinkit retract {twin_id} --start/--end ...) and fit again"
        )
