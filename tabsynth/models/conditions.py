"""Conditional sampling that always holds, for every model.

A model with a ``_sample_exact(k, conditions, generator)`` method (ARGN) produces rows that meet
the conditions by construction; they are checked, never rejected. For the others:

Requests are grouped by distinct condition; for each group the model is asked for rows (with
its categorical conditions passed as a *hint*, which CTGAN turns into its conditional vector so
almost every row already matches) and rows that miss any condition are rejected, vectorised.
A bounded budget stops hopeless requests with a ``SamplingError`` that says how many rows were
produced and the acceptance rate: fewer rows are never returned silently.

Condition values:

* categorical / boolean column: a value of its domain, or ``None`` for "missing" (nullable only);
* integer column: a value, or an inclusive ``(low, high)`` range (either end may be ``None``);
* continuous / datetime column: an inclusive ``(low, high)`` range (equality is never hit);
* in a DataFrame of per-row conditions a missing cell means "no condition on that column".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tabsynth._lazy import torch
from tabsynth._params import check_int
from tabsynth.errors import DataError, SamplingError

if TYPE_CHECKING:  # annotations only: base imports this module
    from tabsynth.models.base import BaseSynthesizer

#: generate at most this many rows per requested row (and at least ``MIN_BUDGET``) per condition
MAX_TRIES = 100
MIN_BUDGET = 10_000
_CATEGORICAL = ("categorical", "boolean")
_RANGE_KINDS = ("continuous", "integer", "datetime")


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _check_n_rows(model: BaseSynthesizer, n_rows: Any) -> int:
    """A positive int whose rows fit in memory (checked before anything is allocated)."""
    check_int("n_rows", n_rows, error=SamplingError)
    model._check_sample_size(int(n_rows))
    return int(n_rows)


class _Condition:
    """One validated condition on one column: ``mask(series)`` says which rows satisfy it."""

    def __init__(self, model: BaseSynthesizer, column: Any, value: Any) -> None:
        meta = model.metadata_
        if column not in meta.columns:
            raise SamplingError(
                f"unknown condition column {column!r}; the model's columns are {meta.names}"
            )
        spec = meta[column]
        self.column, self.kind, self.value = column, spec.kind, value
        self.datetime_format = spec.datetime_format if spec.kind == "datetime" else None
        self.hint = False
        if spec.kind == "id":
            raise SamplingError(f"column {column!r} is an id column; it cannot be conditioned on")
        if _is_missing(value):
            if not spec.nullable:
                raise SamplingError(
                    f"condition {column!r} = missing is outside the domain: the column has no "
                    "missing values"
                )
            self.op = "missing"
            return
        if spec.kind in _CATEGORICAL:
            if isinstance(value, (tuple, list, set, dict)):
                raise SamplingError(
                    f"condition on categorical column {column!r} must be one value, got {value!r}"
                )
            try:
                model.transformer_.category_position(column, value)
            except (DataError, KeyError, ValueError) as exc:
                raise SamplingError(
                    f"condition {column!r} = {value!r} is outside the column's domain "
                    f"{spec.categories}"
                ) from exc
            self.op, self.hint = "equal", True
            return
        if isinstance(value, (tuple, list)):
            if len(value) != 2:
                raise SamplingError(
                    f"range condition on {column!r} must be (low, high), got {value!r}"
                )
            low, high = (self._bound(spec, v) for v in value)
            if low is not None and high is not None and low > high:
                raise SamplingError(f"range condition on {column!r} has low > high: {value!r}")
            self._check_domain(spec, low, high)
            self.op, self.low, self.high = "range", low, high
            return
        if spec.kind == "integer":
            v = self._bound(spec, value)
            if float(v) != math.floor(float(v)):
                raise SamplingError(f"condition {column!r} = {value!r}: the column holds integers")
            self._check_domain(spec, v, v)
            self.op, self.low, self.high = "range", v, v
            return
        raise SamplingError(
            f"condition on {spec.kind} column {column!r} needs an inclusive (low, high) range, "
            f"got {value!r}"
        )

    @staticmethod
    def _bound(spec: Any, v: Any) -> Any:
        if _is_missing(v):
            return None
        if spec.kind == "datetime":
            try:
                return pd.Timestamp(v)
            except (TypeError, ValueError) as exc:
                raise SamplingError(f"condition on {spec.name!r}: {v!r} is not a date") from exc
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.number)):
            raise SamplingError(f"condition on {spec.name!r}: {v!r} is not a number")
        return v

    def _check_domain(self, spec: Any, low: Any, high: Any) -> None:
        lower = self._bound(spec, spec.lower) if spec.lower is not None else None
        upper = self._bound(spec, spec.upper) if spec.upper is not None else None
        try:
            outside = (high is not None and lower is not None and _lt(high, lower)) or (
                low is not None and upper is not None and _lt(upper, low)
            )
        except TypeError:  # tz-aware vs naive bounds: let rejection decide
            outside = False
        if outside:
            raise SamplingError(
                f"condition on {spec.name!r} ({low!r}, {high!r}) is outside the column's domain "
                f"[{spec.lower!r}, {spec.upper!r}]"
            )

    def mask(self, s: pd.Series) -> np.ndarray:
        if self.op == "missing":
            return s.isna().to_numpy(dtype=bool)
        if self.op == "equal":
            return s.isin([self.value]).to_numpy(dtype=bool)
        ok = np.array(s.notna(), dtype=bool)  # a copy: pandas may hand out read-only views
        low, high = self.low, self.high
        if self.kind == "datetime":
            if self.datetime_format is not None:  # dates stored as text in the user's format
                s = pd.to_datetime(s, format=self.datetime_format, errors="coerce")
            low, high = _align_tz(s, low), _align_tz(s, high)
        if low is not None:
            ok &= s.ge(low).fillna(False).to_numpy(dtype=bool)
        if high is not None:
            ok &= s.le(high).fillna(False).to_numpy(dtype=bool)
        return ok

    def describe(self) -> str:
        if self.op == "missing":
            return f"{self.column} is missing"
        if self.op == "equal":
            return f"{self.column} == {self.value!r}"
        return f"{self.low!r} <= {self.column} <= {self.high!r}"


def _lt(a: Any, b: Any) -> bool:
    return bool(a < b)


def _align_tz(s: pd.Series, ts: Any) -> Any:
    if ts is None or not isinstance(ts, pd.Timestamp):
        return ts
    tz = getattr(s.dt, "tz", None)
    if tz is not None and ts.tzinfo is None:
        return ts.tz_localize(tz)
    if tz is None and ts.tzinfo is not None:
        return ts.tz_convert(None)
    return ts


def _parse(
    model: BaseSynthesizer, conditions: Any, n_rows: Any
) -> tuple[int, list[tuple[np.ndarray, list]]]:
    """→ (total rows, [(row positions, [_Condition, ...]), ...]) one entry per distinct request."""
    if isinstance(conditions, dict):
        n = _check_n_rows(model, n_rows)
        if not conditions:
            return n, [(np.arange(n), [])]
        conds = [_Condition(model, col, val) for col, val in conditions.items()]
        return n, [(np.arange(n), conds)]
    if isinstance(conditions, pd.DataFrame):
        n = len(conditions)
        if n == 0:
            raise SamplingError("the conditions DataFrame has no rows; nothing to sample")
        if n_rows is not None and not (
            isinstance(n_rows, (int, np.integer)) and not isinstance(n_rows, bool) and n_rows == n
        ):
            raise SamplingError(
                f"n_rows={n_rows!r} disagrees with the {n} rows of the conditions DataFrame; "
                "pass n_rows=None (one synthetic row per row of conditions)"
            )
        unknown = [c for c in conditions.columns if c not in model.metadata_.columns]
        if unknown:
            raise SamplingError(
                f"unknown condition column(s) {unknown}; the model's columns are "
                f"{model.metadata_.names}"
            )
        cols = list(conditions.columns)
        codes = np.empty((n, len(cols)), dtype=np.int64)
        for j, col in enumerate(cols):
            codes[:, j], _ = pd.factorize(conditions[col].astype(object), use_na_sentinel=True)
        _, first, inverse = np.unique(codes, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(len(first) + 1))
        groups = []
        for k, row in enumerate(first):  # one iteration per DISTINCT condition, not per row
            values = conditions.iloc[int(row)]
            conds = [
                _Condition(model, col, values[col])
                for j, col in enumerate(cols)
                if codes[row, j] != -1
            ]
            groups.append((order[bounds[k] : bounds[k + 1]], conds))
        return n, groups
    if conditions is None:
        n = _check_n_rows(model, n_rows)
        return n, [(np.arange(n), [])]
    raise SamplingError(
        f"conditions must be None, a dict or a DataFrame, got {type(conditions).__name__}"
    )


def _sample_group(
    model: BaseSynthesizer, k: int, conds: list[_Condition], generator: torch.Generator
) -> tuple[pd.DataFrame, int, int]:
    """``k`` rows meeting every condition, the rows generated, and how many of those matched."""
    hint = {c.column: c.value for c in conds if c.hint} or None
    if not conds:
        return model._generate_frame(k, None, generator), k, k
    exact = getattr(model, "_sample_exact", None)
    if exact is not None:  # the model meets the conditions by construction (ARGN): no rejection
        try:
            frame = exact(k, conds, generator)
        except SamplingError:  # proved impossible before generating anything
            model.last_sample_stats_ = {
                "requested": k,
                "produced": 0,
                "generated": 0,
                "acceptance_rate": 0.0,
                "matched": 0,
            }
            raise
        ok = np.ones(len(frame), dtype=bool)
        for c in conds:
            ok &= c.mask(frame[c.column])
        if len(frame) != k or not ok.all():
            raise SamplingError(
                f"internal: {type(model).__name__} returned {int((~ok).sum())} of {k} rows that "
                f"miss {' and '.join(c.describe() for c in conds)}"
            )
        return frame, k, k
    budget = max(MAX_TRIES * k, MIN_BUDGET)
    kept: list[pd.DataFrame] = []
    n_kept = generated = 0
    rate = 1.0
    while n_kept < k and generated < budget:
        want = math.ceil((k - n_kept) / max(rate, 1e-3) * 1.1) + 16
        size = int(min(want, budget - generated, model._sample_chunk))
        frame = model._generate_frame(size, hint, generator)
        ok = np.ones(len(frame), dtype=bool)
        for c in conds:
            ok &= c.mask(frame[c.column])
        generated += size
        if ok.any():
            kept.append(frame.loc[ok])
            n_kept += int(ok.sum())
        rate = n_kept / generated
    if n_kept < k:
        model.last_sample_stats_ = {
            "requested": k,
            "produced": n_kept,
            "generated": generated,
            "acceptance_rate": rate,
            "matched": n_kept,
        }
        raise SamplingError(
            f"could only produce {n_kept} of {k} rows satisfying "
            f"{' and '.join(c.describe() for c in conds)} after generating {generated} rows "
            f"(acceptance rate {rate:.4%}); the condition is too rare for this model"
        )
    return pd.concat(kept, ignore_index=True).iloc[:k], generated, n_kept


def sample_with_conditions(
    model: BaseSynthesizer, n_rows: Any, conditions: Any, generator: torch.Generator
) -> pd.DataFrame:
    """Sample ``model`` (fitted ``BaseSynthesizer``) so that every row meets its condition."""
    n, groups = _parse(model, conditions, n_rows)
    frames, positions = [], []
    generated = matched = 0
    for pos, conds in groups:
        try:
            frame, used, ok = _sample_group(model, len(pos), conds, generator)
        except SamplingError:
            stats = model.last_sample_stats_
            stats["requested"] = n
            stats["produced"] += sum(len(p) for p in positions)
            stats["generated"] += generated
            stats["acceptance_rate"] = (stats.pop("matched") + matched) / max(stats["generated"], 1)
            raise
        frames.append(frame)
        positions.append(pos)
        generated += used
        matched += ok
    model.last_sample_stats_ = {
        "requested": n,
        "produced": n,
        "generated": generated,
        "acceptance_rate": matched / generated if generated else 1.0,
    }
    if len(frames) == 1:
        out = frames[0]
        if not np.array_equal(positions[0], np.arange(n)):
            out = out.iloc[np.argsort(positions[0], kind="stable")]
        return out.reset_index(drop=True)
    out = pd.concat(frames, ignore_index=True)
    return out.iloc[np.argsort(np.concatenate(positions), kind="stable")].reset_index(drop=True)
