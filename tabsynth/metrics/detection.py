"""Detection: can a classifier tell real rows from synthetic ones? (0.5 = indistinguishable)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import PredefinedSplit, cross_val_score

from tabsynth.metrics import _models
from tabsynth.metrics._data import Encoded, model_matrix

N_SPLITS = 3


def detection(enc: Encoded, rng: np.random.Generator, max_rows: int) -> tuple[dict, str | None]:
    """Cross-validated ROC AUC of a logistic-regression and a gradient-boosting detector.

    Both sides are subsampled to the same size (at most ``max_rows``) so that the classes are
    balanced. Identical rows (a synthetic copy of a real row, or duplicates) always share a fold:
    otherwise the model would be scored on the twin of a row it was trained on with the opposite
    label, which drives the AUC far below 0.5. Returns (scores, reason skipped or None).
    """
    real, syn = enc.frames["real"], enc.frames["synthetic"]
    n = min(real.n, syn.n, max_rows)
    if n < 5 * N_SPLITS:
        return {}, f"too few rows for {N_SPLITS}-fold detection (need 15 per side, have {n})"
    ir = np.sort(rng.choice(real.n, size=n, replace=False))
    is_ = np.sort(rng.choice(syn.n, size=n, replace=False))
    xr, mask, num_idx, cat_idx = model_matrix(enc, real, ir)
    xs = model_matrix(enc, syn, is_)[0]
    X = np.vstack([xr, xs])
    y = np.repeat([0, 1], n)
    folds = _group_folds(X, rng)
    if np.unique(folds).size < N_SPLITS:
        return {}, f"fewer than {N_SPLITS} distinct rows; detection needs {N_SPLITS} folds"
    seed = int(rng.integers(2**31 - 1))
    cv = PredefinedSplit(folds)
    out = {"n_rows_per_side": int(n), "n_splits": N_SPLITS}
    models = {
        "logistic": _models.linear("binary", num_idx, cat_idx, seed),
        "hist_gradient_boosting": _models.hgb("binary", mask, seed),
    }
    for name, model in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            auc = cross_val_score(model, X, y, cv=cv, scoring="roc_auc", error_score="raise")
        out[f"{name}_auc"] = float(np.mean(auc))
        out[f"{name}_auc_std"] = float(np.std(auc))
    return out, None


def _group_folds(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Fold index per row, assigned per group of identical rows, groups spread evenly."""
    hashes = pd.util.hash_pandas_object(pd.DataFrame(np.nan_to_num(X, nan=np.inf)), index=False)
    _, group = np.unique(hashes.to_numpy(), return_inverse=True)
    n_groups = int(group.max()) + 1
    fold_of_group = rng.permutation(np.arange(n_groups) % N_SPLITS)
    return fold_of_group[group]
