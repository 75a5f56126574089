"""The column-encoder contract shared by every transformer."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from tabsynth.errors import DataError, NotFittedError
from tabsynth.metadata import ColumnSpec

TANH = "tanh"
SOFTMAX = "softmax"


@dataclass(frozen=True)
class Span:
    """A slice of the encoded matrix that a model must produce with one activation.

    ``activation`` is ``"tanh"`` for a width-1 scalar or ``"softmax"`` for a one-hot group;
    ``role`` says what the slice holds: ``value``, ``mode``, ``category`` or ``null``.
    """

    column: str
    role: str
    start: int
    width: int
    activation: str

    @property
    def stop(self) -> int:
        return self.start + self.width

    def to_dict(self) -> dict:
        return asdict(self)


class ColumnEncoder:
    """Encode one column into float columns and back.

    Subclasses implement ``fit``, ``transform``, ``inverse_transform``, ``layout`` (a list of
    ``(role, width, activation)``) and the JSON state ``get_state`` / ``set_state``.
    """

    kind_name: ClassVar[str] = ""

    def __init__(self, spec: ColumnSpec) -> None:
        self.spec = spec
        self.fitted_ = False

    # contract ---------------------------------------------------------------------------
    def fit(self, s: pd.Series, rng: np.random.Generator) -> ColumnEncoder:
        raise NotImplementedError

    def transform(self, s: pd.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        """Write the encoding of ``s`` into ``out``, a zero-filled view of shape ``(len(s), width)``."""
        raise NotImplementedError

    def inverse_transform(self, x: np.ndarray, rng: np.random.Generator) -> pd.Series:
        raise NotImplementedError

    def layout(self) -> list[tuple[str, int, str]]:
        raise NotImplementedError

    def get_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def set_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    # shared -----------------------------------------------------------------------------
    @property
    def width(self) -> int:
        return sum(w for _, w, _ in self.layout())

    def _check_fitted(self) -> None:
        if not self.fitted_:
            raise NotFittedError(f"encoder for column {self.spec.name!r} is not fitted")

    def _null_mask(self, s: pd.Series) -> np.ndarray:
        """The missing cells of ``s``; refused when the column was fitted as not nullable."""
        null = s.isna().to_numpy()
        if null.any() and not self.spec.nullable:
            raise DataError(
                f"column {self.spec.name!r} has {int(null.sum())} missing value(s) but was "
                "fitted as not nullable"
            )
        return null


def argmax_rows(x: np.ndarray) -> np.ndarray:
    """Row-wise argmax of a one-hot-like block (ties go to the first column)."""
    return np.argmax(x, axis=1) if x.shape[1] > 1 else np.zeros(len(x), dtype=np.int64)
