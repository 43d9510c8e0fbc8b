"""The HTML report: per twin, recent history, a forecast fan over what happened, and metrics."""

from __future__ import annotations

import html
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    #: live accuracy (``TwinEngine.health``'s ``live`` rows): served forecasts scored as
    #: their readings came, per version, role (served or shadow) and horizon
    live_accuracy: list[dict[str, Any]] = field(default_factory=list)
    #: the serving version's holdout figures, to compare the live ones with
    holdout: dict[str, float] = field(default_factory=dict)


def _fan(ax: Axes, forecast: Forecast, color: str, label: str) -> None:
    lo, hi = forecast.interval(0.9)
    times = forecast.times.tz_convert(None)
    origin = forecast.origin.tz_convert(None)
    ax.fill_between(times, lo, hi, color=color, alpha=0.25, label=f"{label} 90% band")
    ax.plot(times, forecast.quantiles[0.5], color=color, lw=2, label=f"{label} median")
    ax.axvline(origin, color=color, lw=0.8, ls=":")  # type: ignore[arg-type]


def _svg(fig: Any) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


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
    return _svg(fig)


def _live_table(section: TwinSection) -> str:
    """The live accuracy of the forecasts served, against the holdout error at promotion."""
    rows = [
        [
            f"v{row['version']} {row['role']}",
            f"+{row['horizon']} min",
            str(row["n"]),
            _num(row.get("rmse")),
            _num(section.holdout.get(f"rmse_{row['horizon']}")) if row["role"] == "served" else "-",
            _pct(row.get("coverage90")),
        ]
        for row in section.live_accuracy
    ]
    return _table(
        ["version", "horizon", "scored", "live RMSE", "holdout RMSE", "90% coverage"],
        rows,
        "live: forecasts served before their readings came, scored when they did",
    )


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
caption { text-align: left; font-weight: 600; }
.note { color: #555; font-size: 0.9em; }
"""


# -- robustness (the immunity benchmarks' reports) --------------------------------------

_DEFENCES = {
    "undefended": "undefended",
    "vaccinated_replay": "vaccinated replay",
    "retrained_replay": "retrained replay (control)",
    "vaccinated_adaptive": "vaccinated adaptive",
    "adv_trained_adaptive": "adv. trained adaptive",
}


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.1f}%"


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    return json.dumps(value) if isinstance(value, dict | list) else str(value)


def _get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not a dict."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _table(head: list[str], rows: list[list[str]], caption: str = "") -> str:
    """A table of plain strings (all escaped); each row's first cell is a header."""
    if not rows:
        return ""
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    top = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        f"<tr><th>{html.escape(r[0])}</th>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in r[1:])
        + "</tr>"
        for r in rows
    )
    return f"<table>{cap}<tr>{top}</tr>{body}</table>"


def _kv_table(caption: str, data: Any) -> str:
    if not isinstance(data, dict):
        return ""
    return _table(["key", "value"], [[str(k), _text(v)] for k, v in data.items()], caption)


def _kv_tables(report: dict[str, Any], *keys: str) -> list[str]:
    return [_kv_table(key.replace("_", " "), report.get(key)) for key in keys]


