"""Commands on a twin's life after its fit: health (live accuracy), drift checks and the
monitor's policy."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from twinkit.cli.common import DbOption, JsonOption, app, console, engine_for, print_json
from twinkit.clone.evolving import ANSWER_DETECTORS, DEFAULT_ANSWER_DETECTOR
from twinkit.core.errors import TwinkitError
from twinkit.engine.live import DEFAULT_WINDOW_H
from twinkit.engine.monitoring import DEFAULT_CHECK_WINDOW_H, POLICIES
from twinkit.monitor.drift import DEFAULT_DETECTOR, DETECTORS

monitor_app = typer.Typer(
    help="Drift checks of twins (state twins' streams, decision twins' agreement with "
    "their donor) and what they do on drift.",
    no_args_is_help=True,
)
app.add_typer(monitor_app, name="monitor")


def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@app.command()
def health(
    twin_id: str,
    window: Annotated[
        float, typer.Option(help="Hours of target time up to the newest scored reading.")
    ] = DEFAULT_WINDOW_H,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """How a twin's served forecasts did once their readings came (live accuracy)."""
    report = engine_for(db).health(twin_id, window)
    if as_json:
        print_json(report)
        return
    if report["kind"] == "decision":
        _decision_health(report)
        return
    serving = report["serving"]
    if serving is None:
        console.print(f"{report['twin']}: no serving model yet (twinkit fit {report['twin']})")
        return
    shadow = report["shadow_version"]
    console.print(
        f"{report['twin']}: {report['target']}, serving v{serving['version']} "
        f"({serving['model']})"
        + (f", v{shadow} in shadow" if shadow is not None else ", no earlier version to shadow")
    )
    logged = report["logged"]
    console.print(
        f"forecasts logged: {logged['served']} served ({logged['served_scored']} scored), "
        f"{logged['shadow']} in shadow ({logged['shadow_scored']} scored)"
    )
    if not report["live"]:
        console.print("no served forecast has been scored yet: readings for them must arrive")
        return
    window_ = report["window"]
    table = Table(
        "version",
        "role",
        "horizon",
        "n",
        "live RMSE",
        "holdout RMSE",
        "live MAE",
        "bias",
        "90% coverage",
        title=f"live, {window_['from']} .. {window_['to']}",
    )
    holdout = serving["holdout"]
    for s in report["live"]:
        promoted = (
            holdout.get(f"rmse_{s['horizon']}") if s["version"] == serving["version"] else None
        )
        table.add_row(
            f"v{s['version']}",
            s["role"],
            f"+{s['horizon']} min",
            str(s["n"]),
            _f(s["rmse"]),
            _f(promoted),
            _f(s["mae"]),
            _f(s["bias"]),
            _f(s["coverage90"]),
        )
    console.print(table)
    band = serving.get("live_band") or {}
    if band:
        scales = ", ".join(f"+{h} min x{v:.2f}" for h, v in band.items())
        console.print(f"live band (the model's 90% band rescaled by the monitor): {scales}")
    for rolled in report.get("rollbacks") or []:
        console.print(
            f"[yellow]rolled back v{rolled['from_version']} -> v{rolled['to_version']} "
            f"({rolled['recorded_at']}): {rolled['reason']}[/yellow]"
        )
    alerts = report.get("alerts") or []
    if alerts:
        console.print(f"[yellow]{len(alerts)} drift alert(s) on v{serving['version']}:[/yellow]")
        for alert in alerts[-5:]:
            stat = alert["statistic"]
            console.print(
                f"  {alert['time']}: {alert['stream']} ({alert['detector']}), mean "
                f"{_f(stat['mean_before'])} -> {_f(stat['mean_after'])}"
            )


