"""Twin identity: the pure description of one individual's twin."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from twinkit.core.errors import InvalidTwinError

TWIN_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
CHANNEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


class TwinKind(StrEnum):
    """A state twin mirrors signals over time; a decision twin mirrors how a person decides."""

    STATE = "state"
    DECISION = "decision"


def validate_twin_id(twin_id: str) -> str:
    """Return ``twin_id`` if it is a valid id, else raise :class:`InvalidTwinError`.

    >>> validate_twin_id("patient-007")
    'patient-007'
    """
    if not isinstance(twin_id, str) or not TWIN_ID_PATTERN.match(twin_id):
        raise InvalidTwinError(
            f"invalid twin id {twin_id!r}: use 1-128 letters, digits or the characters - _ . :"
        )
    return twin_id


@dataclass(frozen=True)
class Channel:
    """A signal a state twin records: its name, unit and the range of plausible values."""

    name: str
    unit: str = ""
    low: float = -math.inf
    high: float = math.inf

    def __post_init__(self) -> None:
        if not CHANNEL_PATTERN.match(self.name):
            raise InvalidTwinError(
                f"invalid channel name {self.name!r}: start with a letter, then letters, "
                "digits, _ . - (at most 64)"
            )
        if math.isnan(self.low) or math.isnan(self.high) or self.low >= self.high:
            raise InvalidTwinError(
                f"channel {self.name!r}: plausible range [{self.low}, {self.high}] is empty"
            )

    @classmethod
    def parse(cls, spec: str) -> Channel:
        """Parse ``name[:unit[:low:high]]``; a known name without a range gets its default.

        >>> Channel.parse("glucose:mg/dL:20:600")
        Channel(name='glucose', unit='mg/dL', low=20.0, high=600.0)
        >>> Channel.parse("heart_rate").unit
        'bpm'
        """
        parts = spec.split(":")
        if len(parts) not in (1, 2, 4):
            raise InvalidTwinError(
                f"channel spec {spec!r}: expected name, name:unit or name:unit:low:high"
            )
        name = parts[0]
        if len(parts) == 4:
            try:
                low, high = float(parts[2]), float(parts[3])
            except ValueError:
                raise InvalidTwinError(
                    f"channel spec {spec!r}: low and high must be numbers"
                ) from None
            return cls(name, parts[1], low, high)
        known = KNOWN_CHANNELS.get(name)
        unit = parts[1] if len(parts) == 2 else (known.unit if known else "")
        if known is not None:
            return cls(name, unit, known.low, known.high)
        return cls(name, unit)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "low": None if math.isinf(self.low) else self.low,
            "high": None if math.isinf(self.high) else self.high,
        }


#: Physiological plausibility defaults for common channels (wide on purpose: they catch
#: sensor faults and unit mix-ups, not unusual people).
KNOWN_CHANNELS: dict[str, Channel] = {
    c.name: c
    for c in (
        Channel("glucose", "mg/dL", 10.0, 1000.0),
        Channel("cgm", "mg/dL", 10.0, 1000.0),
        Channel("heart_rate", "bpm", 20.0, 300.0),
        Channel("steps", "count", 0.0, 100_000.0),
        Channel("carbs", "g", 0.0, 1000.0),
        Channel("insulin", "U", 0.0, 200.0),
        Channel("calories", "kcal", 0.0, 20_000.0),
        Channel("temperature", "degC", 25.0, 45.0),
    )
}


@dataclass(frozen=True)
class Twin:
    """One individual's twin. ``channels`` empty means any channel is accepted."""

    id: str
    kind: TwinKind
    owner: str = "local"
    metadata: dict[str, Any] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    created_at: str = ""

    def __post_init__(self) -> None:
        validate_twin_id(self.id)
        if self.kind is TwinKind.DECISION and self.channels:
            raise InvalidTwinError(f"twin {self.id!r}: only state twins declare channels")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise InvalidTwinError(f"twin {self.id!r}: a channel is declared twice in {names}")

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "owner": self.owner,
            "metadata": self.metadata,
            "channels": [c.to_dict() for c in self.channels],
            "created_at": self.created_at,
        }
