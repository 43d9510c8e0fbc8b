"""The `twinkit` command line over TwinEngine: exit 0 ok, 1 user error, 2 integrity failure."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from twinkit.core.errors import TwinkitError
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

# Tables stay readable when the output is a file or a CI log (rich would assume 80 columns).
console = Console(width=None if sys.stdout.isatty() else 120)
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


_state = _State()


@app.callback()
def _main(db: DbOption = None) -> None:
    _state.db = db


def _engine(db: str | None) -> TwinEngine:
    return TwinEngine(db or _state.db)


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@contextmanager
def _spinner(text: str) -> Iterator[None]:
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
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


# -- store and twins ------------------------------------------------------------------------


@app.command()
def init(db: DbOption = None) -> None:
    """Create the store (or check an existing one opens)."""
    engine = _engine(db)
    console.print(f"store ready: {engine.store.url} (artifacts in {engine.artifacts.root})")


@twin_app.command("create")
def twin_create(
    twin_id: Annotated[str, typer.Argument(help="Letters, digits and - _ . :")],
    kind: Annotated[str, typer.Option(help="state or decision")] = "state",
    owner: Annotated[str, typer.Option(help="Who the twin belongs to.")] = "local",
    channel: Annotated[
        list[str] | None,
        typer.Option(help="Declare a channel: name[:unit[:low:high]] (repeatable)."),
    ] = None,
    meta: Annotated[list[str] | None, typer.Option(help="Metadata key=value (repeatable).")] = None,
    metadata: Annotated[
        str | None, typer.Option(help="Metadata as a JSON object, e.g. '{\"age\": 41}'.")
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
    twin = _engine(db).create_twin(twin_id, kind, owner, fields, channel or [])
    console.print(f"created {twin.kind.value} twin [bold]{twin.id}[/bold] (owner {twin.owner})")


@twin_app.command("list")
def twin_list(
    owner: Annotated[str | None, typer.Option(help="Only this owner's twins.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List twins."""
    engine = _engine(db)
    rows = [engine.twin_summary(t.id) for t in engine.list_twins(owner)]
    if as_json:
        _print_json(rows)
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
    summary = _engine(db).twin_summary(twin_id)
    if as_json:
        _print_json(summary)
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
    db: DbOption = None,
) -> None:
    """Delete a twin and its data (the ledger keeps its history)."""
    if not yes and not typer.confirm(f"delete twin {twin_id} and all its data?"):
        raise typer.Exit(1)
    _engine(db).delete_twin(twin_id)
    console.print(f"deleted twin {twin_id}")


# -- ingest and quarantine -----------------------------------------------------------------


