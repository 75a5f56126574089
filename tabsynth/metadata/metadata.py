"""What each column is, and where each fact about it came from.

The origin of every fact (``declared`` by the user, learned from ``data``, or derived with ``dp``)
is recorded because the differential-privacy path may only use facts that are public or paid for.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from tabsynth._files import atomic_write_bytes
from tabsynth.errors import DataError, MetadataError
from tabsynth.metadata.dtypes import dtype_to_str, is_text_dtype, to_python

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime", "id")
NUMERIC_ENCODERS = ("gmm", "quantile", "minmax")
#: facts whose origin is tracked (the DP path needs them declared or paid for)
TRACKED_FACTS = ("kind", "nullable", "lower", "upper", "categories", "resolution")
_DATETIME_FORMATS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y/%m/%d",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
)
_ID_NAME = re.compile(r"(^id$|_id$|^id_|Id$|ID$|_nbr$|_number$|^uuid)", re.IGNORECASE)
_RESOLUTIONS = (("D", 86_400 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3), ("ns", 1))


@dataclass
class ColumnSpec:
    """Everything the transformer needs to know about one column.

    Bounds of a datetime column are ISO-8601 strings; categories are JSON values (str, int,
    float, bool) in the order of the one-hot encoding.
    """

    name: str
    kind: str
    nullable: bool = False
    dtype: str | None = None
    lower: Any = None
    upper: Any = None
    categories: list | None = None
    ordered: bool = False
    resolution: str | None = None
    timezone: str | None = None
    datetime_format: str | None = None
    encoder: str | None = None
    origin: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise MetadataError(
                f"column {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}"
            )
        if self.encoder is not None and self.encoder not in NUMERIC_ENCODERS:
            raise MetadataError(
                f"column {self.name!r}: unknown encoder {self.encoder!r}; "
                f"expected one of {NUMERIC_ENCODERS}"
            )
        if self.encoder is not None and self.kind not in ("continuous", "integer", "datetime"):
            raise MetadataError(
                f"column {self.name!r}: encoder {self.encoder!r} applies only to numeric or "
                f"datetime columns, not kind {self.kind!r}"
            )

    def is_public(self, fact: str) -> bool:
        """A fact is usable under DP when the user declared it (or a DP mechanism produced it)."""
        return self.origin.get(fact) in ("declared", "dp")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ColumnSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise MetadataError(f"column spec has unknown fields {sorted(unknown)}")
        return cls(**d)


class Metadata:
    """An ordered set of :class:`ColumnSpec`, one per column of the table."""

    def __init__(self, columns: Iterable[ColumnSpec] = (), n_rows: int | None = None) -> None:
        self.columns: dict[str, ColumnSpec] = {}
        for spec in columns:
            if spec.name in self.columns:
                raise MetadataError(f"column {spec.name!r} is declared twice")
            self.columns[spec.name] = spec
        #: a public row count; ``None`` means the row count is private
        self.n_rows = n_rows

    # -- access -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> ColumnSpec:
        try:
            return self.columns[name]
        except KeyError:
            raise MetadataError(f"no column {name!r} in the metadata") from None

    def __contains__(self, name: object) -> bool:
        return name in self.columns

    def __iter__(self) -> Iterator[ColumnSpec]:
        return iter(self.columns.values())

    def __len__(self) -> int:
        return len(self.columns)

    @property
    def names(self) -> list[str]:
        return list(self.columns)

    def names_of(self, *kinds: str) -> list[str]:
        return [s.name for s in self if s.kind in kinds]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metadata) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        rows = ["Metadata(", f"  {'column':<24} {'kind':<12} {'null':<5} {'dtype':<22} detail"]
        for s in self:
            if s.categories is not None:
                shown = ", ".join(map(str, s.categories[:4]))
                more = f", … ({len(s.categories)})" if len(s.categories) > 4 else ""
                detail = f"{{{shown}{more}}}"
            elif s.lower is not None or s.upper is not None:
                detail = f"[{s.lower}, {s.upper}]"
            else:
                detail = ""
            if s.timezone:
                detail += f" tz={s.timezone}"
            rows.append(
                f"  {s.name[:24]:<24} {s.kind:<12} {'yes' if s.nullable else 'no':<5} "
                f"{str(s.dtype)[:22]:<22} {detail}"
            )
        rows.append(")")
        return "\n".join(rows)

    # -- editing ------------------------------------------------------------------------
    def update_column(self, name: str, **facts: Any) -> Metadata:
        """Override facts of one column; every fact given here is recorded as ``declared``."""
        spec = self[name]
        data = spec.to_dict()
        for key, value in facts.items():
            if key in ("name", "origin"):
                raise MetadataError(f"column {name!r}: {key!r} cannot be updated")
            if key not in data:
                raise MetadataError(f"column {name!r}: unknown fact {key!r}")
            if key == "categories" and value is not None:
                value = to_python(value)
            data[key] = value
            data["origin"][key] = "declared"
        if "kind" in facts and facts["kind"] != spec.kind:
            # facts learned for another kind no longer apply
            if facts["kind"] not in ("categorical", "boolean") and "categories" not in facts:
                data["categories"] = None
                data["origin"].pop("categories", None)
            if facts["kind"] not in ("continuous", "integer", "datetime"):
                for key in ("lower", "upper", "encoder"):
                    if key not in facts:
                        data[key] = None
                        data["origin"].pop(key, None)
        self.columns[name] = ColumnSpec.from_dict(data)
        return self

    def declare_public(self, *names: str, category_lists: bool = True) -> Metadata:
        """Declare every fact of the named columns (all columns if none) as public knowledge.

        ``category_lists=False`` leaves the category lists of categorical columns as they are,
        so the ones not declared yet stay private (``dp_domains=True`` derives them with DP).
        """
        for name in names or tuple(self.columns):
            spec = self[name]
            for fact in TRACKED_FACTS:
                if fact == "categories" and spec.kind == "categorical" and not category_lists:
                    continue
                if getattr(spec, fact) is not None or fact in ("kind", "nullable"):
                    spec.origin[fact] = "declared"
        return self

    def public_problems(self) -> list[str]:
        """Facts the DP path needs declared (or DP-derived) but that were learned from data."""
        problems = []
        for s in self:
            need = ["kind", "nullable"]
            if s.kind == "categorical":
                need.append("categories")
            if s.kind in ("continuous", "integer", "datetime"):
                need += ["lower", "upper"]
            if s.kind == "datetime":
                need.append("resolution")
            missing = [f for f in need if not s.is_public(f) or getattr(s, f) is None]
            if missing:
                problems.append(f"{s.name!r}: {', '.join(missing)}")
        return problems

    # -- serialisation --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "format": "tabsynth.metadata/1",
            "n_rows": self.n_rows,
            "columns": [s.to_dict() for s in self],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Metadata:
        if not isinstance(d, dict) or "columns" not in d:
            raise MetadataError("not a tabsynth metadata dictionary (no 'columns' entry)")
        return cls([ColumnSpec.from_dict(c) for c in d["columns"]], n_rows=d.get("n_rows"))

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Metadata:
        try:
            with open(path, encoding="utf-8") as fh:
                return cls.from_dict(json.load(fh))
        except FileNotFoundError:
            raise MetadataError(f"metadata file {str(path)!r} does not exist") from None
        except json.JSONDecodeError as exc:
            raise MetadataError(f"metadata file {str(path)!r} is not valid JSON: {exc}") from None

    # -- inference ------------------------------------------------------------------------
    @classmethod
    def infer(cls, df: pd.DataFrame) -> Metadata:
        """Infer one spec per column.

        Rules, in order: bool/boolean dtype → boolean; datetime dtype → datetime; category dtype →
        categorical; integer dtype → ``id`` when every value is unique and the name looks like an
        identifier, else integer; float → integer when every value is whole (and there are more
        than two), else continuous; text → boolean when the values are booleans, datetime when
        every value parses with one common format, ``id`` when every value is unique and the name
        looks like an identifier (or values are unique strings with digits, e.g. ``P00012``),
        else categorical. Every learned fact gets origin ``data``.
        """
        check_frame(df)
        return cls([_infer_column(df[name], str(name)) for name in df.columns])

    # -- validation -----------------------------------------------------------------------
    def validate(self, df: pd.DataFrame, *, allow_missing: bool = False) -> None:
        """Raise a clear error when the frame does not fit this metadata."""
        check_frame(df)
        names = [str(c) for c in df.columns]
        missing = [n for n in self.columns if n not in names]
        extra = [n for n in names if n not in self.columns]
        if extra or (missing and not allow_missing):
            parts = []
            if missing and not allow_missing:
                parts.append(f"missing from the frame: {missing}")
            if extra:
                parts.append(f"not in the metadata: {extra}")
            raise MetadataError("frame columns differ from the metadata; " + "; ".join(parts))
        for name in names:
            spec = self.columns[name]
            s = df[name]
            if s.isna().all():
                raise DataError(f"column {name!r} has only missing values; drop it or fill it")
            if s.isna().any() and not spec.nullable:
                raise DataError(
                    f"column {name!r} has missing values but its metadata says nullable=False"
                )


def check_frame(df: Any) -> None:
    """Guard rails that apply to any input table."""
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if df.shape[1] == 0:
        raise DataError("the frame has no columns")
    if df.shape[0] == 0:
        raise DataError("the frame is empty (0 rows)")
    dup = df.columns[df.columns.duplicated()].unique().tolist()
    if dup:
        raise DataError(f"duplicate column names: {dup}; rename them so each is unique")
    for name in df.columns:
        if not isinstance(name, str):
            raise DataError(f"column name {name!r} is not a string; rename the columns to strings")
        s = df[name]
        if s.isna().all():
            raise DataError(f"column {name!r} has only missing values; drop it or fill it")
        if pd.api.types.is_float_dtype(s.dtype):
            values = s.to_numpy(dtype="float64", na_value=np.nan)
            n_inf = int(np.isinf(values).sum())
            if n_inf:
                raise DataError(
                    f"column {name!r} has {n_inf} infinite value(s); replace them with a finite "
                    "value or a missing value"
                )


def _mixed_type_error(name: str, s: pd.Series) -> DataError:
    types = s.dropna().map(type).value_counts()
    desc = ", ".join(f"{t.__name__} ({c})" for t, c in types.items())
    return DataError(
        f"column {name!r} mixes value types: {desc}; convert it to one type "
        "(e.g. df[col] = df[col].astype(str))"
    )


def _origin(*facts: str) -> dict[str, str]:
    return {f: "data" for f in facts}


def _as_naive_datetime(s: pd.Series) -> pd.Series:
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        return s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s


def datetime_to_int(s: pd.Series, unit: str) -> np.ndarray:
    """Integer count of ``unit`` since the epoch (UTC for tz-aware columns); NaT → 0."""
    naive = _as_naive_datetime(s)
    arr = naive.to_numpy(dtype=naive.dtype)
    filled = np.where(np.isnat(arr), np.zeros(1, dtype=arr.dtype), arr)
    return filled.astype(f"datetime64[{unit}]").astype(np.int64)


def _infer_datetime(name: str, s: pd.Series, fmt: str | None = None) -> ColumnSpec:
    non_null = s.dropna()
    unit = np.datetime_data(_as_naive_datetime(non_null).dtype)[0]
    ints = datetime_to_int(non_null, unit)
    scale = dict(_RESOLUTIONS)[unit] if unit in dict(_RESOLUTIONS) else 1
    # find the coarsest resolution exactly representing the data, from the column's own unit
    resolution = unit
    for cand, size in _RESOLUTIONS:
        if size >= scale and size % scale == 0 and not np.any(ints % (size // scale)):
            resolution = cand
            break
    lo, hi = non_null.min(), non_null.max()
    tz = str(s.dtype.tz) if isinstance(s.dtype, pd.DatetimeTZDtype) else None
    return ColumnSpec(
        name=name,
        kind="datetime",
        nullable=bool(s.isna().any()),
        dtype=dtype_to_str(s.dtype) if fmt is None else None,
        lower=pd.Timestamp(lo).isoformat(),
        upper=pd.Timestamp(hi).isoformat(),
        resolution=resolution,
        timezone=tz,
        datetime_format=fmt,
        origin=_origin("kind", "nullable", "lower", "upper", "resolution"),
    )


def _parse_datetime_text(values: pd.Series) -> tuple[pd.Series, str] | None:
    """Parse text as datetimes with one common format that writes every value back unchanged."""
    sample = values.iloc[: min(len(values), 200)].astype(str)
    if not sample.str.contains(r"\d", regex=True).all():
        return None
    for fmt in _DATETIME_FORMATS:
        parsed = pd.to_datetime(sample, format=fmt, errors="coerce")
        if parsed.isna().any() or not (parsed.dt.strftime(fmt) == sample).all():
            continue
        full = values.astype(str)
        parsed = pd.to_datetime(full, format=fmt, errors="coerce")
        if parsed.isna().any() or not (parsed.dt.strftime(fmt) == full).all():
            continue
        return parsed, fmt
    return None


def _looks_like_id(name: str, s: pd.Series, n_unique: int, n: int) -> bool:
    return n_unique == n and n >= 2 and bool(_ID_NAME.search(name))


def _infer_column(s: pd.Series, name: str) -> ColumnSpec:
    nullable = bool(s.isna().any())
    dtype = s.dtype
    non_null = s.dropna()
    n, n_unique = len(non_null), int(non_null.nunique())

    if pd.api.types.is_bool_dtype(dtype):
        return ColumnSpec(
            name,
            "boolean",
            nullable,
            dtype_to_str(dtype),
            categories=[False, True],
            origin=_origin("kind", "nullable", "categories"),
        )
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return _infer_datetime(name, s)
    if isinstance(dtype, pd.CategoricalDtype):
        inferred = pd.api.types.infer_dtype(dtype.categories, skipna=True)
        if inferred.startswith("mixed"):
            raise _mixed_type_error(name, pd.Series(dtype.categories))
        return ColumnSpec(
            name,
            "categorical",
            nullable,
            "category",
            categories=to_python(dtype.categories),
            ordered=bool(dtype.ordered),
            origin=_origin("kind", "nullable", "categories"),
        )
    if pd.api.types.is_integer_dtype(dtype):
        if _looks_like_id(name, s, n_unique, n):
            return ColumnSpec(name, "id", nullable, dtype_to_str(dtype), origin=_origin("kind"))
        return ColumnSpec(
            name,
            "integer",
            nullable,
            dtype_to_str(dtype),
            lower=int(non_null.min()),
            upper=int(non_null.max()),
            origin=_origin("kind", "nullable", "lower", "upper"),
        )
    if pd.api.types.is_float_dtype(dtype):
        values = non_null.to_numpy(dtype="float64")
        whole = n_unique > 2 and bool(np.all(values == np.round(values)))
        if whole and _looks_like_id(name, s, n_unique, n):
            return ColumnSpec(name, "id", nullable, dtype_to_str(dtype), origin=_origin("kind"))
        lo, hi = float(values.min()), float(values.max())
        return ColumnSpec(
            name,
            "integer" if whole else "continuous",
            nullable,
            dtype_to_str(dtype),
            lower=int(lo) if whole else lo,
            upper=int(hi) if whole else hi,
            origin=_origin("kind", "nullable", "lower", "upper"),
        )
    if is_text_dtype(dtype):
        inferred = pd.api.types.infer_dtype(non_null, skipna=True)
        if inferred.startswith("mixed") or inferred == "empty":
            if inferred != "empty":
                raise _mixed_type_error(name, non_null)
        if inferred == "boolean":
            return ColumnSpec(
                name,
                "boolean",
                nullable,
                dtype_to_str(dtype),
                categories=[False, True],
                origin=_origin("kind", "nullable", "categories"),
            )
        if inferred in ("datetime", "datetime64", "date"):
            parsed = pd.to_datetime(s)
            spec = _infer_datetime(name, parsed)
            spec.dtype = dtype_to_str(dtype)
            return spec
        if inferred == "string":
            parsed = _parse_datetime_text(non_null)
            if parsed is not None:
                full = pd.Series(pd.NaT, index=s.index, dtype=parsed[0].dtype)
                full[non_null.index] = parsed[0]
                spec = _infer_datetime(name, full, fmt=parsed[1])
                spec.dtype = dtype_to_str(dtype)
                return spec
            if n_unique == n and n >= 2:
                has_digits = bool(non_null.astype(str).str.contains(r"\d", regex=True).all())
                if _looks_like_id(name, s, n_unique, n) or (has_digits and n >= 50):
                    return ColumnSpec(
                        name, "id", nullable, dtype_to_str(dtype), origin=_origin("kind")
                    )
        categories = sorted(to_python(non_null.unique()), key=lambda v: (str(type(v)), v))
        return ColumnSpec(
            name,
            "categorical",
            nullable,
            dtype_to_str(dtype),
            categories=categories,
            origin=_origin("kind", "nullable", "categories"),
        )
    raise DataError(f"column {name!r} has unsupported dtype {dtype}")
