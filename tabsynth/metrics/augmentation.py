"""Augmentation utility: does adding synthetic minority rows to the real rows help a classifier?

Train gradient boosting on the real rows, and on the real rows plus synthetic rows of the
smaller classes (as many as balance every class with the largest, taken from the synthetic
table), test both on the real holdout. ROC AUC, average precision and the recall of the
minority class (the rarest real class) are reported for both, with the difference and a
bootstrap interval over holdout rows (the two models' predictions are fixed; the test rows
are resampled, so the interval says how much the test set alone moves the difference).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import average_precision_score, recall_score, roc_auc_score

from tabsynth.metrics import _models

METRICS = ("roc_auc", "average_precision", "minority_recall")
N_BOOTSTRAP = 200


def _scores(y: np.ndarray, proba: np.ndarray, classes: np.ndarray, minority: float) -> dict:
    pred = classes[np.argmax(proba, axis=1)]
    present = np.unique(y)
    out = {"minority_recall": float(recall_score(y == minority, pred == minority, zero_division=0))}
    if present.size < 2:
        out["roc_auc"] = out["average_precision"] = float("nan")
        return out
    if classes.size == 2:
        pos = classes.searchsorted(minority)
        out["roc_auc"] = float(roc_auc_score(y == minority, proba[:, pos]))
        out["average_precision"] = float(average_precision_score(y == minority, proba[:, pos]))
        return out
    aucs, aps = [], []
    for c in present:
        col = proba[:, classes.searchsorted(c)]
        aucs.append(roc_auc_score(y == c, col))
        aps.append(average_precision_score(y == c, col))
    out["roc_auc"] = float(np.mean(aucs))
    out["average_precision"] = float(np.mean(aps))
    return out


def _predict(model, X, y, X_test, classes: np.ndarray) -> np.ndarray:
    model.fit(X, y)
    proba = np.zeros((len(X_test), classes.size))
    proba[:, classes.searchsorted(model.classes_)] = model.predict_proba(X_test)
    return proba


def augmentation_utility(
    real: tuple[np.ndarray, np.ndarray],
    synthetic: tuple[np.ndarray, np.ndarray],
    holdout: tuple[np.ndarray, np.ndarray],
    cat_mask: np.ndarray,
    classes: np.ndarray,
    rng: np.random.Generator,
    label: Callable[[float], str] = str,
) -> tuple[dict | None, str | None]:
    """Scores of real-only vs real+synthetic training (``(None, reason)`` when not applicable)."""
    (X_r, y_r), (X_s, y_s), (X_t, y_t) = real, synthetic, holdout
    values, counts = np.unique(y_r, return_counts=True)
    if values.size < 2:
        return None, "the real table has one class only"
    minority = values[np.argmin(counts)]
    top = counts.max()
    picks, added = [], {}
    for value, count in zip(values, counts, strict=True):
        need = int(top - count)
        pool = np.flatnonzero(y_s == value)
        take = min(need, pool.size)
        if take:
            picks.append(rng.choice(pool, size=take, replace=False))
        added[label(value)] = int(take)
    if not picks:
        return None, "the synthetic table has no rows of the smaller classes"
    idx = np.concatenate(picks)
    X_a = np.concatenate([X_r, X_s[idx]])
    y_a = np.concatenate([y_r, y_s[idx]])
    seed = int(rng.integers(2**31 - 1))
    p_real = _predict(_models.hgb("binary", cat_mask, seed), X_r, y_r, X_t, classes)
    p_aug = _predict(_models.hgb("binary", cat_mask, seed), X_a, y_a, X_t, classes)
    real_s = _scores(y_t, p_real, classes, minority)
    aug_s = _scores(y_t, p_aug, classes, minority)
    boots = {m: [] for m in METRICS}
    n = y_t.size
    for _ in range(N_BOOTSTRAP):
        b = rng.integers(0, n, size=n)
        if np.unique(y_t[b]).size < 2:
            continue
        r, a = (
            _scores(y_t[b], p_real[b], classes, minority),
            _scores(y_t[b], p_aug[b], classes, minority),
        )
        for m in METRICS:
            boots[m].append(a[m] - r[m])
    out = {
        "minority_class": label(minority),
        "n_real": int(y_r.size),
        "n_synthetic_added": int(idx.size),
        "added_per_class": added,
        "n_bootstrap": N_BOOTSTRAP,
    }
    for m in METRICS:
        diffs = np.asarray(boots[m], dtype=float)
        diffs = diffs[np.isfinite(diffs)]
        low, high = np.quantile(diffs, [0.025, 0.975]) if diffs.size else (np.nan, np.nan)
        out[m] = {
            "real": real_s[m],
            "augmented": aug_s[m],
            "difference": aug_s[m] - real_s[m],
            "ci_low": float(low),
            "ci_high": float(high),
        }
    return out, None
