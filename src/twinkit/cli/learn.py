"""Commands on models: fit, predict, versions, population priors, export, eval, demo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from twinkit.cli.common import (
    DbOption,
    JsonOption,
    app,
    bar,
    console,
    engine_for,
    err,
    eval_app,
    models_app,
    population_app,
    print_json,
    progress_bar,
    read_signals,
)
from twinkit.core.errors import TwinkitError

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
    candidates: Annotated[
        str | None,
        typer.Option(
            help="With auto: comma-separated candidates (default: linear_ar, population, "
            "personalized, ensemble; any model name, e.g. gp, may be added)."
        ),
    ] = None,
    update: Annotated[
        str | None,
        typer.Option(
            help="Bring the serving version up to date instead: ewc (EWC + replay), "
            "finetune, scratch, or auto (ewc for a neural model, else a fit anew)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            help="With --update: the data from this ISO-8601 time on are new (most of "
            "them train, their last 20% is the holdout)."
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Fit a new model version per twin; promote it only if it is not worse. A decision
    twin's model is its clone (scored by agreement with the donor's held-out answers)."""
    if since is not None and update is None:
        raise TwinkitError("--since says where new data begin for --update: give --update too")
    engine = engine_for(db)
    state = [t for t in engine.list_twins() if t.kind.value == "state"]
    # Bare ids while one owner has them all; owner/id once several owners share the store.
    one_owner = len({t.owner for t in state}) <= 1
    ids = twin_ids or [t.id if one_owner else t.ref for t in state]
    results, failures = engine.fit_cohort(
        ids,
        model=model,
        target=target,
        seed=seed,
        candidates=[c.strip() for c in candidates.split(",")] if candidates else None,
        progress=_bar_callback(len(ids)),
        **({"update": update, "since": since} if update is not None else {}),
    )
    if as_json:
        print_json({"fitted": [r.to_dict() for r in results], "failed": failures})
    else:
        table = Table("twin", "version", "model", "promoted", "holdout", "reason")
        for r in results:
            table.add_row(
                r.twin_id,
                f"v{r.version}",
                r.model,
                "yes" if r.promoted else "no",
                _holdout(r.metrics),
                r.reason,
            )
        console.print(table)
        for twin_id, reason in failures.items():
            err.print(f"{twin_id}: not fitted: {reason}", markup=False)
    if failures:
        raise typer.Exit(1)


def _holdout(metrics: dict[str, Any]) -> str:
    """A forecaster's holdout RMSE, or a clone's held-out agreement with its donor."""
    if "score" in metrics:
        return f"RMSE {metrics['score']:.2f}"
    agreement = metrics.get("agreement")
    return "-" if agreement is None else f"agreement {agreement:.2f}"


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
    forecast = engine_for(db).predict(twin_id, steps, version, as_of=origin)
    if as_json:
        print_json(forecast.to_dict())
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
    path = engine_for(db).export_onnx(twin_id, onnx, version)
    console.print(f"{twin_id}: wrote {path} ({path.stat().st_size / 1024:.0f} KiB)")


