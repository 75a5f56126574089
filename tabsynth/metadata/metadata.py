"""What each column is, and where each fact about it came from.

The origin of every fact (``declared`` by the user, learned from ``data``, or derived with ``dp``)
is recorded because the differential-privacy path may only use facts that are public or paid for.
"""

from __future__ import annotations

import decimal
import json
import math
import numbers
import os
import re
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from tabsynth._files import atomic_write_bytes
from tabsynth.errors import DataError, MetadataError
from tabsynth.metadata.dtypes import DECIMAL, dtype_to_str, is_text_dtype, to_python

KINDS = ("continuous", "integer", "categorical", "boolean", "datetime", "id")
NUMERIC_ENCODERS = ("gmm", "quantile", "minmax")
#: facts whose origin is tracked (the DP path needs them declared or paid for; the last four
#: only shape the output and get a data-free default under DP when not declared)
TRACKED_FACTS = (
    "kind",
    "nullable",
    "lower",
    "upper",
    "categories",
    "resolution",
    "dtype",
    "datetime_format",
    "timezone",
    "ordered",
)
ORIGINS = ("declared", "data", "dp", "derived")
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
#: a column of short codes or an id-named column is a key (``id``) when it has at least this
#: many non-null values and this share of them is distinct
ID_MIN_ROWS = 50
ID_UNIQUE_SHARE = 0.95
_KEY_TEXT = r"[A-Za-z0-9_\-.:/#]{1,40}"
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
        self.check()

    def check(self) -> None:
        """Validate (and normalise) the type of every fact, so a wrong one fails here, naming
        the column and the fact, not later inside the transformer or at ``sample``.

        Numpy scalars become Python numbers and datetime bounds become ISO-8601 strings (the
        metadata stays JSON-able).
        """
        if not isinstance(self.name, str):
            raise MetadataError(f"column name {self.name!r} must be a string")
        if not isinstance(self.kind, str) or self.kind not in KINDS:
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
        for fact in ("nullable", "ordered"):
            value = getattr(self, fact)
            if not isinstance(value, (bool, np.bool_)):
                raise MetadataError(
                    f"column {self.name!r}: {fact} must be True or False, got {value!r}"
                )
            setattr(self, fact, bool(value))
        for fact in ("dtype", "timezone", "datetime_format"):
            value = getattr(self, fact)
            if value is not None and not isinstance(value, str):
                raise MetadataError(
                    f"column {self.name!r}: {fact} must be a string or None, got {value!r}"
                )
        if self.resolution is not None and self.resolution not in dict(_RESOLUTIONS):
            raise MetadataError(
                f"column {self.name!r}: resolution must be one of "
                f"{[r for r, _ in _RESOLUTIONS]} or None, got {self.resolution!r}"
            )
        self.lower, self.upper = (self._check_bound(f) for f in ("lower", "upper"))
        if self.lower is not None and self.upper is not None:
            lo, hi = self.lower, self.upper
            if self.kind == "datetime":
                lo, hi = _timestamp(lo, self.name, "lower"), _timestamp(hi, self.name, "upper")
                if (lo.tzinfo is None) != (hi.tzinfo is None):
                    raise MetadataError(
                        f"column {self.name!r}: lower and upper must both have a timezone or "
                        f"neither, got {self.lower!r} and {self.upper!r}"
                    )
            if lo > hi:
                raise MetadataError(
                    f"column {self.name!r}: lower={self.lower!r} is above upper={self.upper!r}"
                )
        if self.categories is not None:
            if isinstance(self.categories, (str, bytes, dict)) or not hasattr(
                self.categories, "__iter__"
            ):
                raise MetadataError(
                    f"column {self.name!r}: categories must be a list of values, got "
                    f"{self.categories!r}"
                )
            cats = to_python(self.categories)
            bad = [v for v in cats if not isinstance(v, (str, int, float, bool))]
            if bad:
                raise MetadataError(
                    f"column {self.name!r}: categories must be strings, numbers or booleans "
                    f"(JSON values), got {bad[:3]!r}"
                )
            keys = [(type(v) is bool, v) for v in cats]
            if len(set(keys)) != len(keys):
                raise MetadataError(f"column {self.name!r}: categories are not unique")
            self.categories = cats
        if not isinstance(self.origin, dict) or any(
            not isinstance(k, str) or v not in ORIGINS for k, v in self.origin.items()
        ):
            raise MetadataError(
                f"column {self.name!r}: origin must map facts to one of {ORIGINS}, got "
                f"{self.origin!r}"
            )

    def _check_bound(self, fact: str) -> Any:
        value = getattr(self, fact)
        if value is None:
            return None
        if self.kind == "datetime":
            if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
                return _timestamp(value, self.name, fact).isoformat()
            if not isinstance(value, str):
                raise MetadataError(
                    f"column {self.name!r}: {fact} of a datetime column must be an ISO-8601 "
                    f"string or a timestamp, got {value!r}"
                )
            _timestamp(value, self.name, fact)
            return value
        if self.kind not in ("continuous", "integer"):
            raise MetadataError(
                f"column {self.name!r}: {fact} applies only to numeric or datetime columns, "
                f"not kind {self.kind!r}"
            )
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise MetadataError(
                f"column {self.name!r}: {fact} must be a number, got {value!r} "
                f"({type(value).__name__})"
            )
        if not math.isfinite(float(value)):
            raise MetadataError(f"column {self.name!r}: {fact} must be finite, got {value!r}")
        return value.item() if isinstance(value, np.generic) else value

    def is_public(self, fact: str) -> bool:
        """A fact is usable under DP when the user declared it (or a DP mechanism produced it)."""
        return self.origin.get(fact) in ("declared", "dp")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ColumnSpec:
        if not isinstance(d, dict):
            raise MetadataError(f"a column spec must be a JSON object, got {d!r}")
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
            if key == "categories" and value is not None and not isinstance(value, (str, dict)):
                value = to_python(value)  # a string is refused by ColumnSpec.check, not split
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

        Warns when a fact it declares was learned from the data (``Metadata.infer``): under
        differential privacy such a fact is published as it is -- the observed min/max, every
        category seen (rare ones included), the dtype -- and is not protected. Declare public
        facts from a codebook instead (``Metadata.from_dict``, ``update_column``).
        """
        learned: list[str] = []
        for name in names or tuple(self.columns):
            spec = self[name]
            facts = []
            for fact in TRACKED_FACTS:
                if fact == "categories" and spec.kind == "categorical" and not category_lists:
                    continue
                if getattr(spec, fact) is not None or fact in ("kind", "nullable"):
                    if spec.origin.get(fact) == "data":
                        facts.append(fact)
                    spec.origin[fact] = "declared"
            if facts:
                learned.append(f"{name!r} ({', '.join(facts)})")
        if learned:
            warnings.warn(
                "declare_public() declares facts learned from the data as public: "
                + "; ".join(learned[:8])
                + (f"; ... ({len(learned)} columns)" if len(learned) > 8 else "")
                + ". Under differential privacy they are published as they are (the observed "
                "min/max, every category seen, the dtype) and are not protected; declare "
                "them from a codebook instead (Metadata.from_dict, update_column)",
                UserWarning,
                stacklevel=2,
            )
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
        if not isinstance(d["columns"], list):
            raise MetadataError("the metadata's 'columns' entry must be a list of column specs")
        for c in d["columns"]:
            if isinstance(c, dict) and "name" not in c:
                raise MetadataError(f"a column spec has no 'name': {c!r}")
        n_rows = d.get("n_rows")
        if n_rows is not None and (
            isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 1
        ):
            raise MetadataError(f"n_rows must be a positive int or null, got {n_rows!r}")
        return cls([ColumnSpec.from_dict(c) for c in d["columns"]], n_rows=n_rows)

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=2).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Metadata:
        try:
            with open(path, encoding="utf-8") as fh:
                return cls.from_dict(json.load(fh))
        except FileNotFoundError:
            raise MetadataError(f"metadata file {str(path)!r} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise MetadataError(f"metadata file {str(path)!r} is not valid JSON: {exc}") from None
        except IsADirectoryError:
            raise MetadataError(f"metadata path {str(path)!r} is a folder, not a file") from None

    # -- inference ------------------------------------------------------------------------
    @classmethod
    def infer(cls, df: pd.DataFrame) -> Metadata:
        """Infer one spec per column.

        Rules, in order: bool/boolean dtype → boolean; datetime dtype → datetime; category dtype →
        categorical; integer dtype → ``id`` when the values are (nearly) all distinct and the
        name looks like an identifier (numbers alone cannot tell a key from a measurement),
        else integer; float → integer when every value is whole (and there
        are more than two), else continuous; ``decimal.Decimal`` values → continuous/integer;
        text → boolean when the values are booleans, datetime when every value parses with one
        common format, ``id`` when the values are (nearly) all distinct and the name looks like
        an identifier or every value is a short code with a digit (``P00012``, ``1000000001``),
        else categorical (free text: its rare values are grouped when the model is fit).
        "Nearly all distinct": at least 95 % distinct over at least 50 values. Every learned
        fact gets origin ``data``.
        """
        check_frame(df)
        specs = [_infer_column(df[name], str(name)) for name in df.columns]
        for spec in specs:  # output facts read from the data too (DP must not trust them)
            for fact in ("dtype", "datetime_format", "timezone", "ordered"):
                if getattr(spec, fact) not in (None, False):
                    spec.origin.setdefault(fact, "data")
        return cls(specs)

    # -- validation -----------------------------------------------------------------------
    def validate(self, df: pd.DataFrame, *, allow_missing: bool = False) -> None:
        """Raise a clear error when the frame does not fit this metadata."""
        check_frame(df)
        for spec in self:  # facts may have been edited in place since they were declared
            spec.check()
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
        if pd.api.types.is_object_dtype(s.dtype):
            _check_cells(name, s)
        if pd.api.types.is_float_dtype(s.dtype):
            values = s.to_numpy(dtype="float64", na_value=np.nan)
            n_inf = int(np.isinf(values).sum())
            if n_inf:
                raise DataError(
                    f"column {name!r} has {n_inf} infinite value(s); replace them with a finite "
                    "value or a missing value"
                )


_CONTAINERS = (list, tuple, dict, set, frozenset, np.ndarray, pd.Series, pd.DataFrame)


def _check_cells(name: str, s: pd.Series) -> None:
    """Object cells must be scalars: containers (lists, dicts, arrays: e.g. nested Parquet
    columns) and raw bytes cannot be modelled and would fail deep inside pandas."""
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if inferred == "bytes":
        raise DataError(
            f"column {name!r} holds bytes values; decode them to text first, e.g. "
            f"df[{name!r}] = df[{name!r}].str.decode('utf-8')"
        )
    if inferred != "mixed":
        return
    kinds = s.dropna().map(type)
    bad = kinds[kinds.map(lambda t: issubclass(t, _CONTAINERS))]
    if len(bad):
        raise DataError(
            f"column {name!r} holds {len(bad)} nested value(s) ({bad.iloc[0].__name__} in a "
            "cell); tabsynth models one scalar per cell: flatten the column into scalar "
            "columns or drop it"
        )


def _timestamp(value: Any, column: str, fact: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise MetadataError(
            f"column {column!r}: {fact}={value!r} is not a date or timestamp ({exc})"
        ) from None
    if ts is pd.NaT:
        raise MetadataError(f"column {column!r}: {fact}={value!r} is not a date or timestamp")
    return ts


def _mixed_type_error(name: str, s: pd.Series) -> DataError:
    types = s.dropna().map(type).value_counts()
    desc = ", ".join(f"{t.__name__} ({c})" for t, c in types.items())
    numeric = all(
        issubclass(t, (numbers.Number, decimal.Decimal)) and not issubclass(t, (bool, np.bool_))
        for t in types.index
    )
    advice = (
        f"df[{name!r}] = pd.to_numeric(df[{name!r}])"
        if numeric
        else f"df[{name!r}] = df[{name!r}].astype(str) if it is a label"
    )
    return DataError(
        f"column {name!r} mixes value types: {desc}; convert it to one type, e.g. {advice}"
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


def object_datetimes(s: pd.Series) -> pd.Series:
    """An object column of ``datetime``/``date`` values as a datetime64 column.

    Dates outside pandas' nanosecond range (years before 1677 or after 2262) are kept at
    microsecond resolution instead of overflowing.
    """
    try:
        return pd.to_datetime(s)
    except (pd.errors.OutOfBoundsDatetime, OverflowError):
        pass
    values = s.to_numpy(dtype=object, na_value=None)
    try:
        return pd.Series(values.astype("datetime64[us]"), index=s.index, name=s.name)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"column {s.name!r}: cannot read its dates ({exc})") from None


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


def _near_unique(n_unique: int, n: int) -> bool:
    """Every value distinct, or (from ``ID_MIN_ROWS`` rows) nearly every one: a few repeated
    keys (data-entry duplicates) must not turn a key into a 5,000-wide category."""
    return n >= 2 and (n_unique == n or (n >= ID_MIN_ROWS and n_unique >= ID_UNIQUE_SHARE * n))


def _looks_like_id(name: str, s: pd.Series, n_unique: int, n: int) -> bool:
    return _near_unique(n_unique, n) and bool(_ID_NAME.search(name))


def _looks_like_key_text(non_null: pd.Series, name: str, n_unique: int, n: int) -> bool:
    """Near-unique short codes (``P00012``, ``1000000001``, ``a7f3-22``): a key, not free text.

    Free text of the same cardinality (it holds spaces, or no digit) stays categorical and goes
    through rare-value grouping instead.
    """
    if not _near_unique(n_unique, n):
        return False
    if _ID_NAME.search(name):
        return True
    if n < ID_MIN_ROWS:
        return False
    text = non_null.astype(str)
    return bool(text.str.fullmatch(_KEY_TEXT).all() and text.str.contains(r"\d").all())


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
        if inferred == "decimal":  # decimal.Decimal values are numbers
            values = non_null.to_numpy(dtype="float64")
            whole = bool(np.all(values == np.round(values)))
            return ColumnSpec(
                name,
                "integer" if whole else "continuous",
                nullable,
                DECIMAL,
                lower=int(values.min()) if whole else float(values.min()),
                upper=int(values.max()) if whole else float(values.max()),
                origin=_origin("kind", "nullable", "lower", "upper"),
            )
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
            parsed = object_datetimes(s)
            spec = _infer_datetime(name, parsed)
            spec.dtype = dtype_to_str(dtype)
            return spec
        if inferred == "string":
            parsed = _parse_datetime_text(non_null)
            if parsed is not None:
                # by position: the frame's index may hold duplicates
                full = pd.Series(pd.NaT, index=range(len(s)), dtype=parsed[0].dtype)
                full.iloc[np.flatnonzero(s.notna().to_numpy())] = parsed[0].to_numpy()
                spec = _infer_datetime(name, full, fmt=parsed[1])
                spec.dtype = dtype_to_str(dtype)
                return spec
            if _looks_like_key_text(non_null, name, n_unique, n):
                return ColumnSpec(name, "id", nullable, dtype_to_str(dtype), origin=_origin("kind"))
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
