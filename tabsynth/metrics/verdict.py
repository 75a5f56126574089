"""The report's verdict: a few headline figures, each with a colour and a plain-words reading.

The thresholds below are documented in docs/metrics.md (section *Verdict*); change both together.
They are rules of thumb for a first reading, not statistical tests: a "check" asks the reader to
look at the plots, a "poor" says the synthetic table is unlikely to serve that purpose as is.
"""

from __future__ import annotations

import math
from typing import Any

GOOD, CHECK, POOR, NA = "good", "check", "poor", "n/a"
_RANK = {GOOD: 0, CHECK: 1, POOR: 2, NA: -1}

#: headline -> (good if at least / at most, check if at least / at most); "higher" or "lower"
THRESHOLDS: dict[str, dict[str, Any]] = {
    "column_shapes": {"better": "higher", "good": 0.90, "check": 0.80},
    "pair_trends": {"better": "higher", "good": 0.85, "check": 0.70},
    "detection": {"better": "lower", "good": 0.70, "check": 0.85},
    "utility_ratio": {"better": "higher", "good": 0.90, "check": 0.75},
    "membership_auc": {"better": "lower", "good": 0.55, "check": 0.60},
    "dcr_ratio": {"better": "higher", "good": 0.90, "check": 0.70},
}

_READINGS = {
    "column_shapes": {
        GOOD: "each column's distribution closely matches the real one",
        CHECK: "some columns' distributions differ; see the marginal plots",
        POOR: "column distributions differ clearly from the real ones",
    },
    "pair_trends": {
        GOOD: "relationships between columns are preserved",
        CHECK: "some relationships between columns are weakened; see the heat maps",
        POOR: "relationships between columns are largely lost",
    },
    "detection": {
        GOOD: "a classifier can hardly tell synthetic rows from real ones",
        CHECK: "a classifier tells synthetic rows apart fairly often",
        POOR: "a classifier easily tells synthetic rows from real ones",
    },
    "utility_ratio": {
        GOOD: "a model trained on synthetic rows predicts almost as well as one trained on real rows",
        CHECK: "a model trained on synthetic rows loses some accuracy against real training data",
        POOR: "a model trained on synthetic rows predicts much worse than one trained on real rows",
    },
    "privacy": {
        GOOD: "no sign of copied or memorised training rows (diagnostics, not a DP guarantee)",
        CHECK: "synthetic rows sit somewhat close to training rows; review before sharing",
        POOR: "synthetic rows sit on training rows: likely copying or memorisation",
    },
}


def _value(data: dict, metric: str) -> float | None:
    for row in data.get("summary", []):
        if row["metric"] == metric:
            v = row["value"]
            return None if v is None or not math.isfinite(float(v)) else float(v)
    return None


def level(key: str, value: float | None) -> str:
    """good / check / poor for one headline value by :data:`THRESHOLDS` (n/a when missing)."""
    if value is None:
        return NA
    t = THRESHOLDS[key]
    if t["better"] == "higher":
        return GOOD if value >= t["good"] else CHECK if value >= t["check"] else POOR
    return GOOD if value <= t["good"] else CHECK if value <= t["check"] else POOR


def _worst(*levels: str) -> str:
    known = [lv for lv in levels if lv != NA]
    return max(known, key=_RANK.__getitem__) if known else NA


def _utility(data: dict) -> dict[str, Any] | None:
    """The utility headline: ROC AUC (classification) or R^2 (regression) of the first model."""
    util = data.get("metrics", {}).get("utility", {})
    models = util.get("models", {})
    for model in ("hist_gradient_boosting", *models):
        scores = models.get(model, {})
        for metric, label in (("roc_auc", "ROC AUC"), ("r2", "R²")):
            trio = scores.get(metric)
            if trio and trio.get("ratio") is not None:
                return {"model": model, "metric": label, **trio}
    return None