def _accuracy_svg(attacks: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Accuracy vs eps per defence, one axes per attack."""
    n = len(attacks)
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.2), dpi=100, squeeze=False)
    for ax, (name, by_eps) in zip(axes[0], attacks.items(), strict=True):
        budgets = sorted(by_eps, key=float)
        for key, label in _DEFENCES.items():
            points = [(float(e), by_eps[e].get(key)) for e in budgets]
            points = [(e, 100 * float(v)) for e, v in points if v is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label)
        ax.set_title(str(name), loc="left", fontsize=10, parse_math=False)
        ax.set(xlabel="eps", ylabel="accuracy (%)", ylim=(0, 100))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _svg(fig)


#: what the columns of a thresholded clone's per-attack table are called
_CHECKED = {"pgd_bpda": "PGD through the threshold (BPDA)", "square": "Square (no gradient)"}


def _checked_table(checked: Any) -> str:
    """A thresholded adversarially trained clone's accuracy under each attack alone."""
    if not isinstance(checked, dict) or not checked:
        return ""
    columns = list(dict.fromkeys(k for values in checked.values() for k in values))
    rows = [
        [str(eps), *(_pct(values.get(c)) for c in columns)]
        for eps, values in sorted(checked.items(), key=lambda item: float(item[0]))
    ]
    return _table(
        ["eps", *(_CHECKED.get(c, c) for c in columns)],
        rows,
        "adv. trained, thresholded: accuracy under each attack alone",
    )


def _classifier_html(report: dict[str, Any]) -> list[str]:
    attacks = report.get("attacks") or {}
    rows = [
        [str(name), str(eps), *(_pct(values.get(k)) for k in _DEFENCES)]
        for name, by_eps in attacks.items()
        for eps, values in sorted(by_eps.items(), key=lambda item: float(item[0]))
    ]
    clean = {
        "clean accuracy": _pct(report.get("clean_acc")),
        "clean accuracy, vaccinated": _pct(report.get("clean_acc_vaccinated")),
        "clean accuracy, adv. trained": _pct(report.get("clean_acc_adv_trained")),
        "vaccine samples": _text(report.get("vaccine_samples")),
    }
    poisoning = report.get("poisoning") or {}
    columns = list(dict.fromkeys(k for values in poisoning.values() for k in values))
    poison_rows = [
        [str(kind), *(_pct(values.get(c)) for c in columns)] for kind, values in poisoning.items()
    ]
    return [
        *_kv_tables(report, "model", "data", "threat_model"),
        _kv_table("clean accuracy", clean),
        _table(["attack", "eps", *_DEFENCES.values()], rows, "accuracy under attack"),
        _accuracy_svg(attacks) if attacks else "",
        _checked_table(report.get("adv_trained_by_attack")),
        _table(["poisoning", *columns], poison_rows, "poisoning"),
        *(
            _kv_table(f"{kind}: by training seed", values)
            for kind, values in (report.get("poisoning_by_seed") or {}).items()
        ),
    ]


_RMSE_COLUMNS = {
    "clean": ("clean_rmse",),
    "undefended": ("attacks", "error", "undefended"),
    "vaccinated clean": ("clean_rmse_vaccinated",),
    "vaccinated replay": ("attacks", "error", "vaccinated_replay"),
    "vaccinated adaptive": ("attacks", "error", "vaccinated_adaptive"),
}
_FLAGGED = {
    "flagged clean": "flagged_clean",
    "undefended": "flagged_undefended",
    "vaccinated clean": "flagged_vaccinated_clean",
    "vaccinated replay": "flagged_vaccinated_replay",
    "vaccinated adaptive": "flagged_vaccinated_adaptive",
}


def _forecast_html(report: dict[str, Any]) -> list[str]:
    target = str(report.get("target", ""))
    rmse_rows, low_rows = [], []
    for name, m in (report.get("models") or {}).items():
        horizons = report.get("horizons_min") or list(_get(m, "clean_rmse") or {})
        for h in map(str, horizons):
            cells = [_num(_get(m, *path, h)) for path in _RMSE_COLUMNS.values()]
            rmse_rows.append([str(name), h, *cells])
        low = _get(m, "attacks", "hide_low")
        if isinstance(low, dict):
            shares = [_pct(low.get(key)) for key in _FLAGGED.values()]
            low_rows.append(
                [str(name), _num(low.get("threshold")), _text(low.get("lows")), *shares]
            )
    rmse_head = ["model", "horizon (min)", *_RMSE_COLUMNS]
    low_head = ["model", f"threshold ({target})", "lows", *_FLAGGED]
    return [
        *_kv_tables(report, "data", "threat_model", "vaccine"),
        _table(rmse_head, rmse_rows, f"RMSE ({target}) under the error attack"),
        _table(low_head, low_rows, "hide-low attack: share of lows flagged"),
    ]


def robustness_html(report: dict[str, Any]) -> str:
    """An immunity report (``kind`` "classifier", the default, or "forecast") as a section."""
    kind = report.get("kind", "classifier")
    parts = _forecast_html(report) if kind == "forecast" else _classifier_html(report)
    about = f"{kind} immunity benchmark, seed {_text(report.get('seed'))}"
    return "\n".join(
        [
            "<section id='robustness'><h2>Robustness</h2>",
            f"<p class='note'>{html.escape(about)}</p>",
            *(p for p in parts if p),
            "</section>",
        ]
    )


def write_report(
    path: Path,
    title: str,
    sections: list[TwinSection],
    summary: str = "",
    robustness: dict[str, Any] | None = None,
) -> Path:
    """Write a self-contained HTML file (inline SVG plots, no scripts) and return its path.

    ``robustness``: an immunity report, shown after the twins (:func:`robustness_html`).
    """
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
        parts.append(_live_table(section))
        parts.extend(f"<p class='note'>{html.escape(n)}</p>" for n in section.notes)
        parts.append("</section>")
    if robustness is not None:
        parts.append(robustness_html(robustness))
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
