"""Categorical and boolean columns: one-hot over a known domain, with null and ``other`` slots."""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError
from tabsynth.metadata import ColumnSpec
from tabsynth.metadata.dtypes import to_python
from tabsynth.transform.base import SOFTMAX, ColumnEncoder, argmax_rows
from tabsynth.transform.restore import restore_categories

OTHER = "__other__"


class RareValuesWarning(UserWarning):
    """Rare values of a categorical column were grouped into its ``other`` slot."""


#: the default rare-value threshold: in a column of more than 50 distinct values, the values
#: seen fewer than max(5, 0.1 % of rows) times share one slot
AUTO = "auto"
AUTO_MIN_COUNT = 5
AUTO_SHARE = 0.001
AUTO_MIN_DISTINCT = 50


def resolve_rare_threshold(
    rare_threshold: Any, n_rows: int, n_distinct: int | None = None
) -> float:
    """The minimum count a categorical value needs to keep its own one-hot slot.

    ``"auto"``: ``max(5, ceil(0.1 % of the rows))`` in a column of more than 50 distinct
    values (a narrower column gains nothing from grouping: every value keeps its slot); a share
    in (0, 1): that share of the rows; a number >= 1: that count; ``None`` or 0: no grouping.
    """
    if rare_threshold is None:
        return 0.0
    if isinstance(rare_threshold, str):
        if rare_threshold != AUTO:
            raise DataError(
                f"rare_threshold must be 'auto', None or a non-negative number, "
                f"got {rare_threshold!r}"
            )
        if n_distinct is not None and n_distinct <= AUTO_MIN_DISTINCT:
            return 0.0
        return float(max(AUTO_MIN_COUNT, math.ceil(AUTO_SHARE * n_rows)))
    if (
        isinstance(rare_threshold, (bool, np.bool_))
        or not isinstance(rare_threshold, numbers.Real)
        or not math.isfinite(float(rare_threshold))
        or rare_threshold < 0
    ):
        raise DataError(
            f"rare_threshold must be 'auto', None or a non-negative number, got {rare_threshold!r}"
        )
    limit = float(rare_threshold)
    return limit * n_rows if limit < 1 else limit


