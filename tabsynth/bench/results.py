"""Benchmark results: ``results.csv`` (one row per cell), ``results.md`` (readable tables),
``utility_vs_epsilon.png``, and the markdown helpers the scripts in ``benchmarks/`` print with.

Every file is written atomically (:mod:`tabsynth._files`), so an interrupted suite keeps what it
had measured.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tabsynth._files import atomic_write_bytes

__all__ = [
    "RESULT_COLUMNS",
    "float_or_none",
    "fmt",
    "markdown_table",
    "write_csv",
    "write_markdown",
    "write_plot",
    "write_records",
]

RESULT_COLUMNS = [
    "dataset",
    "model",
    "epsilon",
    "seed",
    "status",
    "target",
    "task",
    "n_train",
    "n_test",
    "n_columns",
    "epochs",
    "epochs_run",
    "fit_s",
    "preprocess_s",
    "train_s",
    "epoch_median_s",
    "sample_s",
    "evaluate_s",
    "cell_s",
    "peak_rss_fit_mib",
    "peak_rss_sample_mib",
    "peak_rss_evaluate_mib",
    "peak_rss_process_mib",
    "rss_method",
    "main_metric",
    "utility_synthetic",
    "utility_real",
    "utility_ratio",
    "utility_macro_f1_synthetic",
    "utility_macro_f1_real",
    "utility_linear_synthetic",
    "column_shapes",
    "column_pair_trends",
    "detection_logistic_auc",
    "detection_hgb_auc",
    "dcr_median_ratio",
    "membership_auc",
    "exact_copy_rate",
    "epsilon_spent",
    "delta",
    "note",
]


def float_or_none(value: Any) -> float | None:
    """``value`` as a finite float, else None (missing cells, NaN, text)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def fmt(value: Any, spec: str = ".3f") -> str:
    """A table cell: ``–`` for missing; a spec ending in ``x`` prints a ratio (``2.5×``)."""
    if isinstance(value, str):
        return value
    number = float_or_none(value)
    if number is None:
        return "–"
    if spec.endswith("x"):
        return format(number, spec[:-1]) + "×"
    if spec.endswith("d"):
        return format(int(number), spec)
    return format(number, spec)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """``columns`` are ``(key, header, format spec)``."""
    header = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), spec) for k, _, spec in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def write_csv(rows: list[dict], path: str | os.PathLike[str]) -> Path:
    """``results.csv``: the :data:`RESULT_COLUMNS` of every row, in order."""
    import pandas as pd

    frame = pd.DataFrame([{k: r.get(k) for k in RESULT_COLUMNS} for r in rows])
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _median_range(values: list[float], spec: str) -> str:
    import statistics

    clean = [v for v in (float_or_none(x) for x in values) if v is not None]
    if not clean:
        return "–"
    mid = format(statistics.median(clean), spec)
    if len(clean) == 1:
        return mid
    return f"{mid} [{format(min(clean), spec)}–{format(max(clean), spec)}]"


_MD_COLUMNS = [
    ("fit_s", "fit s", ".1f"),
    ("sample_s", "sample s", ".2f"),
    ("peak_rss_fit_mib", "peak MiB (fit)", ".0f"),
    ("column_shapes", "shapes", ".3f"),
    ("column_pair_trends", "pair trends", ".3f"),
    ("detection_logistic_auc", "detection AUC (LR)", ".3f"),
    ("utility_synthetic", "TSTR", ".3f"),
    ("utility_real", "TRTR", ".3f"),
    ("utility_ratio", "TSTR/TRTR", ".3f"),
    ("dcr_median_ratio", "DCR ratio", ".2f"),
    ("epsilon_spent", "ε spent", ".3g"),
]


def _eps_label(eps: Any) -> str:
    value = float_or_none(eps)
    return "∞ (no DP)" if value is None else format(value, "g")


