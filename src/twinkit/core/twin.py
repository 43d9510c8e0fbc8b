"""Twin identity: the pure description of one individual's twin."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from twinkit.core.errors import InvalidTwinError

_ID_CHAR = r"[A-Za-z0-9_.:\-]"
_NOT_DOT = r"[A-Za-z0-9_:\-]"
#: 1-128 of the characters, but not "." nor "..": they name a folder, not a twin, in a
#: path. Spelled without look-ahead so that every regex engine that reads it (Python's,
#: Arrow's RE2, pydantic's, a client's from the OpenAPI document) reads the same rule.
TWIN_ID_PATTERN = re.compile(
    "^(?:"
    rf"{_NOT_DOT}{_ID_CHAR}{{0,127}}"  # no dot first
    rf"|\.{_NOT_DOT}{_ID_CHAR}{{0,126}}"  # one dot, then another character
    rf"|\.\.{_ID_CHAR}{{1,126}}"  # two dots, then at least one more character
    ")$"
)
CHANNEL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class MetadataLimits:
    """How large a twin's metadata may be: bytes of its JSON (UTF-8), keys of all its
    objects (nested ones included), levels of nested objects and arrays (the metadata
    itself is one)."""

    max_bytes: int = 64 * 1024
    max_keys: int = 1000
    max_depth: int = 16


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
            f"invalid twin id {twin_id!r}: use 1-128 letters, digits or the characters "
            "- _ . : (but not '.' or '..')"
        )
    return twin_id


def twin_key(owner: str, twin_id: str) -> str:
    """The store key (and the reference) of ``owner``'s twin ``twin_id``: ``owner/id``.

    >>> twin_key("clinic-a", "p-007")
    'clinic-a/p-007'
    """
    return f"{owner}/{twin_id}"


def public_id(key: str) -> str:
    """A twin's id as its owner knows it, from its store key (``owner/id`` or a bare id).

    >>> public_id("clinic-a/p-007"), public_id("p-007")
    ('p-007', 'p-007')
    """
    return key.rsplit("/", 1)[-1]


def split_ref(ref: str) -> tuple[str | None, str]:
    """``owner/id`` -> (owner, id); a bare ``id`` -> (None, id). Owner names and twin ids
    have no ``/``, so a reference splits one way only.

    >>> split_ref("clinic-a/p-007"), split_ref("p-007")
    (('clinic-a', 'p-007'), (None, 'p-007'))
    """
    owner, sep, twin_id = ref.rpartition("/")
    return (owner, twin_id) if sep else (None, twin_id)


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]{0,63}")


def _where(path: tuple[str | int, ...]) -> str:
    """A value's place in the metadata: ``metadata.a[0]["odd key"]`` (ASCII, so that a
    message naming a key with a lone surrogate can still be sent)."""
    parts = ["metadata"]
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            parts.append(f".{step}")
        else:
            shown = step if len(step) <= 64 else step[:64] + "..."
            parts.append(f"[{json.dumps(shown)}]")
    return "".join(parts)


def _is_unicode(text: str) -> bool:
    """False for text with a lone surrogate (``"\\ud800"`` in JSON): no encoding holds it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def validate_metadata(
    metadata: Any, limits: MetadataLimits | None = MetadataLimits()
) -> dict[str, Any]:
    """Return ``metadata`` if it is a JSON object within ``limits``, else raise
    :class:`InvalidTwinError` naming the field at fault.

    JSON here is the standard's: no NaN or infinity, text that is valid Unicode, keys that
    are text. ``limits=None`` checks only that, whatever the size.

    >>> validate_metadata({"site": "a", "image": [28, 28]})
    {'site': 'a', 'image': [28, 28]}
    >>> validate_metadata({"a": {"b": float("nan")}})
    Traceback (most recent call last):
    ...
    twinkit.core.errors.InvalidTwinError: metadata.a.b: NaN is not JSON; use null or a number
    """
    if not isinstance(metadata, dict):
        raise InvalidTwinError(f"metadata must be a JSON object, not {type(metadata).__name__}")
    bounds = limits or MetadataLimits(sys.maxsize, sys.maxsize, sys.maxsize)
    max_bytes, max_keys, max_depth = bounds.max_bytes, bounds.max_keys, bounds.max_depth
    too_large = InvalidTwinError(
        f"metadata is larger than {max_bytes} bytes as JSON; keep large documents "
        "elsewhere and put a reference in the metadata"
    )
    # Every value takes at least one byte and one separator: more values than that cannot
    # fit, and counting them stops the walk of a huge array before it starts.
    max_values = max_bytes // 2 + 1
    keys = 0
    values = 1
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(metadata, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict | list | tuple):
            if len(path) >= max_depth:
                raise InvalidTwinError(
                    f"{_where(path)}: nested deeper than {max_depth} levels; flatten the metadata"
                )
            keys += len(value) if isinstance(value, dict) else 0
            if keys > max_keys:
                raise InvalidTwinError(
                    f"metadata has more than {max_keys} keys (nested objects' keys included); "
                    "keep large documents elsewhere and put a reference in the metadata"
                )
            values += len(value)
            if values > max_values:
                raise too_large
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidTwinError(
                        f"{_where(path)}: a key of type {type(key).__name__} is not JSON; "
                        "JSON keys are text"
                    )
                if not _is_unicode(key):
                    raise InvalidTwinError(
                        f"{_where((*path, key))}: the key has a lone surrogate, "
                        "which is not valid Unicode"
                    )
                stack.append((item, (*path, key)))
        elif isinstance(value, list | tuple):
            stack.extend((item, (*path, i)) for i, item in enumerate(value))
        elif isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
            raise InvalidTwinError(f"{_where(path)}: {shown} is not JSON; use null or a number")
        elif isinstance(value, str):
            if not _is_unicode(value):
                raise InvalidTwinError(
                    f"{_where(path)}: the text has a lone surrogate, which is not valid Unicode"
                )
        elif value is not None and not isinstance(value, bool | int | float):
            raise InvalidTwinError(
                f"{_where(path)}: a {type(value).__name__} is not JSON; use text, a number, "
                "true, false, null, an array or an object"
            )
    if limits is None:
        return metadata
    try:
        text = json.dumps(metadata, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except ValueError:  # an integer with more digits than Python writes out
        raise InvalidTwinError(
            "metadata holds a number with too many digits to write as JSON; write it as text"
        ) from None
    if len(text.encode("utf-8")) > max_bytes:
        raise too_large
    return metadata


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


#: the range clinicians read a channel against, by (channel, unit): glucose 70-180 mg/dL
#: (3.9-10.0 mmol/L), the consensus target for time in range (Battelino et al. 2019), whose
#: lower bound is also the line of hypoglycaemia (level 1)
TARGET_RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("glucose", "mg/dL"): (70.0, 180.0),
    ("glucose", "mmol/L"): (3.9, 10.0),
    ("cgm", "mg/dL"): (70.0, 180.0),
    ("cgm", "mmol/L"): (3.9, 10.0),
}
#: channels whose target range's lower bound is a hypoglycaemia line
HYPO_CHANNELS = frozenset({"glucose", "cgm"})