class CategoricalEncoder(ColumnEncoder):
    """One-hot encoding of the column's domain.

    The domain is what occurs in the data, or what the user declared (declared values keep a
    slot even when absent, so a declared ``[False, True]`` can still produce ``False``).
    ``rare_threshold`` (see :func:`resolve_rare_threshold`; categorical columns only) groups the
    values seen fewer times into one ``other`` slot, counted per value: decoding turns
    ``other`` back into one of the grouped values drawn by its training frequency. So a
    free-text or high-cardinality column costs a narrow one-hot instead of refusing the fit.
    ``unseen="error"`` rejects values outside the domain at transform time; ``unseen="other"``
    maps them to the ``other`` slot. ``max_categories`` bounds the kept width.
    """

    def __init__(
        self,
        spec: ColumnSpec,
        rare_threshold: Any = AUTO,
        unseen: str = "error",
        max_categories: int = 1000,
    ) -> None:
        super().__init__(spec)
        self.rare_threshold = rare_threshold
        self.unseen = unseen
        self.max_categories = max_categories
        if unseen not in ("error", "other"):
            raise DataError(f"column {spec.name!r}: unseen must be 'error' or 'other'")

    def _domain(self, s: pd.Series) -> list:
        spec = self.spec
        if spec.categories is not None:
            return list(spec.categories)
        if spec.kind == "boolean":
            return [False, True]
        values = s.dropna().unique()
        return sorted(to_python(values), key=lambda v: (str(type(v)), v))

    def fit(self, s: pd.Series, rng: np.random.Generator) -> CategoricalEncoder:
        spec = self.spec
        domain = self._domain(s)
        codes = self._codes(s, domain, allow_unseen=False)
        counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.float64)
        occurs = counts > 0
        if spec.origin.get("categories") != "declared":
            # a learned domain is what occurs: a constant True column has no False slot, and a
            # category dtype with 10,000 levels of which 50 occur is 50 wide (the dtype's
            # levels are still restored on decoding)
            domain = [c for c, o in zip(domain, occurs, strict=True) if o]
            counts = counts[occurs]
        keep = np.ones(len(domain), dtype=bool)
        limit = 0.0
        if spec.kind == "categorical":
            limit = resolve_rare_threshold(
                self.rare_threshold, int(counts.sum()), int((counts > 0).sum())
            )
            keep = (counts >= limit) | (counts == 0)  # declared absent values keep their slot
        if keep.sum() > self.max_categories:
            raise DataError(
                f"column {spec.name!r} has {int(keep.sum())} distinct values seen at least "
                f"{max(limit, 1):g} times over {int(counts.sum())} rows; a one-hot encoding "
                f"would be {int(keep.sum())} wide (max_categories={self.max_categories}). "
                "Group more values (a larger rare_threshold=..., e.g. rare_threshold=0.01 for "
                "values under 1 % of rows; --rare-threshold on the command line), declare it "
                "kind='id' if it identifies rows, or drop the column"
            )
        self.categories_ = [c for c, k in zip(domain, keep, strict=True) if k]
        self.other_members_ = [c for c, k in zip(domain, keep, strict=True) if not k]
        other_counts = counts[~keep]
        self.other_probs_ = (
            (other_counts / other_counts.sum()).tolist() if len(other_counts) else []
        )
        self.has_other_ = bool(len(self.other_members_)) or self.unseen == "other"
        if self.other_members_:
            warnings.warn(
                f"column {spec.name!r}: {len(self.other_members_)} of {len(domain)} distinct "
                f"values are seen fewer than {limit:g} times; they share one 'other' slot and "
                "are sampled back by their frequency (rare_threshold=None keeps every value)",
                RareValuesWarning,
                stacklevel=2,
            )
        self.fitted_ = True
        return self

    def fit_public(self) -> CategoricalEncoder:
        """Use only the declared domain (DP path): values outside it map to the ``other`` slot."""
        self.categories_ = self._domain(pd.Series([], dtype=object))
        if self.spec.kind == "categorical" and self.spec.categories is None:
            raise DataError(f"column {self.spec.name!r}: declare its categories")
        self.other_members_, self.other_probs_ = [], []
        self.has_other_ = True
        self.unseen = "other"
        self.fitted_ = True
        return self

    def _codes(self, s: pd.Series, domain: list, allow_unseen: bool) -> np.ndarray:
        """Position of each value in ``domain``; -1 for nulls, -2 for unseen values."""
        spec = self.spec
        null = self._null_mask(s)
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = to_python(s.cat.categories)
            mapping = pd.Index(domain, dtype=object).get_indexer(pd.Index(cats, dtype=object))
            raw = s.cat.codes.to_numpy()
            codes = np.where(raw >= 0, mapping[raw], -1)
        else:
            values = s.to_numpy(dtype=object, na_value=None)
            codes = pd.Index(domain, dtype=object).get_indexer(pd.Index(values, dtype=object))
        codes = np.where(null, -1, codes)
        unseen = (codes < 0) & ~null
        if unseen.any():
            if not allow_unseen:
                bad = pd.unique(s[unseen])[:5].tolist()
                raise DataError(
                    f"column {spec.name!r} has {int(unseen.sum())} value(s) outside its "
                    f"category domain, e.g. {bad}; add them to the metadata's categories or "
                    "encode with unseen='other'"
                )
            codes = np.where(unseen, -2, codes)
        return codes

    def layout(self) -> list[tuple[str, int, str]]:
        self._check_fitted()
        return [("category", self.width_, SOFTMAX)]

    @property
    def width_(self) -> int:
        return len(self.categories_) + int(self.has_other_) + int(self.spec.nullable)

    @property
    def other_position_(self) -> int | None:
        return len(self.categories_) if self.has_other_ else None

    @property
    def null_position_(self) -> int | None:
        return self.width_ - 1 if self.spec.nullable else None

    def transform(self, s: pd.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        self._check_fitted()
        full = self.categories_ + self.other_members_
        codes = self._codes(s, full, allow_unseen=self.unseen == "other")
        n_keep = len(self.categories_)
        pos = codes.copy()
        if self.has_other_:
            pos[(codes >= n_keep) | (codes == -2)] = n_keep
        if self.spec.nullable:
            pos[codes == -1] = self.null_position_
        out[np.arange(len(pos)), pos] = 1

    def inverse_transform(self, x: np.ndarray, rng: np.random.Generator) -> pd.Series:
        self._check_fitted()
        pos = argmax_rows(x)
        null = (
            pos == self.null_position_
            if self.null_position_ is not None
            else np.zeros(len(pos), bool)
        )
        codes = np.where(null, 0, pos)
        if self.has_other_:
            is_other = pos == self.other_position_
            if is_other.any() and self.other_members_:
                draw = rng.choice(len(self.other_members_), is_other.sum(), p=self.other_probs_)
                codes[is_other] = len(self.categories_) + draw
            elif is_other.any():  # no known member (public domain): a uniform domain value
                codes[is_other] = rng.integers(0, len(self.categories_), is_other.sum())
        values = self.categories_ + self.other_members_
        if self.spec.dtype == "category" and self.spec.categories is not None:
            # keep the column's full categorical dtype (including unused categories)
            index = pd.Index(self.spec.categories, dtype=object)
            codes = np.where(null, -1, index.get_indexer(pd.Index(values, dtype=object))[codes])
            return restore_categories(codes, list(self.spec.categories), null, self.spec)
        return restore_categories(codes, values, null, self.spec)

    def position(self, value: Any) -> int:
        """Index of ``value`` inside this column's one-hot span."""
        self._check_fitted()
        if value is None or (isinstance(value, float) and np.isnan(value)):
            if self.null_position_ is None:
                raise DataError(f"column {self.spec.name!r} has no missing values")
            return self.null_position_
        value = to_python([value])[0]
        for i, c in enumerate(self.categories_):
            if c == value and _same_family(c, value):
                return i
        if value in self.other_members_:
            return self.other_position_  # type: ignore[return-value]
        raise DataError(
            f"value {value!r} is not in the domain of column {self.spec.name!r} "
            f"(known: {self.categories_[:10]}{' …' if len(self.categories_) > 10 else ''})"
        )

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "categories": self.categories_,
            "other_members": self.other_members_,
            "other_probs": self.other_probs_,
            "has_other": self.has_other_,
            "unseen": self.unseen,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.categories_ = list(state["categories"])
        self.other_members_ = list(state["other_members"])
        self.other_probs_ = list(state["other_probs"])
        self.has_other_ = bool(state["has_other"])
        self.unseen = state["unseen"]
        self.fitted_ = True


def _same_family(a: Any, b: Any) -> bool:
    """1 == 1.0 == True in Python; a category match must not confuse bools with numbers."""
    return isinstance(a, bool) == isinstance(b, bool)
