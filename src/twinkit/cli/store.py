"""Commands on the store: init, twins, ingest, quarantine, retract, ledger."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from twinkit.cli.common import (
    DbOption,
    JsonOption,
    app,
    console,
    engine_for,
    err,
    ledger_app,
    print_forgotten,
    print_json,
    quarantine_app,
    spinner,
    twin_app,
)
from twinkit.core.errors import NotFoundError, TwinkitError

# -- store and twins ------------------------------------------------------------------------


@app.command()
def init(db: DbOption = None) -> None:
    """Create the store (or check an existing one opens)."""
    engine = engine_for(db)
    console.print(f"store ready: {engine.store.display_url} (artifacts in {engine.artifacts.root})")


@twin_app.command("create")
def twin_create(
    twin_id: Annotated[
        str,
        typer.Argument(help="Letters, digits and - _ . : (or owner/id, naming the owner too)"),
    ],
    kind: Annotated[str, typer.Option(help="state or decision")] = "state",
    owner: Annotated[
        str | None,
        typer.Option(help="Who the twin belongs to (default: local). Ids are unique per owner."),
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(help="Declare a channel: name[:unit[:low:high]] (repeatable)."),
    ] = None,
    meta: Annotated[list[str] | None, typer.Option(help="Metadata key=value (repeatable).")] = None,
    metadata: Annotated[
        str | None, typer.Option(help="Metadata as a JSON object, e.g. '{\"age\": 41}'.")
    ] = None,
    screen: Annotated[
        list[str] | None,
        typer.Option(
            help="An opt-in ingest screen (repeatable). Decision twins: poison (holds answers "
            "whose label contradicts the donor's others; works a few answers at a time)."
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Create a twin."""
    try:
        given = json.loads(metadata) if metadata else {}
    except json.JSONDecodeError as exc:
        raise TwinkitError(f"--metadata is not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise TwinkitError("--metadata must be a JSON object")
    fields: dict[str, Any] = dict(given)
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise TwinkitError(f"--meta {item!r}: expected key=value")
        fields[key] = value
    if screen:
        fields["screens"] = list(dict.fromkeys(screen))
    twin = engine_for(db).create_twin(twin_id, kind, owner, fields, channel or [])
    console.print(f"created {twin.kind.value} twin [bold]{twin.id}[/bold] (owner {twin.owner})")


@twin_app.command("list")
def twin_list(
    owner: Annotated[str | None, typer.Option(help="Only this owner's twins.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List twins."""
    engine = engine_for(db)
    rows = [engine.twin_summary(t.ref) for t in engine.list_twins(owner)]
    if as_json:
        print_json(rows)
        return
    table = Table("id", "kind", "owner", "observations", "decisions", "quarantined", "serving")
    for r in rows:
        table.add_row(
            r["id"],
            r["kind"],
            r["owner"],
            str(r["observations"]),
            str(r["decisions"]),
            str(r["quarantined"]),
            "-" if r["serving_version"] is None else f"v{r['serving_version']}",
        )
    console.print(table)


@twin_app.command("show")
def twin_show(twin_id: str, as_json: JsonOption = False, db: DbOption = None) -> None:
    """Show one twin: channels, counts, serving model."""
    summary = engine_for(db).twin_summary(twin_id)
    if as_json:
        print_json(summary)
        return
    for key, value in summary.items():
        if key != "channels":
            console.print(f"[bold]{key}[/bold]: {value}")
    for ch in summary["channels"]:
        console.print(f"  channel {ch['name']} [{ch['unit']}] range {ch['low']}..{ch['high']}")


@twin_app.command("delete")
def twin_delete(
    twin_id: str,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
    forget: Annotated[
        bool | None,
        typer.Option(
            "--forget/--keep-priors",
            help="Retrain the population priors that learned from it without it (default: "
            "ask; with --yes, keep them and say so).",
        ),
    ] = None,
    db: DbOption = None,
) -> None:
    """Delete a twin and its data (the ledger keeps its history), and offer to retrain
    the population priors that learned from it without it (twinkit federated forget)."""
    if not yes and not typer.confirm(f"delete twin {twin_id} and all its data?"):
        raise typer.Exit(1)
    engine = engine_for(db)
    try:
        priors = engine.priors_of(twin_id)
    except NotFoundError:
        priors = []  # delete_twin says there is no such twin
    engine.delete_twin(twin_id)
    console.print(f"deleted twin {twin_id}")
    if not priors:
        return
    listed = ", ".join(f"v{v}" for v in priors)
    if forget is None and not yes:
        forget = typer.confirm(
            f"population prior(s) {listed} learned from it; retrain them without it?"
        )
    if forget:
        print_forgotten(engine.forget(twin_id))
    else:
        console.print(
            f"population prior(s) {listed} still hold what they learned from it: "
            f"twinkit federated forget {twin_id}"
        )


# -- ingest and quarantine -----------------------------------------------------------------


@app.command()
def ingest(
    file: Annotated[
        Path, typer.Argument(help="CSV, Parquet or JSON lines (signals or decisions).")
    ],
    twin: Annotated[
        str | None,
        typer.Option(help="The twin (id or owner/id), for a file without a twin_id column."),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="Whose twins the file's ids are. Needed only for an id several owners use."
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Validate, screen and store a batch; all of it or, on any invalid row, none of it."""
    engine = engine_for(db)
    with spinner(f"ingesting {file}"):
        result = engine.ingest(file, twin=twin, owner=owner)
    if as_json:
        print_json(result.to_dict())
        return
    if result.already_ingested:
        console.print(
            f"{file}: already ingested as batch {result.batch_id} (same content); nothing changed"
        )
        return
    console.print(
        f"{file}: batch {result.batch_id}: {result.n_rows} rows, {result.n_stored} stored, "
        f"{result.n_quarantined} quarantined, {result.n_duplicates} duplicates skipped"
    )
    for reason, n in sorted(result.quarantine_reasons.items()):
        console.print(f"  quarantined {n} row(s): {reason}")


@quarantine_app.command("list")
def quarantine_list(
    twin: Annotated[str | None, typer.Option(help="Only this twin's rows.")] = None,
    released: Annotated[bool, typer.Option(help="Include released rows.")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List quarantined rows with the reason each was held."""
    rows = engine_for(db).quarantine(twin, include_released=released)
    if as_json:
        print_json(rows)
        return
    table = Table("id", "twin", "batch", "row", "record", "reason", "released")
    for r in rows:
        record = {k: v for k, v in r["record"].items() if k != "twin_id"}
        table.add_row(
            str(r["id"]),
            r["twin_id"],
            str(r["batch_id"]),
            str(r["row"]),
            json.dumps(record),
            r["reason"],
            r["released_at"] or "",
        )
    console.print(table)


@quarantine_app.command("release")
def quarantine_release(
    ids: Annotated[list[int], typer.Argument(help="Quarantine ids to store after all.")],
    db: DbOption = None,
) -> None:
    """Store quarantined rows after all (recorded in the ledger)."""
    n = engine_for(db).release(ids)
    console.print(f"released {n} row(s)")


def _utc_option(text: str | None, option: str) -> pd.Timestamp | None:
    if text is None:
        return None
    try:
        moment = pd.Timestamp(text)
    except ValueError:
        raise TwinkitError(f"{option} {text!r}: not an ISO-8601 time") from None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


@app.command()
def retract(
    twin_id: Annotated[str, typer.Argument(help="The twin whose rows are wrong.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in the ledger).")],
    batch: Annotated[int | None, typer.Option(help="Rows of this batch.")] = None,
    start: Annotated[
        str | None, typer.Option(help="Signals at or after this ISO-8601 time (UTC if naive).")
    ] = None,
    end: Annotated[str | None, typer.Option(help="Signals at or before this time.")] = None,
    channel: Annotated[
        list[str] | None, typer.Option(help="Only this channel (repeatable).")
    ] = None,
    item: Annotated[list[str] | None, typer.Option(help="This decision item (repeatable).")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Take wrong rows out of a twin's data without deleting the twin: every condition given
    must hold. Recorded in the ledger; the next fit does not see them."""
    result = engine_for(db).retract(
        twin_id,
        reason,
        batch_id=batch,
        start=_utc_option(start, "--start"),
        end=_utc_option(end, "--end"),
        channels=channel,
        items=item,
    )
    if as_json:
        print_json(result.to_dict())
        return
    if not result.n_retracted:
        console.print(f"{twin_id}: no stored row matches; nothing retracted")
        return
    per_batch = ", ".join(f"batch {b}: {n}" for b, n in result.batches.items())
    console.print(
        f"{twin_id}: retracted {result.n_retracted} row(s) ({per_batch}); "
        f"ledger entry {result.ledger_seq}"
    )


# -- ledger -----------------------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(as_json: JsonOption = False, db: DbOption = None) -> None:
    """Check the hash chain, the stored data and the model artifacts. Exit 2 if broken."""
    engine = engine_for(db)
    with spinner("verifying the ledger"):
        report = engine.verify()
    if as_json:
        print_json({"ok": report.ok, **report.__dict__})
    elif report.ok:
        console.print(
            f"ledger ok: {report.entries} entries, {report.batches} batches and "
            f"{report.models} models verified"
        )
    else:
        err.print(f"[red]ledger verification FAILED[/red] ({len(report.problems)} problem(s)):")
        for problem in report.problems:
            err.print(f"  - {problem}", markup=False)
    if not report.ok:
        raise typer.Exit(2)


@ledger_app.command("show")
def ledger_show(
    twin_id: Annotated[str | None, typer.Argument(help="A twin (default: every entry).")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Print a twin's history from the ledger."""
    entries = engine_for(db).history(twin_id)
    if as_json:
        print_json([e.to_dict() for e in entries])
        return
    table = Table("seq", "time", "event", "twin", "details", "hash")
    for e in entries:
        details = {
            k: v for k, v in e.payload.items() if k not in ("batch_hashes", "metrics", "params")
        }
        table.add_row(
            str(e.seq),
            e.created_at[:19],
            e.event,
            e.twin_id or "*",
            json.dumps(details, default=str)[:100],
            e.hash[:12],
        )
    console.print(table)