def write_markdown(rows: list[dict], path: str | os.PathLike[str], settings: dict) -> Path:
    """One table per dataset (median [min–max] over seeds), then failures and notes."""
    lines = ["# tabsynth benchmark results", ""]
    for key, value in settings.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "–"
        lines.append(f"- **{key.replace('_', ' ')}**: {value}")
    lines.append(
        "- **columns**: TSTR = hist-gradient-boosting trained on synthetic, scored on the real "
        "test split (ROC AUC for classification, R² for regression); TRTR = same trained on the "
        "real training split; shapes / pair trends: 1 = same marginals / pairwise trends; "
        "detection AUC 0.5 = indistinguishable; DCR ratio ≥ 1 is reassuring. Times and peak "
        "memory are per cell, measured in its own process."
    )
    lines.append("")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    problems: list[str] = []
    notes: dict[str, str] = {}
    for ds in datasets:
        mine = [r for r in rows if r["dataset"] == ds]
        ok = [r for r in mine if r.get("status") == "ok"]
        first = next(iter(ok), mine[0])
        lines.append(f"## {ds}")
        lines.append("")
        if ok:
            lines.append(
                f"target `{first.get('target')}` ({first.get('task')}), "
                f"{first.get('n_train')} training rows, {first.get('n_test')} test rows, "
                f"{first.get('n_columns')} columns"
            )
            lines.append("")
        header = ["model", "ε", "runs", *(label for _, label, _ in _MD_COLUMNS)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        groups: dict[tuple, list[dict]] = {}
        for r in mine:
            groups.setdefault((r["model"], float_or_none(r.get("epsilon"))), []).append(r)
        for (model, eps), group in groups.items():
            good = [r for r in group if r.get("status") == "ok"]
            for r in group:
                if r.get("status") != "ok":
                    problems.append(
                        f"{ds} / {model} / ε {_eps_label(eps)} / seed {r['seed']}: "
                        f"{r.get('status')}"
                    )
                if r.get("note"):
                    notes[ds] = str(r["note"])
            cells = [model, _eps_label(eps), f"{len(good)}/{len(group)}"]
            cells += [_median_range([r.get(k) for r in good], spec) for k, _, spec in _MD_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""]
        lines += [f"- {ds}: {text}" for ds, text in notes.items()]
        lines.append("")
    if problems:
        lines += ["## Skipped or failed cells", ""]
        lines += [f"- {p}" for p in problems]
        lines.append("")
    return atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))


def write_plot(rows: list[dict], path: str | os.PathLike[str]) -> str | None:
    """Utility (TSTR main score) against ε, one panel per dataset; None or a note if skipped.

    Non-DP runs sit at the right edge, labelled ∞; anchors are non-DP points there too; the
    dashed line is TRTR (the same model trained on real rows).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    import statistics

    ok = [r for r in rows if r.get("status") == "ok" and r.get("utility_synthetic") is not None]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not datasets:
        return "plot skipped: no results"
    eps_values = sorted(
        {e for e in (float_or_none(r.get("epsilon")) for r in rows) if e is not None}
    )
    if eps_values:
        lo, hi = math.log10(min(eps_values)), math.log10(max(eps_values))
        inf_x = 10 ** (hi + max(0.5, (hi - lo) * 0.25))
    else:
        inf_x = 1.0
    ncols = min(3, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    markers = "osD^vP*X"
    for k, ds in enumerate(datasets):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        mine = [r for r in ok if r["dataset"] == ds]
        models = list(dict.fromkeys(r["model"] for r in mine))
        for j, model in enumerate(models):
            by_eps: dict[float, list[float]] = {}
            for r in mine:
                if r["model"] != model:
                    continue
                eps = float_or_none(r.get("epsilon"))
                by_eps.setdefault(inf_x if eps is None else eps, []).append(
                    float(r["utility_synthetic"])
                )
            xs = sorted(by_eps)
            ys = [statistics.median(by_eps[x]) for x in xs]
            ax.plot(xs, ys, marker=markers[j % len(markers)], label=model)
        real = [float_or_none(r.get("utility_real")) for r in mine]
        real = [v for v in real if v is not None]
        if real:
            ax.axhline(statistics.median(real), color="grey", linestyle="--", label="TRTR (real)")
        metric = next((r.get("main_metric") for r in mine), None) or "utility"
        if str(metric).startswith("roc_auc"):
            ax.axhline(0.5, color="lightgrey", linestyle=":", label="chance")
        if eps_values:
            ax.set_xscale("log")
            ticks = [*eps_values, inf_x]
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{e:g}" for e in eps_values] + ["∞"])
            ax.minorticks_off()
        else:
            ax.set_xticks([inf_x])
            ax.set_xticklabels(["∞ (no DP)"])
        ax.set_title(ds, fontsize=10)
        ax.set_xlabel("ε")
        ax.set_ylabel(f"TSTR {str(metric).split(' ')[0]}")
        ax.grid(alpha=0.3)
        if not mine:
            ax.text(0.5, 0.5, "no successful run", ha="center", va="center", transform=ax.transAxes)
        elif k == 0:
            ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return None


def write_records(
    out_dir: str | os.PathLike[str], name: str, records: Sequence[dict], extra: dict
) -> None:
    """``<name>.json`` (records + run information) and ``<name>.csv`` (one line per record)."""
    import json

    import pandas as pd

    from tabsynth.bench.measure import jsonable

    out = Path(out_dir)
    payload = jsonable(dict(extra, records=list(records)))
    atomic_write_bytes(out / f"{name}.json", json.dumps(payload, indent=2).encode("utf-8"))
    flat = [
        {k: v for k, v in jsonable(r).items() if not isinstance(v, dict | list)} for r in records
    ]
    atomic_write_bytes(out / f"{name}.csv", pd.DataFrame(flat).to_csv(index=False).encode("utf-8"))
