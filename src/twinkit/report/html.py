"""The HTML report: per twin, recent history, a forecast fan over what happened, and metrics."""

from __future__ import annotations

import html
import io
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

from twinkit.core.forecast import Forecast


@dataclass
class TwinSection:
    """What the report shows for one twin."""

    twin_id: str
    target: str
    history: pd.Series  # recent target values (UTC index)
    backtest: Forecast | None = None  # a forecast made earlier, to lay over what happened
    live: Forecast | None = None  # the forecast from the latest data
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  # model -> metrics
    notes: list[str] = field(default_factory=list)


def _fan(ax: Axes, forecast: Forecast, color: str, label: str) -> None:
    lo, hi = forecast.interval(0.9)
    times = forecast.times.tz_convert(None)
    origin = forecast.origin.tz_convert(None)
    ax.fill_between(times, lo, hi, color=color, alpha=0.25, label=f"{label} 90% band")
    ax.plot(times, forecast.quantiles[0.5], color=color, lw=2, label=f"{label} median")
    ax.axvline(origin, color=color, lw=0.8, ls=":")  # type: ignore[arg-type]


def plot_svg(section: TwinSection) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=100)
    ax.plot(
        pd.DatetimeIndex(section.history.index).tz_convert(None),
        section.history.to_numpy(),
        color="#333333",
        lw=1.2,
        label="actual",
    )
    if section.backtest is not None:
        _fan(ax, section.backtest, "#1f77b4", "backtest")
    if section.live is not None:
        _fan(ax, section.live, "#d62728", "forecast")
    ax.set_ylabel(section.target)
    ax.set_title(section.twin_id, loc="left", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=5, loc="upper left")
    fig.autofmt_xdate()
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _metrics_table(metrics: dict[str, dict[str, float]]) -> str:
    if not metrics:
        return ""
    columns = sorted({k for m in metrics.values() for k in m if not k.startswith("n_")})
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = ""
    for model, values in metrics.items():
        cells = "".join(
            f"<td>{values[c]:.3f}</td>" if c in values else "<td>-</td>" for c in columns
        )
        body += f"<tr><th>{html.escape(model)}</th>{cells}</tr>"
    return f"<table><tr><th>model</th>{head}</tr>{body}</table>"


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1000px; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child { text-align: left; }
section { margin-bottom: 2.5em; }
.note { color: #555; font-size: 0.9em; }
"""


def write_report(path: Path, title: str, sections: list[TwinSection], summary: str = "") -> Path:
    """Write a self-contained HTML file (inline SVG plots, no scripts) and return its path."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{html.escape(summary)}</p>" if summary else "",
    ]
    for section in sections:
        parts.append(f"<section id='{html.escape(section.twin_id)}'>")
        parts.append(f"<h2>{html.escape(section.twin_id)}</h2>")
        parts.append(plot_svg(section))
        parts.append(_metrics_table(section.metrics))
        parts.extend(f"<p class='note'>{html.escape(n)}</p>" for n in section.notes)
        parts.append("</section>")
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
