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

from tabsynth._plots import draw_history, history_losses

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


def _png(fig, alt: str = "plot") -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{data}">'


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
        out_r, out_s = (plot.get("outside", {}).get(k, 0.0) for k in ("real", "synthetic"))
        if out_s > out_r + 0.005:  # more synthetic tail than real tail beyond the plotted range
            title += f"\nbeyond the plotted range: real {out_r:.1%}, synthetic {out_s:.1%}"
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


def _matrix(plot: dict, key: str) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in plot[key]], dtype=float)


def _heatmaps(plot: dict) -> str:
    """Real and synthetic association matrices side by side, and their pair-score difference."""
    cols = [str(c)[:16] for c in plot["columns"]]
    n = len(cols)
    panels = [("difference", "Difference: 1 - pair score", "Reds", 0.0, None)]
    if "real" in plot and "synthetic" in plot:
        panels = [
            ("real", "Real: association", "RdBu_r", -1.0, 1.0),
            ("synthetic", "Synthetic: association", "RdBu_r", -1.0, 1.0),
            *panels,
        ]
    side = max(3.6, 0.22 * n + 1.6)
    fig = _figure(side * len(panels) + 0.8 * len(panels), side + 0.5)
    for k, (key, title, cmap, vmin, vmax) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), k + 1)
        m = _matrix(plot, key)
        if vmax is None:
            vmax = max(0.1, float(np.nanmax(m))) if np.isfinite(m).any() else 0.1
        im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=vmin, vmax=vmax)
        ax.set_xticks(range(n), cols, rotation=90, fontsize=6)
        ax.set_yticks(range(n), cols if k == 0 else [""] * n, fontsize=6)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.tight_layout()
    return _png(fig, "pair-trend heat maps: real and synthetic associations and their difference")


def _training_curves(model: dict) -> str | None:
    """One small panel per logged loss of the model's training history."""
    history = model.get("history") or {}
    losses = history_losses(history)
    if not history.get("epoch") or not losses:
        return None
    fig = _figure(3.4 * len(losses), 2.8)
    draw_history(fig, history, f"{model.get('name', 'model')} training curves", SYNTHETIC)
    return _png(fig, "training curves")


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
        if name not in ("edges", "beyond"):
            ax.stairs(values, edges, label=name, color=next(colors), linewidth=1.5)
    beyond = hist.get("beyond", {})
    if any(v > 0 for v in beyond.values()):
        shares = ", ".join(f"{k} {v:.1%}" for k, v in beyond.items())
        title += f"\nbeyond {edges[-1]:.3g}: {shares}"
    ax.set_xlabel("distance to closest record")
    ax.set_ylabel("share of rows")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _png(fig)


