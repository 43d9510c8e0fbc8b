"""``twinkit report``: one self-contained HTML file on an owner's own twins, readable on a
screen and on paper.

Per twin: what it is (kind, channels and units), its latest forecast as a fan chart on the
clock of the twin's zone with the target range and the hypoglycaemia line, the recent data
(last reading and its age, time in range), the live band the monitor serves, accuracy on
the holdout and live, the quarantine by reason, the model versions, and the ledger in words.
A twin without a model says so. No script, no font or style from elsewhere.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from twinkit.core.errors import NotFoundError, TwinkitError
from twinkit.core.twin import Twin, TwinKind
from twinkit.engine import TwinEngine
from twinkit.engine.jobs import JobStatus
from twinkit.report.fanchart import FAN_HORIZONS, STALE_AFTER, FanChart, age_in_words, twin_chart
from twinkit.report.html import robustness_html
from twinkit.report.words import in_words

#: the history the report's chart shows before the forecast
RECENT = pd.Timedelta(hours=6)
#: the period time in range is counted over
TIME_IN_RANGE = pd.Timedelta(days=14)
#: ledger entries per twin, newest first
ENTRIES = 15
#: the job kind of a decision twin's robustness report (the service's robustness route)
ROBUSTNESS = "robustness"

_STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1d2733; max-width: 960px; margin: 24px auto; }
h1 { font-size: 22px; }
h2 { font-size: 18px; border-bottom: 1px solid #d9dee4; padding-bottom: 4px; }
h3 { font-size: 15px; margin-bottom: 4px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid #d9dee4; padding: 3px 8px; text-align: left; vertical-align: top; }
.note { color: #5d6b7a; } .warning { background: #fff4d6; color: #8a5a00; padding: 4px 8px; }
svg { width: 100%; height: auto; } svg text { font: 11px system-ui, sans-serif; fill: #5d6b7a; }
.grid line { stroke: #eef1f4; } .band { fill: #bcd3f5; fill-opacity: .7; }
.median { fill: none; stroke: #2563eb; stroke-width: 2; }
.actual { fill: none; stroke: #1d2733; stroke-width: 1.5; }
.now { stroke: #9aa5b1; stroke-dasharray: 4 3; } .target { fill: #dcf2e3; }
.hypo { stroke: #b42318; stroke-width: 1.5; stroke-dasharray: 6 3; }
section.twin { page-break-inside: avoid; break-inside: avoid-page; margin-bottom: 28px; }
@media print { body { margin: 0; max-width: none; } section.twin { page-break-after: always; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table of escaped cells (no table for no rows)."""
    if not rows:
        return ""
    top = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def chart_svg(c: FanChart, label: str) -> str:
    """The fan chart's geometry as an SVG element (the page draws the same from a template)."""
    left, top, right, bottom = c.plot
    parts = [f'<svg viewBox="0 0 {c.width} {c.height}" role="img" aria-label="{_e(label)}">']
    if c.target:
        parts.append(
            f'<rect class="target" x="{left}" y="{c.target[0]:.1f}" width="{right - left}" '
            f'height="{c.target[1] - c.target[0]:.1f}"/>'
        )
    parts.append('<g class="grid">')
    for t in c.y_ticks:
        parts.append(f'<line x1="{left}" x2="{right}" y1="{t.at:.1f}" y2="{t.at:.1f}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{t.at + 4:.1f}" text-anchor="end">{_e(t.label)}</text>'
        )
    for t in c.x_ticks:
        parts.append(
            f'<text x="{t.at:.1f}" y="{bottom + 16}" text-anchor="middle">{_e(t.label)}</text>'
        )
    parts.append("</g>")
    if c.hypo_y is not None:
        parts.append(
            f'<line class="hypo" x1="{left}" x2="{right}" y1="{c.hypo_y:.1f}" y2="{c.hypo_y:.1f}"/>'
        )
    parts.append(
        f'<line class="now" x1="{c.now_x:.1f}" x2="{c.now_x:.1f}" y1="{top}" y2="{bottom}"/>'
    )
    for name, path in (("band", c.band), ("actual", c.actual), ("median", c.median)):
        if path:
            parts.append(f'<path class="{name}" d="{path}"/>')
    middle = (top + bottom) / 2
    parts.append(
        f'<text transform="rotate(-90)" x="{-middle:.1f}" y="12" text-anchor="middle">'
        f"{_e(c.y_label)}</text>"
    )
    parts.append(
        f'<text x="{(left + right) / 2:.1f}" y="{c.height - 4}" text-anchor="middle">'
        f"{_e(c.x_label)}</text></svg>"
    )
    return "".join(parts)


