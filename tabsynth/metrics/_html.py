"""Single-file HTML rendering of a report dict (matplotlib, from the ``report`` extra).

Figures are drawn with ``matplotlib.figure.Figure`` and the Agg canvas directly, so pyplot and the
global backend are never touched.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import numpy as np

REAL, SYNTHETIC, OTHER = "#1f77b4", "#ff7f0e", "#7f7f7f"


def _figure(width: float, height: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("Report.to_html needs matplotlib: pip install tabsynth[report]") from exc
    fig = Figure(figsize=(width, height), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _esc(value)


def _table(rows: list[dict], columns: list[str]) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _marginal(plot: dict) -> str:
    fig = _figure(4.2, 3.0)
    ax = fig.add_subplot()
    title = f"{plot['column']} ({plot['kind']})"
    if plot["type"] == "numeric":
        edges = np.asarray(plot["edges"], dtype=float)
        if plot["kind"] == "datetime":
            edges = edges / 86_400.0  # matplotlib date numbers: days since 1970-01-01
            ax.xaxis_date()
        for name, color in (("real", REAL), ("synthetic", SYNTHETIC)):
            ax.stairs(plot[name], edges, label=name, color=color, fill=name == "real", alpha=0.55)
        nulls = plot["missing"]
        if nulls["real"] or nulls["synthetic"]:
            title += f"\nmissing: real {nulls['real']:.1%}, synthetic {nulls['synthetic']:.1%}"
        ax.set_ylabel("share of non-missing rows")
        if plot["kind"] == "datetime":
            fig.autofmt_xdate()
    else:
        labels = plot["labels"]
        y = np.arange(len(labels))
        ax.barh(y - 0.2, plot["real"], height=0.4, color=REAL, label="real")
        ax.barh(y + 0.2, plot["synthetic"], height=0.4, color=SYNTHETIC, label="synthetic")
        ax.set_yticks(y, [str(v)[:24] for v in labels], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("share of rows")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


def _heatmap(plot: dict) -> str:
    cols = plot["columns"]
    n = len(cols)
    m = np.array([[np.nan if v is None else v for v in row] for row in plot["difference"]])
    size = max(4.0, 0.32 * n + 2.0)
    fig = _figure(size + 1.0, size)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(m), cmap="Reds", vmin=0.0, vmax=max(0.1, np.nanmax(m)))
    ax.set_xticks(range(n), [str(c)[:18] for c in cols], rotation=90, fontsize=7)
    ax.set_yticks(range(n), [str(c)[:18] for c in cols], fontsize=7)
    ax.set_title(
        "Pair-trend difference (1 - pair score)\n"
        "|Δ Pearson r|/2 for numeric pairs, contingency TVD otherwise",
        fontsize=9,
    )
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return _png(fig)


def _utility(util: dict) -> str:
    models = util.get("models", {})
    items = [(m, k, v) for m, scores in models.items() for k, v in scores.items()]
    fig = _figure(max(4.5, 1.1 * len(items) + 1.5), 3.2)
    ax = fig.add_subplot()
    x = np.arange(len(items))
    real = [np.nan if v["real"] is None else v["real"] for _, _, v in items]
    syn = [np.nan if v["synthetic"] is None else v["synthetic"] for _, _, v in items]
    ax.bar(x - 0.2, real, width=0.4, color=REAL, label="train real")
    ax.bar(x + 0.2, syn, width=0.4, color=SYNTHETIC, label="train synthetic")
    short = {"hist_gradient_boosting": "HGB", "linear": "linear"}
    ax.set_xticks(x, [f"{short.get(m, m)}\n{k}" for m, k, _ in items], fontsize=7)
    ax.set_title(
        f"ML utility on the holdout (target {util.get('target')}, {util.get('task')})", fontsize=9
    )
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def _distances(hist: dict, title: str) -> str:
    fig = _figure(4.8, 3.0)
    ax = fig.add_subplot()
    edges = np.asarray(hist["edges"], dtype=float)
    colors = iter((SYNTHETIC, REAL, OTHER))
    for name, values in hist.items():
        if name != "edges":
            ax.stairs(values, edges, label=name, color=next(colors), linewidth=1.5)
    ax.set_xlabel("distance to closest record")
    ax.set_ylabel("share of rows")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:1em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0} .grid{display:flex;flex-wrap:wrap;gap:8px}
.warn{background:#fff4e0;border-left:4px solid #f0a020;padding:4px 10px;margin:3px 0}
"""


def render(data: dict) -> str:
    """The whole page as a string."""
    _figure(1, 1)  # fail early with the install hint when matplotlib is missing
    plots = data.get("plots", {})
    metrics = data.get("metrics", {})
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>tabsynth evaluation report</title><style>{_CSS}</style></head><body>",
        "<h1>tabsynth evaluation report</h1>",
        "<p>" + ", ".join(f"{_esc(k)}: {_fmt(v)} rows" for k, v in data["n_rows"].items()),
        f" &middot; created {_esc(data.get('created', ''))}"
        f" &middot; tabsynth {_esc(data.get('tabsynth_version', ''))}</p>",
    ]
    for w in data.get("warnings", []):
        parts.append(f"<div class='warn'>{_esc(w)}</div>")
    parts.append("<h2>Summary</h2>")
    parts.append(_table(data["summary"], ["metric", "value", "direction", "meaning"]))
    parts.append(
        "<p>Privacy figures are descriptive diagnostics of copying and overfitting; "
        "they are not evidence of differential privacy.</p>"
    )
    details = data.get("details", {})
    if details.get("columns"):
        parts.append("<h2>Columns</h2>")
        cols = ["column", "kind", "metric", "shape", "missing_similarity", "coverage", "adherence"]
        parts.append(_table(details["columns"], cols + ["note"]))
    if plots.get("marginals"):
        n_total = plots.get("n_marginal_columns", len(plots["marginals"]))
        parts.append(
            f"<h2>Marginals (real vs synthetic, {len(plots['marginals'])} of {n_total})</h2>"
        )
        parts.append("<div class='grid'>")
        parts.extend(_marginal(p) for p in plots["marginals"])
        parts.append("</div>")
    if plots.get("pairs") and len(plots["pairs"]["columns"]) >= 2:
        parts.append("<h2>Pair trends</h2>")
        parts.append(_heatmap(plots["pairs"]))
    if metrics.get("utility", {}).get("models"):
        parts.append("<h2>ML utility</h2>")
        parts.append(_utility(metrics["utility"]))
    if plots.get("privacy"):
        parts.append("<h2>Privacy diagnostics</h2><div class='grid'>")
        titles = {
            "dcr": "Distance to the closest training row",
            "membership": "Distance to the closest synthetic row (membership attack)",
        }
        for key, hist in plots["privacy"].items():
            parts.append(_distances(hist, titles.get(key, key)))
        parts.append("</div>")
    if data.get("skipped"):
        parts.append("<h2>Not computed</h2><ul>")
        parts.extend(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in data["skipped"].items())
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
