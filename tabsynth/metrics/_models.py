"""The two model families shared by detection and ML utility."""

from __future__ import annotations

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler


def hgb(task: str, cat_mask: np.ndarray, seed: int):
    """HistGradientBoosting with native categorical support on the ordinal codes."""
    cls = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return cls(categorical_features=cat_mask if cat_mask.any() else None, random_state=seed)


def linear(task: str, num_idx: list[int], cat_idx: list[int], seed: int) -> Pipeline:
    """Median imputation + missing indicators + scaling for numerics, one-hot for categoricals."""
    parts = []
    if num_idx:
        parts.append(
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                num_idx,
            )
        )
    if cat_idx:
        parts.append(
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value=-1.0, keep_empty_features=True),
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=64,
                        sparse_output=True,
                    ),
                ),
                cat_idx,
            )
        )
    prep = ColumnTransformer(parts, sparse_threshold=0.3)
    if task == "regression":
        return Pipeline([("prep", prep), ("model", Ridge(alpha=1.0))])
    return Pipeline(
        [("prep", prep), ("model", LogisticRegression(max_iter=1000, random_state=seed))]
    )
