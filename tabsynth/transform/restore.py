"""Turn decoded numpy values back into a Series with exactly the column's original dtype."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd

from tabsynth.metadata import ColumnSpec, dtype_from_str
from tabsynth.metadata.dtypes import DECIMAL, is_text_dtype


def _text_series(values: np.ndarray, null: np.ndarray, dtype_name: str, name: str) -> pd.Series:
    dtype = dtype_from_str(dtype_name)
    obj = values.astype(object)
    obj[null] = None
    if isinstance(dtype, pd.StringDtype):
        return pd.Series(pd.array(obj, dtype=dtype), name=name)
    out = pd.Series(obj, dtype=object, name=name)
    if null.any():
        out[null] = np.nan
    return out


def restore_numeric(values: np.ndarray, null: np.ndarray, spec: ColumnSpec) -> pd.Series:
    """Float/int values (already rounded for integers) to the spec's numeric dtype."""
    name = spec.name
    dtype = dtype_from_str(spec.dtype) if spec.dtype else np.dtype("float64")
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        arr = pd.array(values, dtype=dtype)
        if null.any():
            arr[null] = pd.NA
        return pd.Series(arr, name=name)
    if spec.dtype == DECIMAL:  # decimal.Decimal values, exact for the decoded floats
        obj = np.array(
            [None if n else Decimal(repr(v)) for v, n in zip(values.tolist(), null, strict=True)]
        )
        return pd.Series(obj, dtype=object, name=name)
    if is_text_dtype(dtype):  # numbers stored as text
        return _text_series(values, null, spec.dtype, name)
    if np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_):
        if null.any():  # a non-nullable numpy dtype cannot hold missing values
            return pd.Series(np.where(null, np.nan, values), name=name, dtype="float64")
        return pd.Series(values.astype(dtype), name=name)
    out = values.astype(dtype)
    if null.any():
        out[null] = np.nan
    return pd.Series(out, name=name)


def restore_datetime(ints: np.ndarray, null: np.ndarray, spec: ColumnSpec) -> pd.Series:
    """Integers in ``spec.resolution`` units since the epoch to the original datetime dtype."""
    name = spec.name
    stamps = ints.astype(np.int64).astype(f"datetime64[{spec.resolution}]")
    if spec.datetime_format is not None:  # a text column holding dates
        text = pd.Series(stamps).dt.strftime(spec.datetime_format).to_numpy(dtype=object)
        return _text_series(text, null, spec.dtype or "object", name)
    dtype = dtype_from_str(spec.dtype)
    if isinstance(dtype, pd.DatetimeTZDtype):
        naive = np.datetime64("NaT", dtype.unit)
        arr = stamps.astype(f"datetime64[{dtype.unit}]")
        arr[null] = naive
        return pd.Series(arr, name=name).dt.tz_localize("UTC").dt.tz_convert(dtype.tz)
    arr = stamps.astype(dtype)
    arr[null] = np.datetime64("NaT")
    return pd.Series(arr, name=name)


def restore_categories(
    codes: np.ndarray, categories: list, null: np.ndarray, spec: ColumnSpec
) -> pd.Series:
    """Category positions to values, in the column's dtype (category, bool, text, numbers)."""
    name = spec.name
    dtype_name = spec.dtype or "object"
    if dtype_name == "category":
        cat_dtype = pd.CategoricalDtype(pd.Index(categories), ordered=spec.ordered)
        safe = np.where(null, -1, codes)
        return pd.Series(pd.Categorical.from_codes(safe, dtype=cat_dtype), name=name)
    lookup = np.empty(len(categories), dtype=object)
    lookup[:] = categories
    values = lookup[np.where(null, 0, codes)] if len(categories) else np.full(len(codes), None)
    dtype = dtype_from_str(dtype_name)
    if is_text_dtype(dtype):
        return _text_series(values, null, dtype_name, name)
    if isinstance(dtype, pd.api.extensions.ExtensionDtype):
        arr = pd.array(values.tolist(), dtype=dtype)
        if null.any():
            arr[null] = pd.NA
        return pd.Series(arr, name=name)
    if null.any():
        if np.issubdtype(dtype, np.floating):
            out = np.where(null, np.nan, values).astype(dtype)
            return pd.Series(out, name=name)
        out = values.copy()
        out[null] = np.nan
        return pd.Series(out, name=name, dtype=object)
    return pd.Series(values.astype(dtype), name=name)
