"""`twinkit import FORMAT FILE... --twin ID`: people's device and platform exports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from twinkit.cli.common import DbOption, JsonOption, app, bar, console, engine_for, print_json
from twinkit.core.errors import TwinkitError
from twinkit.engine.importing import ImportResult
from twinkit.importers import FORMATS

_FORMATS_HELP = "; ".join(f"{name}: {spec.title}" for name, spec in FORMATS.items())


def _pairs(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise TwinkitError(f"--channel {item!r}: write FILE_CHANNEL=TWIN_CHANNEL")
        out[src.strip()] = dst.strip()
    return out


def _when(text: str | None, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise TwinkitError(f"{option} {text!r}: use an ISO-8601 date or time") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@app.command("import")
def import_(
    format: Annotated[str, typer.Argument(help=f"The export's format. {_FORMATS_HELP}.")],
    files: Annotated[
        list[str],
        typer.Argument(help="The file(s); for nightscout also a site's URL (https://...)."),
    ],
    twin: Annotated[str, typer.Option(help="The state twin to import into (id or owner/id).")],
    owner: Annotated[str | None, typer.Option(help="Whose twin it is, for a shared id.")] = None,
    tz: Annotated[
        str | None,
        typer.Option(help="Time zone of the file's local clock times (IANA: Europe/Berlin)."),
    ] = None,
    unit: Annotated[
        str | None,
        typer.Option(help="Glucose unit (mg/dL or mmol/L) of a file that does not name it."),
    ] = None,
    dayfirst: Annotated[
        bool | None,
        typer.Option(
            "--dayfirst/--monthfirst",
            help="Date order of dates like 03/04/2024 (default: decided from the data).",
        ),
    ] = None,
    person: Annotated[
        str | None, typer.Option(help="Fitbit: the person (Id) of a file that holds several.")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(help="Rename a channel, FILE_CHANNEL=TWIN_CHANNEL (repeatable)."),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Import only these channels (comma-separated).")
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="NIGHTSCOUT_TOKEN", help="Nightscout access token (for a URL)."),
    ] = None,
    api_secret: Annotated[
        str | None,
        typer.Option(envvar="NIGHTSCOUT_API_SECRET", help="Nightscout API secret (for a URL)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Nightscout URL: from this time (default 90 days ago).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Nightscout URL: up to this time.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Import a Dexcom, LibreView, Nightscout, FHIR, Fitbit or Apple Health export into a
    twin: units converted to the twin's, sensor markers quarantined with the reason, local
    times placed in their zone; all of it stored, or (any invalid row) none of it."""
    engine = engine_for(db)
    rename = _pairs(channel)
    keep = [c.strip() for c in only.split(",") if c.strip()] if only else None
    url = files[0] if len(files) == 1 and files[0].startswith(("http://", "https://")) else None
    with bar(f"importing {', '.join(files)}") as progress:
        if url is not None:
            if format != "nightscout":
                raise TwinkitError(f"only nightscout imports from a URL, not {format}")
            result = engine.import_nightscout(
                url,
                twin,
                owner,
                token=token,
                api_secret=api_secret,
                since=_when(since, "--since"),
                until=_when(until, "--until"),
                rename=rename,
                only=keep,
            )
        else:
            if token or api_secret or since or until:
                raise TwinkitError("--token, --api-secret, --since and --until are for a URL")
            options: dict[str, Any] = {"tz": tz, "unit": unit, "dayfirst": dayfirst}
            options |= {"person": person, "progress": progress}
            result = engine.import_data(
                format, [Path(f) for f in files], twin, owner, rename=rename, only=keep, **options
            )
    if as_json:
        print_json(result.to_dict())
        return
    show(result)


def show(result: ImportResult) -> None:
    """What the import did, in words and one table."""
    if result.already_ingested:
        console.print(f"{result.source}: already imported (same content); nothing changed")
        return
    console.print(
        f"{result.source} ({result.version}) -> {result.twin}: {result.n_read} readings, "
        f"{result.n_stored} stored, {result.n_quarantined} quarantined, "
        f"{result.n_duplicates} duplicates skipped"
    )
    table = Table("channel", "readings", "unit", "note")
    for name, n in sorted(result.channels.items()):
        note = ""
        if name in result.left_out:
            note = "left out (not a channel of the twin)"
        elif name in result.conversions:
            note = f"converted {result.conversions[name]}"
        table.add_row(name, str(n), result.units.get(name, ""), note)
    console.print(table)
    reasons: dict[str, int] = {}
    for batch in result.batches:
        for reason, n in batch.quarantine_reasons.items():
            reasons[reason] = reasons.get(reason, 0) + n
    for reason, n in sorted(reasons.items()):
        console.print(f"  quarantined {n} row(s) by {reason} (twinkit quarantine list)")
    for key, value in result.notes.items():
        console.print(f"  {key.replace('_', ' ')}: {value}")
