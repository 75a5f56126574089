"""Input checks, column kinds and the one shared encoding every metric family reads.

Every frame (real, synthetic, holdout) is encoded once: numeric-like columns (continuous, integer,
datetime as seconds since the epoch) into one float matrix with NaN for missing values, and
categorical/boolean columns into integer codes over a vocabulary shared by all frames. Codes are
ranked by real frequency (0 = most frequent real level) and the missing value is its own last code,
so every metric sees the same categories and missing values count as a level where that matters.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError, MetadataError
from tabsynth.metadata import Metadata

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime", "id")
NUMERIC_KINDS = frozenset({"continuous", "integer", "datetime"})
DISCRETE_KINDS = frozenset({"categorical", "boolean"})


def check_frame(df: Any, name: str) -> None:
    """Raise DataError for anything that is not a usable, non-empty table."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 0:
        raise DataError(f"{name} has no columns")
    if df.shape[0] == 0:
        raise DataError(f"{name} is empty (0 rows)")
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if dup:
        raise DataError(f"{name} has duplicate column names: {dup}")


# -- kinds -----------------------------------------------------------------------------------
def _infer_kinds(df: pd.DataFrame) -> tuple[dict[Any, str], dict[Any, str]]:
    """(kinds, datetime formats of text columns) inferred from the real table."""
    kinds, formats = _declared(Metadata.infer(df))
    return {c: kinds[str(c)] for c in df.columns}, {
        c: formats[str(c)] for c in df.columns if str(c) in formats
    }


