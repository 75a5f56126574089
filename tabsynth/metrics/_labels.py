"""Readable labels of the report's metric names (used by ``report`` and ``_html``; a module of
their own so that neither imports the other)."""

from __future__ import annotations

#: metric name -> readable label for the report's grouped metric table
LABELS: dict[str, str] = {
    "fidelity.column_shapes": "Column shapes",
    "fidelity.column_pair_trends": "Pair trends (related pairs)",
    "fidelity.column_pair_trends_all": "Pair trends (all pairs)",
    "fidelity.missing_similarity": "Missing-value rates",
    "fidelity.range_coverage": "Numeric range covered",
    "fidelity.boundary_adherence": "Numeric values inside the real range",
    "fidelity.category_coverage": "Categories covered",
    "fidelity.category_adherence": "Categories that are real",
    "detection.logistic_auc": "Detection AUC, logistic regression",
    "detection.hist_gradient_boosting_auc": "Detection AUC, gradient boosting",
    "privacy.dcr_synthetic_median": "Distance to closest record (synthetic, median)",
    "privacy.dcr_synthetic_p05": "Distance to closest record (synthetic, 5th percentile)",
    "privacy.dcr_holdout_median": "Distance to closest record (holdout, median)",
    "privacy.dcr_median_ratio": "DCR ratio, synthetic / holdout",
    "privacy.nndr_synthetic_median": "Nearest-neighbour distance ratio (synthetic)",
    "privacy.nndr_holdout_median": "Nearest-neighbour distance ratio (holdout)",
    "privacy.exact_copy_rate": "Exact copies of training rows",
    "privacy.holdout_exact_copy_rate": "Exact copies in the holdout (baseline)",
    "privacy.dcr_share_closer_to_train": "Share closer to training than holdout",
    "privacy.membership_auc": "Membership-inference AUC",
}
_MODEL_LABELS = {"hist_gradient_boosting": "gradient boosting", "linear": "linear model"}
_SIDE_LABELS = {
    "synthetic": "trained on synthetic",
    "real": "trained on real",
    "ratio": "synthetic / real",
    "augmented": "trained on real + synthetic minority rows",
    "difference": "augmented - real",
}


def label(metric: str) -> str:
    """A readable label for a summary metric name (the name itself when unknown)."""
    if metric in LABELS:
        return LABELS[metric]
    parts = metric.split(".")
    if len(parts) == 4 and parts[0] == "utility":
        _, model, name, side = parts
        what = _UTILITY_NAMES.get(name, name.replace("_", " "))
        what = what[:1].upper() + what[1:]
        if model == "augmentation":
            return f"{what}, augmentation, {_SIDE_LABELS.get(side, side)}"
        return f"{what}, {_MODEL_LABELS.get(model, model)}, {_SIDE_LABELS.get(side, side)}"
    return metric


_UTILITY_NAMES = {
    "accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "roc_auc": "ROC AUC",
    "r2": "R^2",
    "mae": "mean absolute error",
}
