"""`twinkit report`: one HTML file on your own twins."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinkit.cli.common import DbOption, app, console, engine_for, spinner


@app.command("report")
def report(
    twins: Annotated[
        list[str] | None, typer.Argument(help="The twins (id or owner/id); default: all.")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="Only this owner's twins.")] = None,
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path(
        "twinkit-report.html"
    ),
    db: DbOption = None,
) -> None:
    """Write a self-contained HTML report on twins: forecast on their clock with the target
    range, recent data and time in range, live and holdout accuracy, quarantine, versions
    and the ledger in words. Readable printed."""
    from twinkit.report.owner import write_owner_report

    engine = engine_for(db)
    with spinner(f"writing {out}"):
        path = write_owner_report(engine, out, twins or (), owner)
    console.print(f"wrote {path}")
