"""ML utility: train on synthetic, test on real holdout (TSTR) against train real, test real (TRTR)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    r2_score,
    roc_auc_score,
)

from tabsynth.errors import DataError
from tabsynth.metrics import _models
from tabsynth.metrics._data import DISCRETE_KINDS, Encoded, model_matrix
from tabsynth.metrics.augmentation import augmentation_utility

TASKS = ("binary", "multiclass", "regression")
#: per model family: the metrics computed, in report order
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "roc_auc")
REGRESSION_METRICS = ("r2", "mae")


def _target_values(enc: Encoded, target: Any, frame: str) -> np.ndarray:
    """Target as float (numeric) or code (discrete, missing = NaN)."""
    kind, j = enc.position(target)
    f = enc.frames[frame]
    if kind == "num":
        return f.num[:, j].copy()
    codes = f.cat[:, j].astype(np.float64)
    codes[f.cat[:, j] == enc.n_levels[j]] = np.nan
    return codes


def infer_task(enc: Encoded, target: Any) -> str:
    """binary / multiclass for categorical targets (and integer ones with two values), else regression."""
    kind = enc.kinds[target]
    y = _target_values(enc, target, "real")
    n_classes = np.unique(y[~np.isnan(y)]).size
    if kind in DISCRETE_KINDS:
        return "binary" if n_classes <= 2 else "multiclass"
    if kind == "integer" and n_classes <= 2:
        return "binary"
    return "regression"


def _classification_scores(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray, task: str):
    """Accuracy, macro-F1 and ROC AUC (one-vs-rest macro over the classes in the test set)."""
    pred = classes[np.argmax(proba, axis=1)]
    out = {
        "accuracy": float(accuracy_score(y_true, pred)),
        "macro_f1": float(f1_score(y_true, pred, average="macro", zero_division=0)),
    }
    present = np.unique(y_true)
    if present.size < 2:
        out["roc_auc"] = float("nan")
    elif task == "binary":
        pos = classes.searchsorted(present[-1])
        out["roc_auc"] = float(roc_auc_score(y_true == present[-1], proba[:, pos]))
    else:
        aucs = [roc_auc_score(y_true == c, proba[:, classes.searchsorted(c)]) for c in present]
        out["roc_auc"] = float(np.mean(aucs))
    return out


def _fit_score(model, X, y, X_test, y_test, task: str, classes: np.ndarray | None, notes, label):
    if task == "regression":
        model.fit(X, y)
        pred = model.predict(X_test)
        return {
            "r2": float(r2_score(y_test, pred)),
            "mae": float(mean_absolute_error(y_test, pred)),
        }
    seen = np.unique(y)
    proba = np.zeros((len(X_test), classes.size))
    if seen.size == 1:
        notes.append(f"{label}: training target has one class only; predicting it everywhere")
        proba[:, classes.searchsorted(seen[0])] = 1.0
    else:
        missing = np.setdiff1d(classes, seen)
        if missing.size:
            notes.append(
                f"{label}: training target lacks {missing.size} class(es) of the real data"
            )
        model.fit(X, y)
        p = model.predict_proba(X_test)
        proba[:, classes.searchsorted(model.classes_)] = p
    return _classification_scores(y_test, proba, classes, task)


def utility(
    enc: Encoded, target: Any, task: str, rng: np.random.Generator, max_rows: int
) -> tuple[dict, list[str], str | None]:
    """TSTR and TRTR scores for two model families, with the synthetic/real ratio.

    Returns (scores, notes, reason the family was skipped or None).
    """
    notes: list[str] = []
    data = {}
    for frame in ("real", "synthetic", "holdout"):
        y = _target_values(enc, target, frame)
        keep = np.flatnonzero(~np.isnan(y))
        if keep.size < len(y):
            notes.append(f"{frame}: {len(y) - keep.size} row(s) with a missing target dropped")
        if frame != "holdout" and keep.size > max_rows:
            keep = np.sort(rng.choice(keep, size=max_rows, replace=False))
        # the layout (mask, index lists) is the same for every frame
        X, mask, num_idx, cat_idx = model_matrix(enc, enc.frames[frame], keep, exclude=target)
        data[frame] = (X, y[keep])
    if data["holdout"][1].size == 0 or data["real"][1].size < 2:
        raise DataError(f"target {target!r} has too few non-missing values in real/holdout")
    if data["synthetic"][1].size < 2:
        return {}, notes, "the synthetic table has fewer than 2 rows with a target value"
    if X.shape[1] == 0:
        raise DataError(f"no feature columns besides the target {target!r}")

    classes = None
    if task != "regression":
        ys = [data[f][1] for f in data]
        classes = np.unique(np.concatenate(ys))
        if np.unique(data["real"][1]).size < 2:
            raise DataError(f"target {target!r} has a single class in the real table")
        if task == "binary" and np.unique(np.concatenate(ys[::2])).size > 2:
            raise DataError(
                f"task 'binary' but target {target!r} has more than two classes in real/holdout"
            )
    seed = int(rng.integers(2**31 - 1))
    X_test, y_test = data["holdout"]
    families = {
        "hist_gradient_boosting": lambda: _models.hgb(task, mask, seed),
        "linear": lambda: _models.linear(task, num_idx, cat_idx, seed),
    }
    models: dict[str, dict] = {}
    metrics = REGRESSION_METRICS if task == "regression" else CLASSIFICATION_METRICS
    for name, make in families.items():
        scores = {}
        for source in ("synthetic", "real"):
            X, y = data[source]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                scores[source] = _fit_score(
                    make(), X, y, X_test, y_test, task, classes, notes, f"{name}/{source}"
                )
        models[name] = {
            m: {
                "synthetic": scores["synthetic"][m],
                "real": scores["real"][m],
                "ratio": _ratio(scores["synthetic"][m], scores["real"][m]),
            }
            for m in metrics
        }
    out = {
        "task": task,
        "target": str(target),
        "n_train_real": int(data["real"][1].size),
        "n_train_synthetic": int(data["synthetic"][1].size),
        "n_test": int(y_test.size),
        "models": models,
    }
    if task != "regression":
        kind, j = enc.position(target)

        def label(code: float) -> str:
            return str(enc.levels[j][int(code)]) if kind == "cat" else f"{code:g}"

        augmented, reason = augmentation_utility(
            data["real"], data["synthetic"], data["holdout"], mask, classes, rng, label
        )
        if reason:
            notes.append(f"augmentation: {reason}")
        else:
            out["augmentation"] = augmented
    return out, notes, None


def _ratio(syn: float, real: float) -> float:
    if not (np.isfinite(syn) and np.isfinite(real)) or real == 0:
        return float("nan")
    return float(syn / real)