def _state(engine: TwinEngine, twin: Twin, now: pd.Timestamp) -> list[str]:
    out: list[str] = []
    try:
        served = engine.forecast(twin.ref, FAN_HORIZONS)
    except TwinkitError:
        try:
            served = engine.forecast(twin.ref, (30, 60))
        except NotFoundError:
            served = None
            out.append(f"<p class='note'>No model yet: <code>twinkit fit {_e(twin.id)}</code>.</p>")
        except TwinkitError as exc:
            served = None
            out.append(f"<p class='note'>No forecast: {_e(exc)}</p>")
    zone = twin.time_zone
    target = served.forecast.target if served is not None else ""
    if served is not None:
        f = served.forecast
        unit = twin.unit_of(f.target)
        band = twin.target_range(f.target)
        recent = engine.signals_between(twin.ref, f.origin - RECENT, f.origin, [f.target])
        try:
            chart = twin_chart(twin, f, recent)
            out.append(chart_svg(chart, f"{f.target}: readings, forecast median, 90% band"))
        except ValueError as exc:
            out.append(f"<p class='note'>No chart: {_e(exc)}</p>")
        origin = f.origin.tz_convert(zone).strftime("%Y-%m-%d %H:%M")
        out.append(
            f"<p class='note'>{_e(f.model)} v{_e(f.version)} from the last reading, "
            f"{_e(origin)} {_e(zone)}; median and 90% band"
            + (" (degraded: " + _e(served.reason) + ")" if served.degraded else "")
            + "</p>"
        )
        age = now - f.origin
        if age > STALE_AFTER:
            out.append(f"<p class='warning'>The last reading is {_e(age_in_words(age))} old.</p>")
        out.append(_recent(engine, twin, f.target, unit, band, f.origin))
    out.append(_accuracy(engine, twin, target))
    return out


def _recent(
    engine: TwinEngine,
    twin: Twin,
    target: str,
    unit: str,
    band: tuple[float, float] | None,
    last: pd.Timestamp,
) -> str:
    rows = engine.signals_between(twin.ref, last - TIME_IN_RANGE, last, [target])
    values = rows["value"].to_numpy(dtype=float)
    if not len(values):
        return ""
    facts = [
        ["readings in the last 14 days", f"{len(values):,}"],
        [f"mean {target}", f"{np.mean(values):.1f} {unit}"],
    ]
    if band is not None:
        low, high = band
        facts.append(
            [
                f"time in range {low:g}-{high:g} {unit}",
                f"{np.mean((values >= low) & (values <= high)):.0%}",
            ]
        )
        facts.append([f"time below {low:g} {unit}", f"{np.mean(values < low):.1%}"])
        facts.append([f"time above {high:g} {unit}", f"{np.mean(values > high):.0%}"])
    return "<h3>Recent data</h3>" + table(["", ""], facts)


def _accuracy(engine: TwinEngine, twin: Twin, target: str) -> str:
    try:
        report = engine.health(twin.ref)
    except TwinkitError:
        return ""
    parts = []
    serving = report.get("serving") or {}
    holdout = serving.get("holdout") or {}
    if holdout:
        rows = [
            [k.replace("_", " "), f"{v:.3f}" if isinstance(v, float) else v]
            for k, v in holdout.items()
        ]
        parts.append(
            f"<h3>Holdout accuracy (v{_e(serving.get('version'))})</h3>"
            + table(["figure", "value"], rows)
        )
    live = report.get("live") or []
    if live:
        rows = [
            [f"v{r['version']}", r["role"], f"+{r['horizon']} min", r["n"], f"{r['rmse']:.2f}",
             "-" if r.get("coverage90") is None else f"{r['coverage90']:.0%}"]
            for r in live
        ]  # fmt: skip
        parts.append(
            "<h3>Live accuracy: served forecasts, scored as their readings came</h3>"
            + table(["version", "role", "horizon", "forecasts", "RMSE", "90% coverage"], rows)
        )
    band = serving.get("live_band") or {}
    if band:
        shown = ", ".join(f"x{float(v):.2f} at +{h} min" for h, v in band.items())
        parts.append(f"<p class='note'>Live band: the 90% band is served {_e(shown)}.</p>")
    for alert in (report.get("alerts") or [])[-3:]:
        parts.append(
            f"<p class='warning'>Drift in {_e(alert.get('stream'))} at {_e(alert.get('time'))}</p>"
        )
    return "".join(parts)