def headlines(data: dict) -> list[dict[str, Any]]:
    """3-5 headline figures of a report dict: key, label, value text, level, reading."""
    out: list[dict[str, Any]] = []

    def add(key: str, label: str, text: str, lv: str, reading: str, detail: str = "") -> None:
        out.append(
            {"key": key, "label": label, "value": text, "level": lv, "reading": reading,
             "detail": detail}
        )  # fmt: skip

    shapes = _value(data, "fidelity.column_shapes")
    if shapes is not None:
        lv = level("column_shapes", shapes)
        add("column_shapes", "Column shapes", f"{shapes:.2f}", lv, _READINGS["column_shapes"][lv],
            "mean per-column similarity, 1 = identical")  # fmt: skip
    pairs = _value(data, "fidelity.column_pair_trends")
    if pairs is not None:
        lv = level("pair_trends", pairs)
        add("pair_trends", "Pair trends", f"{pairs:.2f}", lv, _READINGS["pair_trends"][lv],
            "correlations / associations of related column pairs, 1 = identical")  # fmt: skip
    det = _value(data, "detection.logistic_auc")
    if det is not None:
        lv = level("detection", det)
        add("detection", "Detection", f"AUC {det:.2f}", lv, _READINGS["detection"][lv],
            "logistic real-vs-synthetic classifier, 0.5 = indistinguishable")  # fmt: skip
    util = _utility(data)
    if util is not None:
        lv = level("utility_ratio", util["ratio"])
        syn, real = util["synthetic"], util["real"]
        text = f"{util['ratio']:.2f}"
        detail = (
            f"{util['metric']} trained on synthetic {syn:.2f} vs on real {real:.2f} "
            f"(target {data.get('metrics', {}).get('utility', {}).get('target')})"
        )
        add("utility", "ML utility (TSTR / TRTR)", text, lv, _READINGS["utility_ratio"][lv], detail)
    priv = privacy_level(data)
    if priv is not None:
        add("privacy", "Privacy risk", priv["text"], priv["level"],
            _READINGS["privacy"][priv["level"]], priv["detail"])  # fmt: skip
    return out


def privacy_level(data: dict) -> dict[str, Any] | None:
    """Membership AUC and DCR ratio combined (the worse decides); None without a holdout."""
    mia = _value(data, "privacy.membership_auc")
    dcr = _value(data, "privacy.dcr_median_ratio")
    if mia is None and dcr is None:
        return None
    lv = _worst(level("membership_auc", mia), level("dcr_ratio", dcr))
    copies, base = (
        _value(data, "privacy.exact_copy_rate"),
        _value(data, "privacy.holdout_exact_copy_rate"),
    )
    if copies is not None and base is not None and copies > max(2 * base, 0.01):
        lv = _worst(lv, CHECK if copies <= max(4 * base, 0.05) else POOR)
    parts = []
    if dcr is not None:
        parts.append(f"DCR ratio {dcr:.2f}")
    if mia is not None:
        parts.append(f"membership AUC {mia:.2f}")
    detail = (
        "distance to closest record vs holdout (>= 1 reassuring); membership attack (0.5 ideal)"
    )
    if copies is not None:
        detail += f"; exact copies {copies:.1%}"
    return {"text": ", ".join(parts), "level": lv, "detail": detail}


def verdict_lines(data: dict) -> list[str]:
    """Three plain-words lines: fidelity, utility, privacy risk (for the CLI)."""
    items = {h["key"]: h for h in headlines(data)}
    lines = []
    shapes, pairs = items.get("column_shapes"), items.get("pair_trends")
    if shapes or pairs:
        lv = _worst(*(h["level"] for h in (shapes, pairs) if h))
        figures = ", ".join(
            f"{h['label'].lower()} {h['value']}" for h in (shapes, pairs) if h is not None
        )
        reading = {
            GOOD: "the synthetic table looks like the real one, column by column and in pairs",
            CHECK: "close overall, but some columns or pairs differ; see the report's plots",
            POOR: "the synthetic table differs clearly from the real one",
        }[lv]
        lines.append(f"fidelity: {figures} -> {lv.upper()}: {reading}")
    else:
        lines.append("fidelity: not computed")
    util = _utility(data)
    if util is not None:
        lv = level("utility_ratio", util["ratio"])
        lines.append(
            f"utility: {util['metric']} {util['synthetic']:.3f} trained on synthetic vs "
            f"{util['real']:.3f} on real (ratio {util['ratio']:.2f}) -> {lv.upper()}: "
            f"{_READINGS['utility_ratio'][lv]}"
        )
    else:
        lines.append("utility: not computed (needs a target and a holdout)")
    priv = privacy_level(data)
    if priv is not None:
        word = {GOOD: "LOW", CHECK: "CHECK", POOR: "HIGH"}[priv["level"]]
        lines.append(
            f"privacy risk: {priv['text']} -> {word}: {_READINGS['privacy'][priv['level']]}"
        )
    else:
        lines.append("privacy risk: not assessed (needs a holdout)")
    return lines
