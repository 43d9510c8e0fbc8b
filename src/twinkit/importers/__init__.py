"""Importers: people's own device and platform exports, read into twinkit's readings.

Each format's reader turns a file (or a site, for Nightscout) into an :class:`Imported`:
readings in UTC with channels, units, quarantine flags for sensor markers, and notes on
what the import decided. The engine's import (``TwinEngine.import_data``, ``twinkit
import FORMAT FILE --twin ID``) then converts units to the twin's and sends the rows
through the same validation, screening, quarantine and ledger as ``ingest``.

>>> sorted(FORMATS)
['apple-health', 'dexcom', 'fhir', 'fitbit', 'libre', 'nightscout']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twinkit.importers import apple_health, dexcom, fhir, fitbit, libre, nightscout
from twinkit.importers.base import Imported, conversion, unit_name


@dataclass(frozen=True)
class Format:
    """One importable format: its reader and the options it takes."""

    name: str
    title: str
    read: Callable[..., Imported]
    options: tuple[str, ...]
    many_files: bool = False


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("dexcom", "Dexcom Clarity CSV export", dexcom.read, ("tz", "unit")),
        Format("libre", "FreeStyle Libre / LibreView CSV", libre.read, ("tz", "unit", "dayfirst")),
        Format(
            "nightscout",
            "Nightscout JSON (entries, treatments, devicestatus)",
            nightscout.read,
            (),
            True,
        ),
        Format("fhir", "FHIR R4 Observations (Bundle or NDJSON)", fhir.read, ("unit",), True),
        Format(
            "fitbit",
            "Fitbit (Fitabase CSV, daily/hourly/minute)",
            fitbit.read,
            ("tz", "person", "dayfirst"),
        ),
        Format(
            "apple-health", "Apple Health export.xml (streamed)", apple_health.read, ("progress",)
        ),
    )
}


def read(format: str, paths: str | list[str], **options: Any) -> Imported:
    """Read ``paths`` (one file, or several for formats that take several) in ``format``.

    Options a format does not take are refused, so a misspelt one is not silently lost.
    """
    from twinkit.core.errors import TwinkitError

    spec = FORMATS.get(format)
    if spec is None:
        raise TwinkitError(
            f"unknown import format {format!r}: use one of {', '.join(sorted(FORMATS))}"
        )
    given = {k: v for k, v in options.items() if v is not None}
    if "progress" not in spec.options:
        given.pop("progress", None)  # a format read in a moment has no progress to tell
    wrong = sorted(set(given) - set(spec.options))
    if wrong:
        takes = ", ".join(spec.options) or "no options"
        raise TwinkitError(
            f"the {format} importer does not take {', '.join(wrong)} (it takes {takes})"
        )
    files = [paths] if isinstance(paths, str) else list(paths)
    if not spec.many_files and len(files) != 1:
        raise TwinkitError(f"the {format} importer reads one file at a time")
    return spec.read(files if spec.many_files else files[0], **given)


__all__ = ["FORMATS", "Format", "Imported", "conversion", "read", "unit_name"]