@population_app.command("fit")
def population_fit(
    twin_ids: Annotated[
        list[str] | None,
        typer.Argument(help="Twins to learn from (default: every state twin of the owner)."),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="Whose twins (default: the store's one owner). Pooled with other owners' "
            "only if the owner shares (twinkit population share)."
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="A model that can learn from many twins.")] = "gru",
    target: Annotated[str, typer.Option(help="The channel to forecast.")] = "glucose",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    meta: Annotated[
        bool, typer.Option(help="Refine it by Reptile meta-learning, for cold starts.")
    ] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Train a population prior on the twins' training data; `twinkit fit` then starts
    personal models from it."""
    with bar(f"training a {model} population model") as progress:
        result = engine_for(db).fit_population(
            model, twin_ids or None, target, seed, meta=meta, owner=owner, progress=progress
        )
    if as_json:
        print_json(result.to_dict())
        return
    console.print(
        f"population v{result.version} ({result.model}) learned from {len(result.twins)} twins "
        f"of {', '.join(result.owners)} in {result.seconds:.1f} s"
    )
    for twin_id, why in result.skipped.items():
        err.print(f"  skipped {twin_id}: {why}", markup=False)


@population_app.command("share")
def population_share(
    owner: Annotated[str, typer.Argument(help="The owner who consents (or withdraws).")],
    stop: Annotated[bool, typer.Option(help="Stop sharing.")] = False,
    db: DbOption = None,
) -> None:
    """Pool an owner's twins with the other sharing owners' for shared population priors
    (by default a prior pools one owner's twins). Recorded in the ledger."""
    changed = engine_for(db).share_population(owner, not stop)
    state = "no longer shares" if stop else "shares"
    console.print(f"{owner} {state} population priors" + ("" if changed else " (already)"))


@population_app.command("list")
def population_list(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List population priors, newest last (a twin's fit uses the newest that pools its
    owner's twins, and other owners' only if all of them share)."""
    versions = engine_for(db).populations()
    if as_json:
        print_json([v.to_dict() for v in versions])
        return
    table = Table("version", "model", "target", "owners", "twins", "sha256", "created")
    for v in versions:
        table.add_row(
            f"v{v.version}",
            v.model,
            v.target,
            ", ".join(v.owners),
            str(len(v.twins)),
            v.sha256[:12],
            v.created_at,
        )
    console.print(table)


@models_app.command("list")
def models_list(twin_id: str, as_json: JsonOption = False, db: DbOption = None) -> None:
    """List a twin's model versions."""
    versions = engine_for(db).models(twin_id)
    if as_json:
        print_json([v.to_dict() for v in versions])
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
    engine_for(db).promote(twin_id, version)
    console.print(f"{twin_id}: v{version} is serving")


@models_app.command("rollback")
def models_rollback(twin_id: str, db: DbOption = None) -> None:
    """Serve the version that served before the current one."""
    version = engine_for(db).rollback(twin_id)
    console.print(f"{twin_id}: rolled back to v{version}")


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
        str | None,
        typer.Option(
            help="Comma-separated models (default: all, population, twinkit); also the "
            "comparators plain_ridge, auto_arima, auto_ets (statsforecast)."
        ),
    ] = None,
    cold_start: Annotated[
        str | None, typer.Option(help="Personalise on only the first part, e.g. 24h.")
    ] = None,
    max_origins: Annotated[int, typer.Option(help="Forecast origins per twin, at most.")] = 200,
    every: Annotated[
        float | None,
        typer.Option(help="Downsample to one reading per this many minutes (15: a Libre)."),
    ] = None,
    meta: Annotated[
        bool, typer.Option(help="Meta-learn the population prior (Reptile) for cold starts.")
    ] = False,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the report here.")] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Write an HTML report here (printable).")
    ] = None,
) -> None:
    """Evaluate forecasters per twin on a temporal split; print a table, write JSON."""
    from twinkit.eval.forecast_benchmark import evaluate_forecasts

    try:
        steps = [int(h) for h in horizons.split(",") if h.strip()]
        window = pd.Timedelta(cold_start) if cold_start else None
    except ValueError as exc:
        raise TwinkitError(f"bad --horizons or --cold-start: {exc}") from None
    frame = read_signals(data, "eval forecast")
    with bar("evaluating forecasters") as progress:
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
            every_min=every,
            progress=progress,
        )
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2))
    if html_out is not None:
        from twinkit.report.evaluation import forecast_html, write_evaluation

        note = f"{data}: {report['data']['twins']} twins, seed {seed}, {report['seconds']} s"
        write_evaluation(html_out, "twinkit eval forecast", forecast_html(report), note)
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
        engine_for(db),
        patients=patients,
        days=days,
        source=source,
        seed=seed,
        report_path=report,
        console=console,
        progress=progress_bar,
        epochs=epochs,
    )
