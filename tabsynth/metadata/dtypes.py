"""Portable dtype names: pandas 2 and 3 spell string dtypes differently, so we name them ourselves."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_PANDAS3 = int(pd.__version__.split(".")[0]) >= 3
#: an object column of ``decimal.Decimal`` values: modelled as numbers, restored as Decimals
DECIMAL = "decimal"


def dtype_to_str(dtype: Any) -> str:
    """Name a dtype so that ``dtype_from_str`` rebuilds it on pandas 2.2+ and 3.x."""
    if isinstance(dtype, pd.StringDtype):
        na_value = getattr(dtype, "na_value", pd.NA)
        if na_value is np.nan or (isinstance(na_value, float) and np.isnan(na_value)):
            return "str"
        return f"string[{dtype.storage}]"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    return str(dtype)


def dtype_from_str(name: str) -> Any:
    """Rebuild a dtype named by :func:`dtype_to_str` (categories are restored separately)."""
    if name == "str":
        if _PANDAS3:
            return pd.StringDtype(na_value=np.nan)
        return np.dtype(object)
    if name.startswith("string["):
        return pd.StringDtype(name[len("string[") : -1])
    if name == "category":
        return "category"
    if name == DECIMAL:
        return np.dtype(object)
    return pd.api.types.pandas_dtype(name)


def is_text_dtype(dtype: Any) -> bool:
    """True for object and every string dtype (numpy object, python/pyarrow string, pandas 3 str)."""
    return pd.api.types.is_object_dtype(dtype) or isinstance(dtype, pd.StringDtype)


def to_python(values: Any) -> list:
    """Turn numpy scalars into JSON-able Python values, keeping int/float/bool/str apart."""
    out = []
    for v in list(values):
        if isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, pd.Timestamp):
            v = v.isoformat()
        out.append(v)
    return out