def _declared(metadata: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(kinds, datetime formats) from a Metadata object or a plain {column: kind} dict."""
    if isinstance(metadata, Mapping):
        items = metadata.items()
    elif hasattr(metadata, "columns") and isinstance(metadata.columns, Mapping):
        items = metadata.columns.items()
    else:
        raise MetadataError(
            f"metadata must be a tabsynth Metadata or a dict {{column: kind}}, "
            f"got {type(metadata).__name__}"
        )
    kinds, formats = {}, {}
    for name, value in items:
        kind = getattr(value, "kind", value)
        if kind not in KINDS:
            raise MetadataError(f"column {name!r}: unknown kind {kind!r}; expected one of {KINDS}")
        kinds[str(name)] = kind
        fmt = getattr(value, "datetime_format", None)
        if fmt:
            formats[str(name)] = fmt
    return kinds, formats


def resolve_kinds(
    real: pd.DataFrame, columns: list, metadata: Any, notes: list[str]
) -> tuple[dict[Any, str], dict[Any, str]]:
    """Kind of every evaluated column: declared first, inferred from the real table otherwise."""
    if metadata is None:
        return _infer_kinds(real[columns])
    kinds_by_name, formats_by_name = _declared(metadata)
    present = {str(c) for c in real.columns}
    unknown = [n for n in kinds_by_name if n not in present]
    if unknown:
        notes.append(f"metadata names columns absent from the real table (ignored): {unknown}")
    kinds = {c: kinds_by_name[str(c)] for c in columns if str(c) in kinds_by_name}
    formats = {c: formats_by_name[str(c)] for c in columns if str(c) in formats_by_name}
    rest = [c for c in columns if c not in kinds]
    if rest:
        inferred, inferred_formats = _infer_kinds(real[rest])
        kinds.update(inferred)
        formats.update(inferred_formats)
    return {c: kinds[c] for c in columns}, formats


# -- encoding --------------------------------------------------------------------------------
@dataclass
class EncodedFrame:
    """One frame in the shared encoding."""

    num: np.ndarray  # (n, n_num) float64, NaN = missing
    cat: np.ndarray  # (n, n_cat) int64, code n_levels[j] = missing

    @property
    def n(self) -> int:
        return self.num.shape[0]


@dataclass
class Encoded:
    """All frames in the shared encoding plus what is needed to read it back."""

    columns: list
    kinds: dict
    num_cols: list
    cat_cols: list
    n_levels: np.ndarray  # per categorical column, non-missing levels (the missing code)
    levels: list  # per categorical column, level values in code order
    frames: dict[str, EncodedFrame] = field(default_factory=dict)

    def position(self, col: Any) -> tuple[str, int]:
        """('num', j) or ('cat', j) for a column."""
        if col in self.num_cols:
            return "num", self.num_cols.index(col)
        return "cat", self.cat_cols.index(col)


def _datetime_seconds(s: pd.Series, fmt: str | None) -> np.ndarray:
    if not pd.api.types.is_datetime64_any_dtype(s.dtype):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # format-inference chatter from pandas
            s = pd.to_datetime(s, format=fmt, errors="coerce", utc=True)
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    seconds = (s - pd.Timestamp(0)) / pd.Timedelta(seconds=1)
    return np.array(seconds.to_numpy(dtype="float64", na_value=np.nan))


def _to_float(s: pd.Series, kind: str, fmt: str | None) -> np.ndarray:
    if kind == "datetime":
        return _datetime_seconds(s, fmt)
    if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype(object)
    out = pd.to_numeric(s, errors="coerce")
    values = pd.Series(out).to_numpy(dtype="float64", na_value=np.nan)
    return np.where(np.isinf(values), np.nan, values)


def encode(
    frames: dict[str, pd.DataFrame],
    kinds: dict,
    formats: dict,
    notes: list[str],
) -> Encoded:
    """Encode every frame over the evaluated (non-id) columns with shared vocabularies."""
    columns = [c for c, k in kinds.items() if k != "id"]
    num_cols = [c for c in columns if kinds[c] in NUMERIC_KINDS]
    cat_cols = [c for c in columns if kinds[c] in DISCRETE_KINDS]
    sizes = {name: len(df) for name, df in frames.items()}

    num = {name: np.empty((n, len(num_cols))) for name, n in sizes.items()}
    for j, col in enumerate(num_cols):
        for name, df in frames.items():
            values = _to_float(df[col], kinds[col], formats.get(col))
            lost = int((np.isnan(values) & df[col].notna().to_numpy()).sum())
            if lost:
                notes.append(
                    f"{name} column {col!r}: {lost} value(s) are not {kinds[col]} values "
                    "(or are infinite) and were treated as missing"
                )
            num[name][:, j] = values

    cat = {name: np.empty((n, len(cat_cols)), dtype=np.int64) for name, n in sizes.items()}
    n_levels, levels = [], []
    names = list(frames)
    bounds = np.cumsum([0] + [sizes[n] for n in names])
    for j, col in enumerate(cat_cols):
        stacked = np.concatenate([frames[n][col].astype(object).to_numpy() for n in names])
        codes, uniques = pd.factorize(stacked, use_na_sentinel=True)
        k = len(uniques)
        # rank levels by real frequency so code 0 is the commonest real level
        real_codes = codes[bounds[0] : bounds[1]]
        counts = np.bincount(real_codes[real_codes >= 0], minlength=k)
        order = np.argsort(-counts, kind="stable")
        rank = np.empty(k, dtype=np.int64)
        rank[order] = np.arange(k)
        codes = np.where(codes >= 0, rank[np.maximum(codes, 0)], k)
        for i, name in enumerate(names):
            cat[name][:, j] = codes[bounds[i] : bounds[i + 1]]
        n_levels.append(k)
        levels.append([uniques[i] for i in order])

    enc = Encoded(
        columns=columns,
        kinds=dict(kinds),
        num_cols=num_cols,
        cat_cols=cat_cols,
        n_levels=np.asarray(n_levels, dtype=np.int64),
        levels=levels,
    )
    enc.frames = {name: EncodedFrame(num=num[name], cat=cat[name]) for name in names}
    return enc


def model_matrix(
    enc: Encoded, frame: EncodedFrame, rows: np.ndarray | None = None, exclude: Any = None
) -> tuple[np.ndarray, np.ndarray, list[int], list[int]]:
    """Float feature matrix for the sklearn models.

    Returns (X, categorical mask for HistGradientBoosting, numeric column indices, categorical
    column indices for one-hot). Categorical codes keep missing as NaN for HistGradientBoosting,
    which handles it natively; codes beyond its 255-bin limit are kept as frequency ranks and
    treated as numeric there.
    """
    num = frame.num if rows is None else frame.num[rows]
    cat = frame.cat if rows is None else frame.cat[rows]
    num_keep = [j for j, c in enumerate(enc.num_cols) if c != exclude]
    cat_keep = [j for j, c in enumerate(enc.cat_cols) if c != exclude]
    cat_f = cat[:, cat_keep].astype(np.float64)
    cat_f[cat[:, cat_keep] == enc.n_levels[cat_keep]] = np.nan
    X = np.hstack([num[:, num_keep], cat_f])
    low_card = enc.n_levels[cat_keep] < 250
    mask = np.concatenate([np.zeros(len(num_keep), dtype=bool), low_card])
    p = len(num_keep)
    return X, mask, list(range(p)), list(range(p, p + len(cat_keep)))
