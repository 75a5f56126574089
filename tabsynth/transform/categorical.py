"""Categorical and boolean columns: one-hot over a known domain, with null and ``other`` slots."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError
from tabsynth.metadata import ColumnSpec
from tabsynth.metadata.dtypes import to_python
from tabsynth.transform.base import SOFTMAX, ColumnEncoder, argmax_rows
from tabsynth.transform.restore import restore_categories

OTHER = "__other__"


class CategoricalEncoder(ColumnEncoder):
    """One-hot encoding of the column's domain.

    ``rare_threshold`` (a share in (0, 1) or a count >= 1) groups rare categories into one
    ``other`` slot; on decoding, ``other`` becomes one of the grouped categories drawn by their
    training frequency. ``unseen="error"`` rejects values outside the domain at transform time;
    ``unseen="other"`` maps them to the ``other`` slot.
    """

    def __init__(
        self,
        spec: ColumnSpec,
        rare_threshold: float | None = None,
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
        if spec.kind == "boolean":
            return [False, True]
        if spec.categories is not None:
            return list(spec.categories)
        values = s.dropna().unique()
        return sorted(to_python(values), key=lambda v: (str(type(v)), v))

    def fit(self, s: pd.Series, rng: np.random.Generator) -> CategoricalEncoder:
        spec = self.spec
        domain = self._domain(s)
        non_null = s.dropna()
        if len(domain) > self.max_categories or (
            len(non_null) >= 50 and len(domain) > 0.9 * len(non_null) and len(domain) > 20
        ):
            raise DataError(
                f"column {spec.name!r} has {len(domain)} distinct values over {len(non_null)} "
                f"rows; a one-hot encoding would be {len(domain)} wide. Declare it "
                f"kind='id' if it identifies rows, or group rare values (rare_threshold=...)"
            )
        codes = self._codes(s, domain, allow_unseen=False)
        counts = np.bincount(codes[codes >= 0], minlength=len(domain)).astype(np.float64)
        keep = np.ones(len(domain), dtype=bool)
        if self.rare_threshold is not None:
            limit = self.rare_threshold
            limit = limit * counts.sum() if limit < 1 else limit
            keep = counts >= limit
        self.categories_ = [c for c, k in zip(domain, keep, strict=True) if k]
        self.other_members_ = [c for c, k in zip(domain, keep, strict=True) if not k]
        other_counts = counts[~keep]
        self.other_probs_ = (
            (other_counts / other_counts.sum()).tolist()
            if other_counts.sum() > 0
            else [1.0 / max(len(other_counts), 1)] * len(other_counts)
        )
        self.has_other_ = bool(len(self.other_members_)) or self.unseen == "other"
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
        null = s.isna().to_numpy()
        if null.any() and not spec.nullable:
            raise DataError(
                f"column {spec.name!r} has {int(null.sum())} missing value(s) but was fitted "
                "as not nullable"
            )
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
