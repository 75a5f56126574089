"""Id columns are not modelled: they are regenerated, unique, in the column's own style."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import SamplingError
from tabsynth.metadata import dtype_from_str
from tabsynth.metadata.dtypes import is_text_dtype
from tabsynth.transform.base import ColumnEncoder

_PATTERN = r"^(?P<prefix>\D*?)(?P<digits>\d+)(?P<suffix>\D*)$"


class IdEncoder(ColumnEncoder):
    """Learns only the *format* of the ids (prefix, digit width, suffix), never their values."""

    def fit(self, s: pd.Series, rng: np.random.Generator) -> IdEncoder:
        self.prefix_, self.suffix_, self.digits_ = "", "", 0
        self.numeric_ = not is_text_dtype(s.dtype)
        if not self.numeric_:
            parts = s.dropna().astype(str).str.extract(_PATTERN)
            if len(parts) and parts["digits"].notna().all():
                prefixes = parts["prefix"].unique()
                suffixes = parts["suffix"].unique()
                widths = parts["digits"].str.len().unique()
                if len(prefixes) == 1 and len(suffixes) == 1:
                    self.prefix_, self.suffix_ = str(prefixes[0]), str(suffixes[0])
                    self.digits_ = int(widths.max()) if len(widths) == 1 else 0
            else:
                self.prefix_ = f"{self.spec.name}_"
        self.fitted_ = True
        return self

    def layout(self) -> list[tuple[str, int, str]]:
        return []

    def transform(self, s: pd.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        self._check_fitted()

    def generate(self, n: int, start: int = 0) -> pd.Series:
        """``n`` unique ids numbered ``start + 1`` … ``start + n`` (chunks stay unique).

        Text ids keep the learned prefix, suffix and digit width (zero-padded; a number with
        more digits than the width is written in full, so ids stay unique). ``SamplingError``
        when the numbers do not fit the column's dtype (never a silent wrap-around).
        """
        self._check_fitted()
        dtype = dtype_from_str(self.spec.dtype) if self.spec.dtype else np.dtype(object)
        top = _largest_id(dtype) if self.numeric_ else _INT64_MAX
        if n and (start < -1 or start + n > top):
            raise SamplingError(
                f"id column {self.spec.name!r} ({dtype}) cannot hold the ids "
                f"{start + 1} to {start + n}: they must lie within 0 to {top}"
            )
        numbers = np.arange(start + 1, start + n + 1, dtype=np.int64)
        if self.numeric_:
            return pd.Series(numbers, name=self.spec.name).astype(dtype)
        text = pd.Series(numbers).astype(str)
        if self.digits_:
            text = text.str.zfill(self.digits_)
        text = self.prefix_ + text + self.suffix_
        return pd.Series(text.to_numpy(dtype=object), name=self.spec.name).astype(dtype)

    def inverse_transform(self, x: np.ndarray, rng: np.random.Generator) -> pd.Series:
        return self.generate(len(x))

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "prefix": self.prefix_,
            "suffix": self.suffix_,
            "digits": self.digits_,
            "numeric": self.numeric_,
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.prefix_ = state["prefix"]
        self.suffix_ = state["suffix"]
        self.digits_ = int(state["digits"])
        self.numeric_ = bool(state["numeric"])
        self.fitted_ = True


_INT64_MAX = int(np.iinfo(np.int64).max)


def _largest_id(dtype: Any) -> int:
    """The largest id number a column of ``dtype`` holds exactly (int64's for anything else)."""
    base = getattr(dtype, "numpy_dtype", dtype)  # nullable Int32 -> int32
    kind = getattr(base, "kind", "")
    if kind in ("i", "u"):
        return min(int(np.iinfo(base).max), _INT64_MAX)
    if kind == "f":
        return 2 ** (int(np.finfo(base).nmant) + 1)  # every integer up to here is exact
    return _INT64_MAX
