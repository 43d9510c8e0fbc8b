"""`twinkit demo`: a cohort of glucose twins from ingest to forecast report, end to end.

The last :data:`LIVE_HOURS` of each twin's data are held back: after the fits, the twins
live through them an hour at a time (a forecast served from the data so far, then that
hour's readings), so the report shows each twin's live accuracy next to its holdout
figures."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from twinkit.core.errors import ForecastInputError, NotFoundError, TwinkitError
from twinkit.engine import TwinEngine
from twinkit.engine.population import DEFAULT_POPULATION_MODEL
from twinkit.models.base import Forecaster, target_grid
from twinkit.models.evaluate import holdout_split, rolling_scores
from twinkit.report.html import TwinSection, write_report

DEMO_CHANNELS = ("glucose:mg/dL:10:1000", "carbs:g:0:1000", "insulin:U:0:200")
FAN_HORIZONS = tuple(range(5, 125, 5))
#: hours at the end of the data that arrive after the fits, an hour at a time
LIVE_HOURS = 6
#: the horizons of the forecasts served in those hours (logged and scored)
LIVE_HORIZONS = (30, 60)


def cohort_frame(source: str, patients: int, days: float, seed: int, cache: Path) -> pd.DataFrame:
    """The demo's long-format signals from simglucose (cached) or the synthetic generator."""
    if source == "synthetic":
        from twinkit.data.datasets.synthetic import synthetic_cohort

        return synthetic_cohort(n_twins=patients, days=days, seed=seed)
    if source == "simglucose":
        from twinkit.data.datasets.simglucose_cohort import simulate_cohort

        return simulate_cohort(patients=patients, days=days, seed=seed, cache_dir=cache)
    raise TwinkitError(f"unknown demo source {source!r}: use simglucose or synthetic")