def _decision_health(report: dict[str, Any]) -> None:
    serving = report["serving"]
    if serving is None:
        console.print(f"{report['twin']}: no clone version yet (twinkit fit {report['twin']})")
        return
    console.print(
        f"{report['twin']}: serving v{serving['version']} ({serving['model']}), held-out "
        f"agreement {_f(serving['holdout'].get('agreement'), 3)}"
    )
    recent = report["recent"]
    console.print(
        f"answers checked against the clone serving when they came: {report['checked']} of "
        f"{report['answers']}, agreement {_f(report['agreement'], 3)}; the newest "
        f"{recent['answers']}: {_f(recent['agreement'], 3)}"
    )
    for row in report["per_version"]:
        console.print(f"  v{row['version']}: {row['n']} answers, agreement {row['agreement']:.3f}")
    rechecks = report["rechecks"]
    console.print(
        f"rechecks (past questions asked again): {rechecks['answered']}, answered as before "
        f"{rechecks['as_before']}; the newest {rechecks['recent']}: "
        f"{rechecks['recent_as_before']} as before"
    )
    window = report["window"]
    if window["start"] is not None:
        start = window["start"]
        console.print(
            f"the clone learns from the {window['answers']} answers since the donor's last "
            f"change (batch {start['batch_id']}, item {start['item_id']})"
        )
    for alert in report["alerts"][-5:]:
        stat = alert["statistic"]
        console.print(
            f"[yellow]  {alert['time']}: the donor changed ({alert['detector']}): rechecks "
            f"answered as before {_f(stat['mean_before'])} -> {_f(stat['mean_after'])}, "
            f"over {stat['points']} answers[/yellow]"
        )


@monitor_app.command("run")
def monitor_run(
    twin_ids: Annotated[
        list[str] | None, typer.Argument(help="Twins to check (default: every twin).")
    ] = None,
    window: Annotated[
        float, typer.Option(help="Hours of data before the newest reading.")
    ] = DEFAULT_CHECK_WINDOW_H,
    detector: Annotated[
        str | None,
        typer.Option(help=f"One of {', '.join(sorted(DETECTORS))} (default: the twin's)."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the detectors and of a refit.")] = 0,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Check twins once: roll back a serving version that is worse in live use than the
    one before it (a paired test on the same forecasts), record new drift detections in
    the ledger, and refit the twins whose policy says so. A twin that cannot be checked is
    reported; the rest go on."""
    engine = engine_for(db)
    names = twin_ids or [t.ref for t in engine.list_twins()]
    results, failures = [], {}
    for name in names:
        try:
            results.append(engine.monitor_check(name, window, detector, seed))
        except TwinkitError as exc:
            failures[name] = str(exc)
    if as_json:
        print_json({"checked": results, "failed": failures})
        return
    for result in results:
        new = result["new"]
        line = f"{result['twin']}: {len(result['detections'])} detection(s) in the window"
        line += f", {len(new)} new" if new else ", none new"
        if result["refit"] is not None:
            line += f"; refit: {result['refit']}"
        judged = result.get("rollback") or {}
        if judged.get("rolled_back_to") is not None:
            line += f"; rolled back to v{judged['rolled_back_to']}: {judged['verdict']['reason']}"
        band = result.get("band") or {}
        if band.get("stored"):
            scales = band["band"]["scales"]
            line += "; live band " + ", ".join(f"+{h} min x{v:.2f}" for h, v in scales.items())
        console.print(line)
        for alert in new:
            console.print(f"  {alert['time']}: {alert['stream']} ({alert['detector']})")
    for name, why in failures.items():
        console.print(f"[red]{name}: not checked: {why}[/red]")


@monitor_app.command("policy")
def monitor_policy(
    twin_id: str,
    policy: Annotated[
        str | None, typer.Argument(help=f"{' or '.join(POLICIES)} (omit to show it).")
    ] = None,
    detector: Annotated[
        str | None,
        typer.Option(
            help=f"State twins: one of {', '.join(sorted(DETECTORS))} (default "
            f"{DEFAULT_DETECTOR}); decision twins: one of {', '.join(sorted(ANSWER_DETECTORS))} "
            f"(default {DEFAULT_ANSWER_DETECTOR})."
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Show or set what the monitor does on drift: alert (default) or refit."""
    engine = engine_for(db)
    chosen = (
        engine.monitor_policy(twin_id)
        if policy is None
        else engine.set_monitor_policy(twin_id, policy, detector)
    )
    if as_json:
        print_json(chosen)
        return
    console.print(f"{twin_id}: on drift, {chosen['policy']} (detector {chosen['detector']})")