#: the ingest screens a twin may opt in to (metadata ``"screens"``), by kind
OPT_IN_SCREENS: dict[TwinKind, tuple[str, ...]] = {TwinKind.DECISION: ("poison",)}


@dataclass(frozen=True)
class Twin:
    """One individual's twin. ``channels`` empty means any channel is accepted."""

    id: str
    kind: TwinKind
    owner: str = "local"
    metadata: dict[str, Any] = field(default_factory=dict)
    channels: tuple[Channel, ...] = ()
    created_at: str = ""
    #: the twin's internal identity: new each time a twin is created, never reused, so a
    #: job started for a twin cannot land on a later twin of the same id
    uid: str = ""
    #: the twin's row in the store, which the store's other tables point at: ``owner/id``
    #: (ids are unique per owner), or the bare id of a twin created before schema 7, when
    #: ids were unique in the whole store. Internal: users address twins by :attr:`ref`.
    key: str = ""

    def __post_init__(self) -> None:
        validate_twin_id(self.id)
        if not self.key:
            object.__setattr__(self, "key", twin_key(self.owner, self.id))
        if self.kind is TwinKind.DECISION and self.channels:
            raise InvalidTwinError(f"twin {self.id!r}: only state twins declare channels")
        names = [c.name for c in self.channels]
        if len(set(names)) != len(names):
            raise InvalidTwinError(f"twin {self.id!r}: a channel is declared twice in {names}")

    def check_screens(self) -> None:
        """Refuse metadata ``screens`` that are not opt-in screens of the twin's kind (at
        creation; a stored twin loads whatever its metadata holds)."""
        screens = self.metadata.get("screens")
        if screens is None:
            return
        known = OPT_IN_SCREENS.get(self.kind, ())
        wrong = [s for s in screens if s not in known] if isinstance(screens, list) else []
        if not isinstance(screens, list) or wrong:
            raise InvalidTwinError(
                f"twin {self.id!r}: metadata.screens must list opt-in screens of a "
                f"{self.kind.value} twin ({', '.join(known) or 'none'}), not {screens!r}"
            )

    @property
    def screens(self) -> tuple[str, ...]:
        """The opt-in ingest screens the twin's metadata asks for (``"screens":
        ["poison"]``), besides the default ones.

        >>> Twin("d1", TwinKind.DECISION, metadata={"screens": ["poison"]}).screens
        ('poison',)
        """
        named = self.metadata.get("screens")
        if not isinstance(named, list):
            return ()
        return tuple(str(s) for s in named if isinstance(s, str))

    @property
    def image_shape(self) -> tuple[int, int] | None:
        """``(height, width)`` when the twin's metadata says its decisions' features are an
        image's pixels (``"image": [height, width]``, each 1-512), else None: its clone is
        then a small CNN.

        >>> Twin("d1", TwinKind.DECISION, metadata={"image": [8, 8]}).image_shape
        (8, 8)
        """
        shape = self.metadata.get("image")
        if (
            isinstance(shape, list | tuple)
            and len(shape) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 512 for v in shape)
        ):
            return int(shape[0]), int(shape[1])
        return None

    @property
    def ref(self) -> str:
        """How a twin is addressed whoever owns it: ``owner/id``."""
        return twin_key(self.owner, self.id)

    def channel(self, name: str) -> Channel | None:
        return next((c for c in self.channels if c.name == name), None)

    def unit_of(self, name: str) -> str:
        """The unit the twin keeps channel ``name`` in: declared, else twinkit's default."""
        declared = self.channel(name)
        if declared is not None and declared.unit:
            return declared.unit
        known = KNOWN_CHANNELS.get(name)
        return known.unit if known is not None else ""

    def target_range(self, name: str) -> tuple[float, float] | None:
        """The range the twin's channel is read against: metadata ``"target_range":
        {"glucose": [70, 180]}``, else :data:`TARGET_RANGES` for its unit, else None.

        >>> Twin("p1", TwinKind.STATE).target_range("glucose")
        (70.0, 180.0)
        >>> Twin("p1", TwinKind.STATE, metadata={"target_range": {"glucose": [80, 160]}}
        ...      ).target_range("glucose")
        (80.0, 160.0)
        """
        given = self.metadata.get("target_range")
        if isinstance(given, dict) and name in given:
            low, high = given[name]
            return (float(low), float(high))
        return TARGET_RANGES.get((name, self.unit_of(name)))

    @property
    def time_zone(self) -> str:
        """The zone the twin's times are shown in: metadata ``"tz"`` if it names an IANA
        zone, else UTC."""
        zone = self.metadata.get("tz")
        if not isinstance(zone, str) or not zone:
            return "UTC"
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            return "UTC"
        return zone

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "owner": self.owner,
            "metadata": self.metadata,
            "channels": [c.to_dict() for c in self.channels],
            "created_at": self.created_at,
            "uid": self.uid,
        }