def run_demo(
    engine: TwinEngine,
    patients: int = 4,
    days: float = 6.0,
    source: str = "simglucose",
    seed: int = 0,
    report_path: Path = Path(".twinkit/report.html"),
    console: Console | None = None,
    progress: Callable[[], Progress] | None = None,
    epochs: int = 30,
) -> Path:
    console = console or Console()
    started = time.perf_counter()
    cache = report_path.parent / "cache"
    console.print(f"[bold]twinkit demo[/bold]: {patients} {source} twins, {days:g} days each")
    with console.status(f"generating the {source} cohort (cached after the first run)"):
        frame = cohort_frame(source, patients, days, seed, cache)
    name = f"demo_{source}_{patients}x{days:g}d_seed{seed}"
    csv_path = cache / f"{name}.csv"
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    out = frame.assign(time=frame["time"].map(lambda t: t.isoformat()))
    # the last hours arrive later, an hour at a time (see the module)
    hour = (frame["time"] - frame["time"].max()).dt.total_seconds() // 3600 + LIVE_HOURS
    columns = ["twin_id", "time", "channel", "value"]
    out[hour < 0][columns].to_csv(csv_path, index=False)
    later = []
    for h in range(LIVE_HOURS):
        path = cache / f"{name}_live{h + 1}.csv"
        out[hour == h][columns].to_csv(path, index=False)
        later.append(path)

    twin_ids = sorted(frame["twin_id"].unique())
    channels = DEMO_CHANNELS if source == "simglucose" else DEMO_CHANNELS[:2]
    for twin_id in twin_ids:
        try:
            engine.get_twin(twin_id)
        except NotFoundError:
            engine.create_twin(twin_id, "state", owner="demo", channels=channels)
    result = engine.ingest(csv_path)
    if result.already_ingested:
        console.print(f"ingest: {csv_path.name} was already ingested (batch {result.batch_id})")
    else:
        console.print(
            f"ingest: {result.n_rows} rows -> {result.n_stored} stored, "
            f"{result.n_quarantined} quarantined"
        )

    with console.status("training the population prior (a GRU on every twin's training part)"):
        population = engine.fit_population(
            DEFAULT_POPULATION_MODEL, twin_ids, seed=seed, params={"epochs": epochs}
        )
    console.print(
        f"population v{population.version}: {population.model} from "
        f"{len(population.twins)} twins in {population.seconds:.1f} s"
    )
    prior = engine.population(population.version)
    sections: list[TwinSection] = []
    table = Table(
        "twin",
        "chosen",
        "RMSE30",
        "RMSE60",
        "live30",
        "persist.",
        "popul.",
        "cov90",
        "+60min [90%]",
    )
    bar = progress() if progress else None
    task = bar.add_task("fitting twins", total=len(twin_ids)) if bar else None
    if bar:
        bar.start()
    fits = {}
    for twin_id in twin_ids:
        baseline = engine.fit(twin_id, model="persistence", seed=seed)
        fitted = engine.fit(twin_id, seed=seed)  # auto: the best candidate for this twin
        fits[twin_id] = (baseline, fitted)
        if bar and task is not None:
            bar.update(task, advance=1)
    if bar:
        bar.stop()
    with console.status(f"living through the last {LIVE_HOURS} hours, an hour at a time"):
        for path in later:
            for twin_id in twin_ids:
                engine.predict(twin_id, LIVE_HORIZONS)  # served, so logged
            engine.ingest(path)  # the readings it forecast: scored as they are stored
    for twin_id in twin_ids:
        baseline, fitted = fits[twin_id]
        history = engine.signals(twin_id)
        population_scores = _holdout_scores(prior[1] if prior else None, history)
        live = engine.predict(twin_id, FAN_HORIZONS)
        origin = history.index[-1] - pd.Timedelta(hours=2)
        backtest = engine.predict(twin_id, FAN_HORIZONS, as_of=origin)
        recent = target_grid(history, live.target).loc[origin - pd.Timedelta(hours=10) :]
        health = engine.health(twin_id, window_h=24.0)
        served = {
            r["horizon"]: r
            for r in health["live"]
            if r["role"] == "served" and r["version"] == live.version
        }
        m, b = fitted.metrics, baseline.metrics
        lo, hi = live.interval(0.9)
        i60 = live.horizons.index(60)
        chosen = (fitted.selection or {}).get("chosen", fitted.model)
        table.add_row(
            twin_id,
            f"v{live.version} {chosen}",
            f"{m['rmse_30']:.1f}",
            f"{m['rmse_60']:.1f}",
            f"{served[30]['rmse']:.1f}" if 30 in served else "-",
            f"{b['rmse_30']:.1f}/{b['rmse_60']:.1f}",
            (
                f"{population_scores['rmse_30']:.1f}/{population_scores['rmse_60']:.1f}"
                if population_scores
                else "-"
            ),
            f"{(m['coverage90_30'] + m['coverage90_60']) / 2:.0%}",
            f"{live.quantiles[0.5][i60]:.0f} [{lo[i60]:.0f}-{hi[i60]:.0f}]",
        )
        metrics = {f"twinkit ({chosen})": fitted.metrics, "persistence": baseline.metrics}
        if population_scores:
            metrics["population"] = population_scores
        sections.append(
            TwinSection(
                twin_id=twin_id,
                target=live.target,
                history=recent,
                backtest=backtest,
                live=live,
                metrics=metrics,
                notes=[fitted.reason, _selection_note(fitted.selection)],
                live_accuracy=health["live"],
                holdout=(health["serving"] or {}).get("holdout") or {},
            )
        )
    console.print(table)
    report = write_report(
        report_path,
        "twinkit demo: personal glucose forecasts",
        sections,
        summary=(
            f"{len(twin_ids)} {source} twins, {days:g} days each, seed {seed}. Blue: a forecast "
            "made 2 h before the last reading, over what happened; red: the forecast from the "
            "latest reading. Metrics: rolling-origin forecasts on each twin's last 20% of the "
            f"data it was fitted on, which neither the personal models nor the population prior "
            f"saw. Live: the last {LIVE_HOURS} hours of data arrived after the fits, an hour at "
            "a time; the forecast served before each hour was scored when its readings came, "
            "with the version before in shadow."
        ),
    )
    verify = engine.verify()
    console.print(
        f"ledger verify: {'ok' if verify.ok else 'FAILED'} ({verify.entries} entries); "
        f"report: {report}; {time.perf_counter() - started:.1f} s"
    )
    return report


def _holdout_scores(model: Forecaster | None, history: pd.DataFrame) -> dict[str, float] | None:
    """The population prior's scores on a twin's holdout (data it never saw)."""
    if model is None:
        return None
    split = holdout_split(history, model.target, 0.2)
    try:
        return rolling_scores(model, history, split, [30, 60])
    except ForecastInputError:
        return None


def _selection_note(selection: dict[str, Any] | None) -> str:
    if not selection:
        return ""
    scores = ", ".join(f"{k} {v:.2f}" for k, v in selection["candidates"].items())
    return f"chosen: {selection['chosen']} (validation RMSE: {scores})"
