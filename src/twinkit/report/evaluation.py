"""HTML for ``twinkit eval forecast --html`` and ``eval clone --html``: the same style as
``twinkit report`` (one self-contained file, no scripts, readable printed)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from twinkit.report.owner import page, table


def _f(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def forecast_html(report: dict[str, Any]) -> str:
    """The pooled scores per model and horizon, the choice per twin, and the data."""
    models = report.get("models", {})
    horizons = sorted({h for m in models.values() for h in m.get("pooled", {})}, key=int)
    rows = []
    for name, result in models.items():
        pooled = result.get("pooled", {})
        cells = [name]
        for h in horizons:
            row = pooled.get(h, {})
            cells.append(f"{_f(row.get('rmse'))} / {_f(row.get('mae'))}")
            cells.append(f"{_f(row.get('coverage90'), 3)} / {_f(row.get('width90'), 1)}")
        cells += [len(result.get("per_twin", {})), len(result.get("failed", {}))]
        rows.append(cells)
    head = ["model"]
    for h in horizons:
        head += [f"RMSE / MAE +{h} min", f"90% coverage / width +{h} min"]
    parts = [table([*head, "twins", "failed"], rows)]
    chosen = models.get("twinkit", {}).get("chosen") or {}
    if chosen:
        counts: dict[str, int] = {}
        for model in chosen.values():
            counts[model] = counts.get(model, 0) + 1
        parts.append("<h3>twinkit's choice per twin</h3>")
        parts.append(table(["model", "twins"], sorted(counts.items(), key=lambda kv: -kv[1])))
    data = report.get("data", {})
    facts = [[k.replace("_", " "), v] for k, v in data.items() if not isinstance(v, dict | list)]
    parts.append("<h3>Data and protocol</h3>" + table(["", ""], facts))
    return "".join(parts)


def clone_html(report: dict[str, Any]) -> str:
    """Agreement with each donor per strategy and budget, and the baselines."""
    strategies = report.get("strategies", {})
    budgets = sorted({b for s in strategies.values() for b in s}, key=int)
    rows = [
        [name, *(_f(curve.get(b, {}).get("agreement_mean"), 3) for b in budgets)]
        for name, curve in strategies.items()
    ]
    parts = [
        "<h3>Agreement with the donor after N questions (mean over people)</h3>",
        table(["strategy", *(f"{b} questions" for b in budgets)], rows),
    ]
    baselines = report.get("baselines", {})
    if baselines:
        parts.append("<h3>Baselines</h3>")
        parts.append(
            table(
                ["baseline", "agreement (mean)"],
                [[k, _f(v.get("agreement_mean"), 3)] for k, v in baselines.items()],
            )
        )
    data = report.get("data", {})
    facts = [[k.replace("_", " "), v] for k, v in data.items() if not isinstance(v, dict | list)]
    parts.append("<h3>Data and protocol</h3>" + table(["", ""], facts))
    return "".join(parts)


def write_evaluation(path: Path, title: str, body: str, note: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    shown = f"<p class='note'>{html.escape(note)}</p>" if note else ""
    path.write_text(page(title, [shown, body]), encoding="utf-8")
    return path