_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em 2em;color:#222;max-width:1400px}
h1{margin:0 0 .2em 0;font-size:1.6em} .meta{color:#555;margin:0 0 .8em 0;font-size:14px}
table{border-collapse:collapse;margin:.6em 0 1.2em 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0} .grid{display:flex;flex-wrap:wrap;gap:8px} img{max-width:100%}
.warn{background:#fff4e0;border-left:4px solid #f0a020;padding:4px 10px;margin:3px 0}
.verdict{display:flex;flex-wrap:wrap;gap:12px;margin:.4em 0 .6em 0}
.card{flex:1 1 220px;max-width:300px;border-radius:8px;padding:10px 14px;border:1px solid #ddd;
 border-top-width:6px}
.card .label{font-size:13px;color:#444;font-weight:600}
.card .value{font-size:26px;font-weight:700;margin:2px 0} .card .value.small{font-size:17px}
.card .level{display:inline-block;font-size:12px;font-weight:700;text-transform:uppercase;
 border-radius:4px;padding:1px 7px;color:#fff}
.card .reading{font-size:13px;margin:6px 0 2px 0} .card .detail{font-size:11px;color:#666}
.good{border-top-color:#2e7d32} .good .level{background:#2e7d32}
.check{border-top-color:#e0a000} .check .level{background:#b07d00}
.poor{border-top-color:#c62828} .poor .level{background:#c62828}
.na{border-top-color:#999} .na .level{background:#999}
.dp{background:#eef4fb;border-left:4px solid #1f77b4;padding:6px 12px;margin:.4em 0;font-size:13px}
.legend{font-size:12px;color:#555;margin:.2em 0 1em 0}
td.num{text-align:right;font-variant-numeric:tabular-nums} code{font-size:11px;color:#666}
details{margin:.4em 0}
"""

_GROUP_TITLES = {
    "fidelity": "Fidelity",
    "detection": "Detection",
    "utility": "ML utility",
    "privacy": "Privacy-risk diagnostics",
}


def _verdict(data: dict) -> list[str]:
    from tabsynth.metrics.verdict import NA, headlines

    parts = ["<section id='verdict'><div class='verdict'>"]
    for h in headlines(data):
        cls = "na" if h["level"] == NA else h["level"]
        parts.append(
            f"<div class='card {cls}' data-level='{_esc(h['level'])}'>"
            f"<div class='label'>{_esc(h['label'])}</div>"
            f"<div class='value{' small' if len(h['value']) > 10 else ''}'>"
            f"{_esc(h['value'])}</div>"
            f"<span class='level'>{_esc(h['level'])}</span>"
            f"<div class='reading'>{_esc(h['reading'])}</div>"
            f"<div class='detail'>{_esc(h['detail'])}</div></div>"
        )
    parts.append("</div>")
    privacy = (data.get("model") or {}).get("privacy")
    if privacy:
        mechs = "; ".join(
            f"{_esc(m.get('name'))} (noise multiplier {_fmt(m.get('noise_multiplier'))}"
            + (f", {m['steps']} steps" if m.get("steps") is not None else "")
            + ")"
            for m in privacy.get("mechanisms", [])
        )
        parts.append(
            "<div class='dp'><b>Differentially private training:</b> "
            f"(&epsilon; = {_fmt(privacy.get('epsilon'))}, &delta; = {_fmt(privacy.get('delta'))})"
            f"-DP, {_esc(privacy.get('adjacency', ''))} of one {_esc(privacy.get('unit', 'row'))}"
            f"; accountant {_esc(privacy.get('accountant', ''))}. Mechanisms: {mechs or '–'}."
            "</div>"
        )
    parts.append(
        "<p class='legend'>Colours: <b>good</b> / <b>check</b> / <b>poor</b> by the thresholds in "
        "docs/metrics.md (section <i>Verdict</i>). Privacy figures are descriptive diagnostics "
        "of copying and overfitting; they are not evidence of differential privacy.</p>"
        "</section>"
    )
    return parts


def _metric_tables(data: dict) -> list[str]:
    from tabsynth.metrics._labels import label

    parts = []
    for group in ("fidelity", "detection", "utility", "privacy"):
        rows = [r for r in data["summary"] if r["metric"].split(".")[0] == group]
        if not rows:
            continue
        parts.append(f"<h3>{_GROUP_TITLES[group]}</h3><table><thead><tr><th>metric</th>"
                     "<th>value</th><th>how to read</th><th>what it measures</th></tr></thead>"
                     "<tbody>")  # fmt: skip
        for r in rows:
            name = r["metric"]
            shown = _GROUP_TITLES[group] if name == group else label(name)
            parts.append(
                f"<tr><td>{_esc(shown)}<br><code>{_esc(name)}</code></td>"
                f"<td class='num'>{_fmt(r['value'])}</td><td>{_esc(r['direction'])}</td>"
                f"<td>{_esc(r['meaning'])}</td></tr>"
            )
        parts.append("</tbody></table>")
    return parts


def render(data: dict) -> str:
    """The whole page as a string: verdict first, then plots, the full tables last."""
    _figure(1, 1)  # fail early with the install hint when matplotlib is missing
    plots = data.get("plots", {})
    metrics = data.get("metrics", {})
    model = data.get("model") or {}
    rows = ", ".join(f"{_esc(k)} {_fmt(v)} rows" for k, v in data["n_rows"].items())
    trained = ""
    if model:
        params = ", ".join(f"{_esc(k)}={_fmt(v)}" for k, v in model.get("params", {}).items())
        trained = f" &middot; model {_esc(model.get('name', ''))}" + (
            f" ({params})" if params else ""
        )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>tabsynth evaluation report</title><style>{_CSS}</style></head><body>",
        "<h1>tabsynth evaluation report</h1>",
        f"<p class='meta'>{rows}{trained} &middot; created {_esc(data.get('created', ''))}"
        f" &middot; tabsynth {_esc(data.get('tabsynth_version', ''))}</p>",
    ]
    parts.extend(_verdict(data))
    notes = data.get("warnings", [])
    if notes:
        parts.append(f"<details><summary>{len(notes)} note(s) about the inputs</summary>")
        parts.extend(f"<div class='warn'>{_esc(w)}</div>" for w in notes)
        parts.append("</details>")
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
        parts.append(
            "<p class='legend'>Association of each column pair: Pearson r for two numeric "
            "columns (blue negative, red positive), Cramér's V otherwise (0 to 1). The right "
            "panel shows 1 - pair score: darker means the synthetic table changed that "
            "relationship more.</p>"
        )
        parts.append(_heatmaps(plots["pairs"]))
    curves = _training_curves(model) if model else None
    if curves:
        parts.append("<h2>Training curves</h2>")
        parts.append(curves)
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
    parts.append("<h2>All metrics</h2>")
    parts.extend(_metric_tables(data))
    details = data.get("details", {})
    if details.get("columns"):
        parts.append("<h2>Columns</h2>")
        cols = ["column", "kind", "metric", "shape", "missing_similarity", "coverage", "adherence"]
        parts.append(_table(details["columns"], cols + ["note"]))
    if data.get("skipped"):
        parts.append("<h2>Not computed</h2><ul>")
        parts.extend(f"<li>{_esc(k)}: {_esc(v)}</li>" for k, v in data["skipped"].items())
        parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts)
