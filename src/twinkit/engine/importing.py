"""Import a device or platform export into a twin: units, channels, then ``ingest``.

The importers (``twinkit.importers``) read a file into readings with units and flags; here
they meet the twin: channels it does not declare are left out (and counted), values are
converted to the unit the twin keeps each channel in, and the rows go through the same
validation, screening (the importer's flags first), quarantine and ledger as any batch,
in one transaction. The ledger entry says what was imported: format, version, options,
unit conversions and the importer's decisions (time zone, DST, date order, clock fixes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twinkit.core.errors import NotFoundError, Problem, TwinkitError, ValidationError
from twinkit.core.twin import KNOWN_CHANNELS, TwinKind, split_ref
from twinkit.data.importers import SignalBatch, parse_batch
from twinkit.engine.ingest import IngestResult, ingest_batch, key_twins
from twinkit.importers import Imported, conversion, unit_name
from twinkit.store import twins

if TYPE_CHECKING:
    from twinkit.engine.context import EngineContext

#: rows per stored batch: a larger import is stored as several batches in one transaction,
#: so that validation and screening work on bounded pieces
CHUNK_ROWS = 500_000


@dataclass
class ImportResult:
    """What an import read, converted, left out and stored."""

    format: str
    version: str
    source: str
    twin: str
    n_read: int
    channels: dict[str, int]
    units: dict[str, str]
    conversions: dict[str, str] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    batches: list[IngestResult] = field(default_factory=list)

    @property
    def n_stored(self) -> int:
        return sum(b.n_stored for b in self.batches)

    @property
    def n_quarantined(self) -> int:
        return sum(b.n_quarantined for b in self.batches)

    @property
    def n_duplicates(self) -> int:
        return sum(b.n_duplicates for b in self.batches)

    @property
    def already_ingested(self) -> bool:
        return bool(self.batches) and all(b.already_ingested for b in self.batches)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "batches"}
        out["batches"] = [b.to_dict() for b in self.batches]
        out |= {
            "n_stored": self.n_stored,
            "n_quarantined": self.n_quarantined,
            "n_duplicates": self.n_duplicates,
            "already_ingested": self.already_ingested,
        }
        return out


def renamed(imported: Imported, rename: Mapping[str, str]) -> Imported:
    """The readings with channels renamed (``{"glucose_scan": "glucose"}`` merges scans)."""
    if not rename:
        return imported
    channel = np.array([rename.get(str(c), str(c)) for c in imported.channel], dtype=object)
    value = imported.value.copy()
    units: dict[str, str] = {}
    for name, unit in imported.units.items():
        target = rename.get(name, name)
        if target in units and units[target] != unit:
            factor = conversion(unit, units[target])
            if factor is None:
                raise TwinkitError(
                    f"cannot merge {name!r} ({unit}) into {target!r} ({units[target]})"
                )
            value[imported.channel == name] *= factor
            continue
        units[target] = unit
    return replace(imported, channel=channel, value=value, units=units)


def import_readings(
    ctx: EngineContext,
    imported: Imported,
    twin: str,
    owner: str | None = None,
    *,
    only: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Store ``imported`` as the twin's readings; see the module's description. ``only``
    keeps just these channels. Nothing is stored if any row is invalid."""
    named_owner, twin_id = split_ref(twin)
    if named_owner is not None and owner is not None and named_owner != owner:
        raise TwinkitError(f"the twin {named_owner}/{twin_id} is not {owner!r}'s")
    owner = owner or named_owner
    counts = imported.counts()
    if only is not None:
        unknown = sorted(set(only) - set(counts))
        if unknown:
            raise TwinkitError(
                f"{imported.source}: no channel {', '.join(map(repr, unknown))} in the file "
                f"(it has {', '.join(sorted(counts)) or 'none'})"
            )
    with ctx.store.write() as conn:
        if owner is not None:
            key = twins.key_of(conn, owner, twin_id)
            keys = [] if key is None else [key]
        else:
            keys = [k for _, k in twins.named(conn, twin_id)]
        if len(keys) != 1:
            why = "no twin" if not keys else "several owners' twins (name the owner)"
            raise NotFoundError(f"{twin_id!r} names {why}")
        key = keys[0]
        found = twins.get_twin(conn, key)
        if found is None or found.kind is not TwinKind.STATE:
            kind = "no" if found is None else f"a {found.kind.value}"
            raise TwinkitError(f"{twin_id!r} is {kind} twin: readings go to a state twin")
        declared = {c.name: c.unit for c in found.channels}
        registered = twins.channels_of(conn, [key])
        seen_units = dict(zip(registered["name"], registered["unit"].fillna(""), strict=True))
        keep = np.ones(len(imported), dtype=bool)
        result = ImportResult(
            imported.format,
            imported.version,
            imported.source,
            found.ref,
            len(imported),
            counts,
            {},
            notes=dict(imported.notes),
        )
        problems: list[Problem] = []
        values = imported.value.copy()
        for name in counts:
            rows = imported.channel == name
            if (only is not None and name not in only) or (declared and name not in declared):
                keep &= ~rows
                result.left_out[name] = counts[name]
                continue
            have = imported.units.get(name, "")
            known = KNOWN_CHANNELS.get(name)
            target = declared.get(name) or seen_units.get(name) or (known.unit if known else "")
            target = target or have
            result.units[name] = unit_name(target) if target else ""
            if not have or not target:
                continue
            factor = conversion(have, target)
            if factor is None:
                problems.append(
                    Problem(
                        f"the twin keeps {name!r} in {target}; the file's values are in "
                        f"{have}, which twinkit cannot convert",
                        column=name,
                    )
                )
            elif factor != 1.0:
                values[rows] = values[rows] * factor
                result.conversions[name] = f"{unit_name(have)} -> {unit_name(target)}"
        if problems:
            raise ValidationError(imported.source, problems)
        if not keep.any():
            left = ", ".join(sorted(result.left_out))
            raise TwinkitError(
                f"{imported.source}: nothing to import for {found.ref}: it declares "
                f"{', '.join(sorted(declared)) or 'no channels'}; the file has {left}"
            )
        provenance: dict[str, Any] = {
            "format": imported.format,
            "version": imported.version,
            "options": {k: v for k, v in (options or {}).items() if v is not None},
            "units": result.units,
            "conversions": result.conversions,
            "left_out": result.left_out,
            "notes": result.notes,
        }
        rows = np.flatnonzero(keep)
        pieces = max(1, -(-len(rows) // CHUNK_ROWS))
        for i in range(pieces):
            part = rows[i * CHUNK_ROWS : (i + 1) * CHUNK_ROWS]
            batch = _batch(ctx, imported, values, part, twin_id, result.units)
            keyed = key_twins(conn, batch, owner)
            assert isinstance(keyed, SignalBatch)
            more = {"part": f"{i + 1}/{pieces}"} if pieces > 1 else {}
            chunk = replace(keyed, provenance=provenance | more)
            result.batches.append(
                ingest_batch(conn, chunk, ctx.signal_screens, ctx.decision_screens)
            )
    return result


def _batch(
    ctx: EngineContext,
    imported: Imported,
    values: np.ndarray,
    rows: np.ndarray,
    twin_id: str,
    units: dict[str, str],
) -> SignalBatch:
    """The validated batch of ``rows`` of the readings: each row numbered by its line in
    the source, with its importer flag."""
    frame = pd.DataFrame(
        {
            "time": pd.to_datetime(imported.t[rows], unit="us", utc=True),
            "channel": imported.channel[rows].astype(str),
            "value": values[rows],
        }
    )
    batch = parse_batch(frame, imported.source, twin_id, ctx.time_window.earliest_us)
    assert isinstance(batch, SignalBatch)
    position = rows[batch.frame["row"].to_numpy() - 1]
    return replace(
        batch,
        frame=batch.frame.assign(row=imported.line[position]),
        flags=imported.flag[position],
        units={k: v for k, v in units.items() if v},
    )