def _robustness(engine: TwinEngine, twin: Twin) -> str:
    """The newest finished robustness report of the twin's clone (the service's
    ``POST .../robustness`` job), where one exists."""
    job = engine.jobs.latest(twin.key, ROBUSTNESS, status=JobStatus.DONE, twin_uid=twin.uid)
    if job is None or not job.result:
        return ""
    when = str(job.finished_at or "")[:16].replace("T", " ")
    note = f"<p class='note'>From the robustness job of {_e(when)} UTC.</p>"
    return robustness_html(job.result) + note


def _section(engine: TwinEngine, twin: Twin, now: pd.Timestamp) -> str:
    summary = engine.twin_summary(twin.ref)
    channels = (
        ", ".join(f"{c.name}" + (f" ({c.unit})" if c.unit else "") for c in twin.channels) or "any"
    )
    parts = [
        f"<section class='twin' id='{_e(twin.id)}'><h2>{_e(twin.id)} "
        f"<small>({_e(twin.kind.value)} twin of {_e(twin.owner)})</small></h2>",
        "<p class='note'>"
        + (f"Channels: {_e(channels)}. " if twin.kind is TwinKind.STATE else "")
        + f"{summary.get('observations', 0):,} readings, {summary.get('decisions', 0):,} "
        f"decisions, {summary.get('quarantined', 0):,} in quarantine; "
        f"times in {_e(twin.time_zone)}.</p>",
    ]
    if twin.kind is TwinKind.STATE:
        parts.extend(_state(engine, twin, now))
    held = engine.quarantine(twin.ref)
    if held:
        reasons = Counter(r["reason"].split(":")[0] for r in held)
        parts.append(
            "<h3>Quarantine</h3>"
            + table(["reason", "rows"], [[k, v] for k, v in reasons.most_common()])
        )
    versions = sorted(engine.models(twin.ref), key=lambda v: v.version, reverse=True)
    if versions:
        rows = [
            [f"v{v.version}", v.model, v.status, str(v.created_at)[:16].replace("T", " "),
             ", ".join(f"{k} {x:.3g}" for k, x in list(v.metrics.items())[:3]
                       if isinstance(x, int | float))]
            for v in versions[:8]
        ]  # fmt: skip
        parts.append(
            "<h3>Model versions</h3>"
            + table(["version", "model", "status", "created (UTC)", "holdout"], rows)
        )
    elif twin.kind is TwinKind.DECISION:
        parts.append(f"<p class='note'>No clone yet: <code>twinkit fit {_e(twin.id)}</code>.</p>")
    if twin.kind is TwinKind.DECISION:
        parts.append(_robustness(engine, twin))
    entries = list(reversed(engine.history(twin.ref, owner=twin.owner)))[:ENTRIES]
    if entries:
        rows = [
            [str(e.created_at)[:16].replace("T", " "), in_words(e.event, e.payload)]
            for e in entries
        ]
        parts.append(
            "<h3>What happened (the ledger, newest first)</h3>" + table(["when (UTC)", ""], rows)
        )
    parts.append("</section>")
    return "".join(parts)


def write_owner_report(
    engine: TwinEngine,
    path: Path,
    twin_ids: Sequence[str] = (),
    owner: str | None = None,
    now: pd.Timestamp | None = None,
) -> Path:
    """Write the report on ``twin_ids`` (default: every twin of ``owner``, or all)."""
    twins = [engine.get_twin(t) for t in twin_ids] if twin_ids else engine.list_twins(owner)
    if not twins:
        raise TwinkitError("no twins to report on" + (f" for {owner}" if owner else ""))
    moment = now if now is not None else pd.Timestamp.now(tz="UTC")
    title = "twinkit report" + (f": {owner}" if owner else "")
    body = [
        f"<p class='note'>{len(twins)} twin(s), written "
        f"{moment.strftime('%Y-%m-%d %H:%M')} UTC.</p>",
        *(_section(engine, t, moment) for t in twins),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page(title, body), encoding="utf-8")
    return path


def page(title: str, body: Sequence[str]) -> str:
    """A whole self-contained HTML document in the reports' style."""
    return "\n".join(
        [
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            *body,
            "</body></html>",
        ]
    )