@app.command()
def ingest(
    file: Annotated[
        Path, typer.Argument(help="CSV, Parquet or JSON lines (signals or decisions).")
    ],
    twin: Annotated[
        str | None, typer.Option(help="The twin, for a file without a twin_id column.")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Validate, screen and store a batch; all of it or, on any invalid row, none of it."""
    engine = _engine(db)
    with _spinner(f"ingesting {file}"):
        result = engine.ingest(file, twin=twin)
    if as_json:
        _print_json(result.to_dict())
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
    rows = _engine(db).quarantine(twin, include_released=released)
    if as_json:
        _print_json(rows)
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
    n = _engine(db).release(ids)
    console.print(f"released {n} row(s)")


# -- models ---------------------------------------------------------------------------------


@app.command()
def fit(
    twin_ids: Annotated[
        list[str] | None, typer.Argument(help="Twins to fit (default: all state twins).")
    ] = None,
    model: Annotated[
        str, typer.Option(help="auto (best on the twin's own data), or a model name.")
    ] = "auto",
    target: Annotated[
        str | None, typer.Option(help="Target channel (default: glucose, else the first).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Fit a new model version per twin; promote it only if it is not worse."""
    engine = _engine(db)
    ids = twin_ids or [t.id for t in engine.list_twins() if t.kind.value == "state"]
    results, failures = engine.fit_cohort(
        ids, model=model, target=target, seed=seed, progress=_bar_callback(len(ids))
    )
    if as_json:
        _print_json({"fitted": [r.to_dict() for r in results], "failed": failures})
    else:
        table = Table("twin", "version", "model", "promoted", "holdout RMSE", "reason")
        for r in results:
            table.add_row(
                r.twin_id,
                f"v{r.version}",
                r.model,
                "yes" if r.promoted else "no",
                f"{r.metrics['score']:.2f}",
                r.reason,
            )
        console.print(table)
        for twin_id, reason in failures.items():
            err.print(f"{twin_id}: not fitted: {reason}", markup=False)
    if failures:
        raise typer.Exit(1)


def _bar_callback(total: int) -> Callable[[str], None] | None:
    if total <= 1:
        return None
    bar = progress_bar()
    task = bar.add_task("fitting", total=total)
    bar.start()

    def advance(twin_id: str) -> None:
        bar.update(task, advance=1, description=f"fitted {twin_id}")
        if bar.tasks[0].completed >= total:
            bar.stop()

    return advance


@app.command()
def predict(
    twin_id: str,
    horizons: Annotated[str, typer.Option(help="Minutes ahead, comma-separated.")] = "30,60",
    version: Annotated[int | None, typer.Option(help="A model version (default: serving).")] = None,
    as_of: Annotated[
        str | None, typer.Option(help="Forecast from the data up to this ISO-8601 time.")
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Forecast a twin's target with its serving model."""
    try:
        steps = [int(h) for h in horizons.split(",") if h.strip()]
    except ValueError:
        raise TwinkitError(f"--horizons {horizons!r}: expected minutes like 30,60") from None
    origin = None
    if as_of is not None:
        try:
            origin = pd.Timestamp(as_of)
        except ValueError:
            raise TwinkitError(f"--as-of {as_of!r} is not an ISO-8601 time") from None
        origin = origin.tz_localize("UTC") if origin.tzinfo is None else origin.tz_convert("UTC")
    forecast = _engine(db).predict(twin_id, steps, version, as_of=origin)
    if as_json:
        _print_json(forecast.to_dict())
        return
    console.print(
        f"{twin_id}: {forecast.target} from {forecast.origin.isoformat()} "
        f"({forecast.model} v{forecast.version})"
    )
    table = Table("horizon", "time", "median", "90% interval")
    lo, hi = forecast.interval(0.9)
    for i, h in enumerate(forecast.horizons):
        table.add_row(
            f"+{h} min",
            forecast.times[i].isoformat(),
            f"{forecast.quantiles[0.5][i]:.1f}",
            f"{lo[i]:.1f} .. {hi[i]:.1f}",
        )
    console.print(table)


@app.command()
def export(
    twin_id: str,
    onnx: Annotated[Path, typer.Option("--onnx", help="Write the ONNX model here.")],
    version: Annotated[int | None, typer.Option(help="A model version (default: serving).")] = None,
    db: DbOption = None,
) -> None:
    """Export a twin's neural model to ONNX; run it with twinkit.edge.OnnxForecaster."""
    path = _engine(db).export_onnx(twin_id, onnx, version)
    console.print(f"{twin_id}: wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


@population_app.command("fit")
def population_fit(
    twin_ids: Annotated[
        list[str] | None, typer.Argument(help="Twins to learn from (default: every state twin).")
    ] = None,
    model: Annotated[str, typer.Option(help="A model that can learn from many twins.")] = "gru",
    target: Annotated[str, typer.Option(help="The channel to forecast.")] = "glucose",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a population prior on the twins' training data; `twinkit fit` then starts
    personal models from it."""
    with _spinner(f"training a {model} population model"):
        result = _engine(db).fit_population(model, twin_ids or None, target, seed)
    if as_json:
        _print_json(result.to_dict())
        return
    console.print(
        f"population v{result.version} ({result.model}) learned from {len(result.twins)} twins "
        f"in {result.seconds:.1f} s"
    )
    for twin_id, why in result.skipped.items():
        err.print(f"  skipped {twin_id}: {why}", markup=False)


@population_app.command("list")
def population_list(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List population priors, newest last (the newest is the one used)."""
    versions = _engine(db).populations()
    if as_json:
        _print_json([v.to_dict() for v in versions])
        return
    table = Table("version", "model", "target", "twins", "sha256", "created")
    for v in versions:
        table.add_row(
            f"v{v.version}", v.model, v.target, str(len(v.twins)), v.sha256[:12], v.created_at
        )
    console.print(table)


@models_app.command("list")
def models_list(twin_id: str, as_json: JsonOption = False, db: DbOption = None) -> None:
    """List a twin's model versions."""
    versions = _engine(db).models(twin_id)
    if as_json:
        _print_json([v.to_dict() for v in versions])
        return
    table = Table("version", "model", "status", "holdout RMSE", "sha256", "created")
    for v in versions:
        table.add_row(
            f"v{v.version}",
            v.model,
            v.status,
            f"{v.metrics.get('score', float('nan')):.2f}",
            v.sha256[:12],
            v.created_at,
        )
    console.print(table)


@models_app.command("promote")
def models_promote(twin_id: str, version: int, db: DbOption = None) -> None:
    """Serve a given version."""
    _engine(db).promote(twin_id, version)
    console.print(f"{twin_id}: v{version} is serving")


@models_app.command("rollback")
def models_rollback(twin_id: str, db: DbOption = None) -> None:
    """Serve the version that served before the current one."""
    version = _engine(db).rollback(twin_id)
    console.print(f"{twin_id}: rolled back to v{version}")


# -- ledger -----------------------------------------------------------------------------------


@ledger_app.command("verify")
def ledger_verify(as_json: JsonOption = False, db: DbOption = None) -> None:
    """Check the hash chain, the stored data and the model artifacts. Exit 2 if broken."""
    engine = _engine(db)
    with _spinner("verifying the ledger"):
        report = engine.verify()
    if as_json:
        _print_json({"ok": report.ok, **report.__dict__})
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
    entries = _engine(db).history(twin_id)
    if as_json:
        _print_json([e.to_dict() for e in entries])
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


@eval_app.command("forecast")
def eval_forecast(
    data: Annotated[Path, typer.Argument(help="Signals file (twin_id,time,channel,value).")],
    target: Annotated[str, typer.Option(help="The channel to forecast.")] = "glucose",
    horizons: Annotated[str, typer.Option(help="Minutes ahead, comma-separated.")] = "30,60",
    train_frac: Annotated[
        float, typer.Option(help="Share of each twin's readings that trains.")
    ] = 0.7,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    models: Annotated[
        str | None, typer.Option(help="Comma-separated models (default: all, population, twinkit).")
    ] = None,
    cold_start: Annotated[
        str | None, typer.Option(help="Personalise on only the first part, e.g. 24h.")
    ] = None,
    max_origins: Annotated[int, typer.Option(help="Forecast origins per twin, at most.")] = 200,
    meta: Annotated[
        bool, typer.Option(help="Meta-learn the population prior (Reptile) for cold starts.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
) -> None:
    """Evaluate forecasters per twin on a temporal split; print a table, write JSON."""
    from twinkit.data.importers import load_batch
    from twinkit.eval.forecast import evaluate_forecasts

    try:
        steps = [int(h) for h in horizons.split(",") if h.strip()]
        window = pd.Timedelta(cold_start) if cold_start else None
    except ValueError as exc:
        raise TwinkitError(f"bad --horizons or --cold-start: {exc}") from None
    with _spinner(f"reading {data}"):
        batch = load_batch(data)
    frame = batch.frame.assign(time=pd.to_datetime(batch.frame["t"], unit="us", utc=True))
    if "time" not in frame or "channel" not in frame:
        raise TwinkitError(f"{data}: eval forecast needs a signals file")
    with _spinner("evaluating"):
        report = evaluate_forecasts(
            frame,
            target,
            steps,
            train_frac=train_frac,
            seed=seed,
            models=[m.strip() for m in models.split(",")] if models else None,
            cold_start=window,
            max_origins=max_origins,
            meta=meta,
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    table = Table("model", *[f"RMSE {h}" for h in sorted(steps)], "cov90", "twins", "failed")
    for name, result in report["models"].items():
        pooled = result["pooled"]
        cov = [pooled[h].get("coverage90") for h in pooled if "coverage90" in pooled[h]]
        table.add_row(
            name,
            *[f"{pooled[str(h)]['rmse']:.2f}" if str(h) in pooled else "-" for h in sorted(steps)],
            f"{np.mean(cov):.2f}" if cov else "-",
            str(len(result["per_twin"])),
            str(len(result["failed"])),
        )
    console.print(table)


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Virtual patients in the cohort.")] = 4,
    days: Annotated[float, typer.Option(help="Simulated days per patient.")] = 6.0,
    source: Annotated[str, typer.Option(help="simglucose or synthetic")] = "simglucose",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    report: Annotated[Path, typer.Option(help="Where to write the HTML report.")] = Path(
        ".twinkit/report.html"
    ),
    epochs: Annotated[int, typer.Option(help="Training epochs of the population model.")] = 30,
    db: DbOption = None,
) -> None:
    """The main job: a cohort of state twins, ingested, fitted, forecast, and reported."""
    from twinkit.demo import run_demo

    run_demo(
        _engine(db),
        patients=patients,
        days=days,
        source=source,
        seed=seed,
        report_path=report,
        console=console,
        progress=progress_bar,
        epochs=epochs,
    )


def main() -> None:
    """Entry point: user errors exit 1, integrity failures exit 2, with a clear message."""
    try:
        code = app(standalone_mode=False)
    except TwinkitError as exc:
        err.print("error:", style="red", end=" ")
        err.print(str(exc), markup=False, highlight=False)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(1)
    except Exception as exc:
        # Typer's usage errors (unknown option, missing argument) know how to show
        # themselves; they are user errors like any other.
        show = getattr(exc, "show", None)
        if callable(show):
            show()
            sys.exit(1)
        raise
    sys.exit(code if isinstance(code, int) else 0)
