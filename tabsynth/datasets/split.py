"""Train/test splits of a table: the one split every benchmark, the demo and the docs use."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["split_table", "subsample_rows"]


def _strata(y: pd.Series) -> pd.Series | None:
    """A stratification key (missing target values form their own stratum); None if unusable."""
    key = y.astype(object).where(y.notna(), "__missing__").astype(str)
    counts = key.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return None
    return key


def split_table(
    df: pd.DataFrame, target: str, task: str | None, seed: int = 0, test_size: float = 0.2
) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """80/20 train/test split with a fixed seed, stratified on the target unless regression.

    Returns ``(train, test, note)``; the note says when stratification was not possible (a
    class with fewer than 2 rows).
    """
    from sklearn.model_selection import train_test_split

    note = ""
    strata = None
    if task != "regression":
        strata = _strata(df[target])
        if strata is None:
            note = f"target {target!r} has a class with < 2 rows: split not stratified"
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), test.reset_index(drop=True), note


def subsample_rows(
    df: pd.DataFrame, n: int | None, target: str, task: str | None, seed: int
) -> pd.DataFrame:
    """At most ``n`` rows of ``df``, stratified on the target where the strata allow it."""
    if n is None or len(df) <= n:
        return df
    from sklearn.model_selection import train_test_split

    strata: Any = _strata(df[target]) if task != "regression" else None
    try:
        part, _ = train_test_split(df, train_size=n, random_state=seed, stratify=strata)
    except ValueError:  # a stratum too small for the requested size
        part, _ = train_test_split(df, train_size=n, random_state=seed)
    return part.reset_index(drop=True)
