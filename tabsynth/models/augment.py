"""``augment``: add synthetic rows of chosen classes to a real table (rebalancing a rare class).

The synthetic rows come from conditional sampling, so every added row carries the class it was
asked for. Without DP the result is the real rows plus the synthetic ones and a boolean column
that marks the synthetic rows. Under DP (a model with ``epsilon``) mixing real rows into the
output would release them, so only synthetic rows are returned; how many rows each class gets is
then computed from the model itself (its DP row count and the class shares of an unconditional
synthetic probe, both post-processing of the DP release), never from the real class counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError
from tabsynth.models.base import BaseSynthesizer

#: rows drawn from a DP model to estimate its class shares (post-processing, costs no budget)
_DP_PROBE_ROWS = 20_000
_TARGET_KINDS = ("categorical", "boolean", "integer")
#: an integer target has at most this many classes (a 0/1 label, a 1-5 grade)
_MAX_INTEGER_CLASSES = 50


def augment(
    real: pd.DataFrame,
    model: BaseSynthesizer | None = None,
    *,
    target: str,
    strategy: str | Mapping[Any, int] = "balance",
    metadata: Any = None,
    random_state: int | None = None,
    indicator: str = "is_synthetic",
) -> pd.DataFrame:
    """Real rows plus synthetic rows of the chosen classes of ``target``.

    Parameters
    ----------
    real : the real table.
    model : a tabsynth model. Unfitted (or None, which makes an ``ARGN`` with ``random_state``:
        it meets conditions by construction and trains for a length that fits the table) it is
        fitted on ``real`` with ``metadata``; fitted, it is used as is.
    target : the categorical or boolean column whose classes are added.
    strategy : ``"balance"`` adds rows to every class until each has as many as the largest;
        a mapping ``{class: n_rows}`` adds exactly those rows.
    metadata : passed to ``fit`` when the model is fitted here.
    random_state : seed of the default model and of the sampling.
    indicator : name of the boolean column that marks the synthetic rows.

    Returns
    -------
    DataFrame with the real rows first (index reset), then the synthetic ones, and the
    ``indicator`` column. Under DP: the synthetic rows only, with the privacy report in
    ``result.attrs["privacy_report"]``.
    """
    if not isinstance(real, pd.DataFrame):
        raise DataError(f"real must be a pandas DataFrame, got {type(real).__name__}")
    if target not in real.columns:
        raise DataError(f"target column {target!r} is not in the table")
    if indicator in real.columns:
        raise DataError(
            f"the table already has a column {indicator!r}; pass another indicator= name"
        )
    if model is None:
        from tabsynth.models.argn import ARGN

        model = ARGN(random_state=random_state, verbose=False)
    elif not isinstance(model, BaseSynthesizer):
        raise DataError(f"model must be a tabsynth model, got {type(model).__name__}")
    if not hasattr(model, "transformer_"):
        model.fit(real, metadata=metadata)
    missing = [c for c in model.metadata_.names if c not in real.columns]
    if missing:
        raise DataError(f"the model was fitted on columns the table lacks: {missing}")
    spec = model.metadata_[target]
    if spec.kind not in _TARGET_KINDS:
        raise DataError(
            f"augment needs a categorical, boolean or integer target; column {target!r} is "
            f"{spec.kind} (declare it categorical in the metadata to add rows per value)"
        )
    private = getattr(model, "privacy_report_", None) is not None
    rng = np.random.default_rng(random_state)

    def seed() -> int:
        return int(rng.integers(2**31 - 1))

    counts = _rows_to_add(model, real, target, strategy, private, seed)
    parts = [
        model.sample(n, conditions={target: value}, random_state=seed())
        for value, n in counts.items()
        if n > 0
    ]
    synthetic = (
        pd.concat(parts, ignore_index=True) if parts else model.sample(1, random_state=0).iloc[:0]
    )
    synthetic = synthetic[list(real.columns)] if not private else synthetic
    synthetic[indicator] = True
    if private:
        synthetic.attrs["privacy_report"] = model.privacy_report()
        return synthetic
    base = real.reset_index(drop=True).copy()
    base[indicator] = False
    out = pd.concat([base, synthetic], ignore_index=True)
    for col in real.columns:  # concat may widen a dtype (e.g. int + empty): restore the real one
        if out[col].dtype != real[col].dtype:
            try:
                out[col] = out[col].astype(real[col].dtype)
            except (TypeError, ValueError):
                pass
    return out


def _rows_to_add(
    model: BaseSynthesizer,
    real: pd.DataFrame,
    target: str,
    strategy: str | Mapping[Any, int],
    private: bool,
    seed: Any,
) -> dict[Any, int]:
    """Rows to add per class: explicit counts, or what balances the classes."""
    spec = model.metadata_[target]
    if spec.kind == "integer":
        # the classes of an integer label: its values (without DP) or its public bounds (DP)
        observed = real[target].dropna().unique()
        span = (
            int(spec.upper) - int(spec.lower) + 1
            if private and spec.lower is not None and spec.upper is not None
            else observed.size
        )
        if span > _MAX_INTEGER_CLASSES:
            raise DataError(
                f"integer target {target!r} has {span} values; augment adds rows per class and "
                f"takes integer targets with at most {_MAX_INTEGER_CLASSES} values (declare a "
                "categorical column)"
            )
    if isinstance(strategy, Mapping):
        if not private:
            known = real[target].dropna().unique().tolist()
        elif spec.kind == "integer":
            known = list(range(int(spec.lower), int(spec.upper) + 1))
        else:
            known = model.transformer_.categories_of(target)
        out = {}
        for value, n in strategy.items():
            if not any(_same(value, k) for k in known):
                raise DataError(
                    f"class {value!r} does not occur in column {target!r}; known classes: "
                    f"{sorted(map(str, known))}"
                )
            if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
                raise DataError(
                    f"rows to add for class {value!r} of {target!r} must be a non-negative int, "
                    f"got {n!r}"
                )
            out[value] = int(n)
        return out
    if strategy != "balance":
        raise DataError(
            f"strategy must be 'balance' or a {{class: n_rows}} mapping, got {strategy!r}"
        )
    if private:
        # shares from the DP model itself and its DP row count: post-processing only
        probe = model.sample(_DP_PROBE_ROWS, random_state=seed())[target]
        shares = probe.value_counts(normalize=True, dropna=True)
        n = float(model.n_rows_fit_)
        have = {v: shares.get(v, 0.0) * n for v in shares.index}
    else:
        have = real[target].value_counts(dropna=True).to_dict()
    if not have:
        raise DataError(f"target column {target!r} has no non-missing value")
    top = max(have.values())
    return {value: int(round(top - c)) for value, c in have.items()}


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


__all__ = ["augment"]
