"""What every `twinkit` command shares: the app and its sub-apps, consoles, options."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from twinkit.core.errors import TwinkitError
from twinkit.core.progress import ProgressFn
from twinkit.engine import TwinEngine

app = typer.Typer(
    help="Hyper-personalized, resilient digital twins.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
twin_app = typer.Typer(help="Create, list, show and delete twins.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Rows held back at ingest.", no_args_is_help=True)
models_app = typer.Typer(help="Model versions: list, promote, roll back.", no_args_is_help=True)
ledger_app = typer.Typer(help="The provenance ledger.", no_args_is_help=True)
population_app = typer.Typer(
    help="Population priors: one model learned from many twins.", no_args_is_help=True
)
eval_app = typer.Typer(help="Evaluate models on a data set with many twins.", no_args_is_help=True)
app.add_typer(twin_app, name="twin")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(models_app, name="models")
app.add_typer(ledger_app, name="ledger")
app.add_typer(eval_app, name="eval")
app.add_typer(population_app, name="population")

# Tables stay readable when the output is a file or a CI log (rich would assume 80 columns),
# and a line of text is never broken (a long path would split "1 quarantined" in two).
console = Console(width=None if sys.stdout.isatty() else 120, soft_wrap=True)
err = Console(stderr=True)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="Store URL or SQLite path (default: $TWINKIT_DB, else .twinkit/twinkit.db)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class _State:
    db: str | None = None
    quiet: bool = False


_state = _State()


@app.callback()
def _main(
    db: DbOption = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or spinners on stderr.")
    ] = False,
) -> None:
    _state.db = db
    _state.quiet = quiet


def engine_for(db: str | None) -> TwinEngine:
    return TwinEngine(db or _state.db)


def print_forgotten(result: Any) -> None:
    """What forgetting a twin in the population priors did (a ForgetResult)."""
    for old, new in result.replaced.items():
        console.print(f"population v{old} withdrawn and its weights deleted; v{new} replaces it")
    for old in result.withdrawn:
        console.print(
            f"population v{old} (from a deployed federation) withdrawn and its weights "
            "deleted; run the federation again to replace it"
        )
    console.print(
        f"retrained {result.rounds_retrained} of {result.rounds_full} rounds "
        f"({result.cost:.0%} of a full retrain) in {result.seconds:.1f} s"
    )


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def spinner(text: str) -> Iterator[None]:
    """A spinner on stderr while the block runs (none with ``--quiet``; rich draws none
    when stderr is not a terminal, so scripts and CI logs stay clean)."""
    if not _drawing():
        yield
        return
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        progress.add_task(text, total=None)
        yield


def progress_bar() -> Progress:
    """A determinate bar with the time left, on stderr (see :func:`spinner`)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not _drawing(),
    )


def _drawing() -> bool:
    """Whether to draw progress: stderr is a terminal and ``--quiet`` was not given (a
    disabled rich display still writes blank lines, so none is made)."""
    return not _state.quiet and err.is_terminal


@contextmanager
def bar(title: str) -> Iterator[ProgressFn]:
    """A progress bar for a function that reports ``progress(what, done, total)``
    (:mod:`twinkit.core.progress`): yields that callback."""
    if not _drawing():
        yield lambda what, done, total: None
        return
    with progress_bar() as shown:
        task: list[TaskID] = []

        def report(what: str, done: int, total: int) -> None:
            if not task:
                task.append(shown.add_task(title, total=total))
            shown.update(task[0], completed=done, total=total, description=f"{title}: {what}")

        yield report


def read_signals(path: Path, command: str) -> pd.DataFrame:
    """A signals file in long format with a UTC ``time`` column, or a clear error naming
    ``command`` when the file holds decisions."""
    from twinkit.data.importers import SignalBatch, load_batch

    with spinner(f"reading {path}"):
        batch = load_batch(path)
    if not isinstance(batch, SignalBatch):
        raise TwinkitError(f"{path}: {command} needs a signals file, this holds decisions")
    return batch.frame.assign(time=pd.to_datetime(batch.frame["t"], unit="us", utc=True))
