"""Compose column encoders into one float matrix with a declared layout of spans."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError, MetadataError, NotFittedError
from tabsynth.metadata import ColumnSpec, Metadata
from tabsynth.transform.base import ColumnEncoder, Span
from tabsynth.transform.categorical import AUTO, CategoricalEncoder
from tabsynth.transform.identifiers import IdEncoder
from tabsynth.transform.numeric import NumericEncoder

FORMAT = "tabsynth.transformer/1"


class TableTransformer:
    """Reversible encoding of a whole table for the models.

    Parameters are stored untouched; ``fit`` resolves them. ``random_state`` fixes the
    subsample used to fit numeric encoders and the mode draws of ``transform``.
    ``memory_budget`` (bytes) bounds the encoded matrix: the size is estimated before any
    allocation and a frame that would exceed it is refused with the figure.
    ``rare_threshold`` groups the rare values of each categorical column into one ``other``
    slot (``"auto"``: values seen fewer than max(5, 0.1 % of rows) times; a share in (0, 1);
    a count; ``None``: no grouping); see :func:`~tabsynth.transform.categorical.
    resolve_rare_threshold`. The public (DP) encoding ignores it: its domain is declared.
    """

    def __init__(
        self,
        metadata: Metadata | None = None,
        random_state: int | None = None,
        max_fit_samples: int = 20_000,
        numeric_encoder: str = "gmm",
        max_modes: int = 10,
        rare_threshold: float | str | None = AUTO,
        unseen: str = "error",
        max_categories: int = 1000,
        memory_budget: int = 8 * 2**30,
    ) -> None:
        self.metadata = metadata
        self.random_state = random_state
        self.max_fit_samples = max_fit_samples
        self.numeric_encoder = numeric_encoder
        self.max_modes = max_modes
        self.rare_threshold = rare_threshold
        self.unseen = unseen
        self.max_categories = max_categories
        self.memory_budget = memory_budget

    # -- building ---------------------------------------------------------------------------
    def _make_encoder(self, spec: ColumnSpec) -> ColumnEncoder:
        if spec.kind in ("continuous", "integer", "datetime"):
            return NumericEncoder(
                spec,
                method=self.numeric_encoder,
                max_modes=self.max_modes,
                max_fit_samples=self.max_fit_samples,
            )
        if spec.kind in ("categorical", "boolean"):
            return CategoricalEncoder(
                spec,
                rare_threshold=self.rare_threshold,
                unseen=self.unseen,
                max_categories=self.max_categories,
            )
        return IdEncoder(spec)

    def _rng(self, index: int, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self.entropy_, index, purpose])

    def _build_spans(self) -> None:
        spans, start = [], 0
        for name, enc in self.encoders_.items():
            for role, width, activation in enc.layout():
                spans.append(Span(name, role, start, width, activation))
                start += width
        self.spans_ = spans
        self.output_dim_ = start

    def fit(self, df: pd.DataFrame) -> TableTransformer:
        """Learn every column's encoding from ``df`` (validated against the metadata)."""
        if self.metadata is None:
            metadata = Metadata.infer(df)  # checks the frame; the schema fits it by construction
        else:
            metadata = self.metadata
            metadata.validate(df)  # the one validation of a training frame (models rely on it)
        self.metadata_ = metadata
        if self.random_state is None:
            self.entropy_ = int(np.random.SeedSequence().entropy % 2**63)
        else:
            self.entropy_ = int(self.random_state)
        self.columns_ = list(metadata.names)
        self.encoders_: dict[str, ColumnEncoder] = {}
        for i, name in enumerate(self.columns_):
            enc = self._make_encoder(metadata[name])
            enc.fit(df[name], self._rng(i, 0))
            self.encoders_[name] = enc
        self._build_spans()
        self.check_memory(len(df))
        return self

    def fit_public(
        self, histograms: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    ) -> TableTransformer:
        """Build the encoding from the metadata alone, reading no data (the DP path).

        Categories come from the declared domains (values outside map to an ``other`` slot),
        numeric columns from their declared bounds and, where ``histograms`` holds one, a DP
        histogram ``(bin centres, noisy counts)`` in encoder coordinates
        (:meth:`numeric_bounds`). Id columns are numbered without learning their format.
        """
        if self.metadata is None:
            raise MetadataError("fit_public needs metadata declared by the user")
        problems = self.metadata.public_problems()
        if problems:
            raise MetadataError(
                "the schema must be public to build the encoding without reading data; "
                "declare: " + "; ".join(problems)
            )
        histograms = histograms or {}
        self.metadata_ = self.metadata
        self.entropy_ = (
            int(np.random.SeedSequence().entropy % 2**63)
            if self.random_state is None
            else int(self.random_state)
        )
        self.columns_ = list(self.metadata.names)
        self.encoders_ = {}
        for name in self.columns_:
            spec = self.metadata[name]
            enc = self._make_encoder(spec)
            if isinstance(enc, NumericEncoder):
                enc.fit_public(histograms.get(name))
            elif isinstance(enc, CategoricalEncoder):
                enc.fit_public()
            else:
                enc.set_state(
                    {
                        "prefix": "",
                        "suffix": "",
                        "digits": 0,
                        "numeric": not (spec.dtype or "object").startswith(("str", "object")),
                    }
                )
            self.encoders_[name] = enc
        self._build_spans()
        return self

    def numeric_bounds(self, column: str) -> tuple[float, float]:
        """Declared bounds of a numeric/datetime column in encoder coordinates."""
        enc = self._make_encoder(self.metadata[column]) if self.metadata is not None else None
        if not isinstance(enc, NumericEncoder):
            raise DataError(f"column {column!r} is not numeric or datetime")
        return enc.prepare_public()

    def numeric_values(self, df: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
        """A numeric/datetime column in encoder coordinates, and its null mask."""
        enc = self._make_encoder(self.metadata[column]) if self.metadata is not None else None
        if not isinstance(enc, NumericEncoder):
            raise DataError(f"column {column!r} is not numeric or datetime")
        enc.prepare_public()
        return enc.encoded_values(df[column])

    # -- contract -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "encoders_"):
            raise NotFittedError("TableTransformer is not fitted; call fit(df) first")

    def check_memory(self, n_rows: int, itemsize: int = 4) -> None:
        """Refuse, before allocating, an encoded matrix larger than ``memory_budget``."""
        need = n_rows * self.output_dim_ * itemsize
        if need > self.memory_budget:
            widest = sorted(
                ((enc.width, name) for name, enc in self.encoders_.items()), reverse=True
            )[:3]
            raise DataError(
                f"the encoded table would take {need / 2**30:.1f} GiB "
                f"({n_rows} rows x {self.output_dim_} columns), over the memory budget of "
                f"{self.memory_budget / 2**30:.1f} GiB; widest columns: "
                + ", ".join(f"{n!r} ({w})" for w, n in widest)
                + ". Group rare categories, declare id columns, or raise memory_budget"
            )

    def transform(
        self,
        df: pd.DataFrame,
        dtype: Any = np.float32,
        random_state: int | None = None,
        *,
        row_offset: int = 0,
    ) -> np.ndarray:
        """Encode ``df`` into a ``(n, output_dim_)`` matrix (float32 unless ``dtype`` says).

        ``random_state`` overrides the fitted entropy for the encoding draws (mixture modes);
        the DP path passes a secret seed so the draws for private rows cannot be replayed.
        ``row_offset``: where ``df`` starts in a longer table encoded chunk by chunk
        (:func:`~tabsynth.transform.compact.encode_frames`); it keys the draws, so chunks get
        independent ones, and 0 encodes as a whole table does.
        """
        self._check_fitted()
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}")
        missing = [c for c in self.columns_ if c not in df.columns]
        extra = [c for c in df.columns if c not in self.encoders_]
        if missing or extra:
            raise MetadataError(
                f"frame columns differ from the fitted table; missing: {missing}, extra: {extra}"
            )
        self.check_memory(len(df), np.dtype(dtype).itemsize)
        out = np.zeros((len(df), self.output_dim_), dtype=dtype)  # encoders write only the ones
        col = 0
        for i, (name, enc) in enumerate(self.encoders_.items()):
            width = enc.width
            if width:
                key = [self.entropy_ if random_state is None else int(random_state), i, 1]
                rng = np.random.default_rng(key + [int(row_offset)] if row_offset else key)
                enc.transform(df[name], out[:, col : col + width], rng)
            col += width
        return out

    def inverse_transform(
        self,
        x: np.ndarray,
        id_start: int = 0,
        random_state: int | None = None,
        *,
        ids: bool = True,
    ) -> pd.DataFrame:
        """Decode a matrix (real or generated) into a frame with the original columns and dtypes.

        ``id_start``: where this block starts in a longer decode (chunk by chunk); it keys the
        decoding draws, and regenerated ids are numbered from ``id_start + 1`` so chunks decoded
        separately stay unique. ``ids=False`` leaves the id columns out, for a caller that
        numbers the finished frame once with :meth:`with_ids` (the models' ``sample``).
        """
        self._check_fitted()
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.output_dim_:
            raise DataError(
                f"expected a matrix with {self.output_dim_} columns, got shape {x.shape}"
            )
        seed = self.entropy_ if random_state is None else random_state
        cols, col = {}, 0
        for i, (name, enc) in enumerate(self.encoders_.items()):
            width = enc.width
            if isinstance(enc, IdEncoder):
                if ids:
                    cols[name] = enc.generate(len(x), start=id_start)
            else:
                rng = np.random.default_rng([seed, i, 2, id_start])
                cols[name] = enc.inverse_transform(x[:, col : col + width], rng)
            col += width
        frame = pd.DataFrame({name: s.reset_index(drop=True) for name, s in cols.items()})
        return frame

    def with_ids(self, frame: pd.DataFrame, first: int = 1) -> pd.DataFrame:
        """``frame`` with every id column (re)generated, numbered ``first``, ``first + 1``, …
        in the column's learned style, the columns in the fitted order.

        ``SamplingError`` naming the column when the numbers do not fit its dtype.
        """
        self._check_fitted()
        cols = {
            name: (
                enc.generate(len(frame), start=first - 1).set_axis(frame.index)
                if isinstance(enc, IdEncoder)
                else frame[name]
            )
            for name, enc in self.encoders_.items()
        }
        return pd.DataFrame(cols, index=frame.index, copy=False)

    # -- layout helpers for the models ----------------------------------------------------
    @property
    def discrete_columns_(self) -> list[str]:
        self._check_fitted()
        return [n for n, e in self.encoders_.items() if isinstance(e, CategoricalEncoder)]

    def category_span(self, column: str) -> Span:
        """The one-hot span of a categorical or boolean column."""
        self._check_fitted()
        for span in self.spans_:
            if span.column == column and span.role == "category":
                return span
        if column not in self.encoders_:
            raise DataError(f"unknown column {column!r}")
        raise DataError(
            f"column {column!r} is {self.metadata_[column].kind}, not categorical or boolean"
        )

    def category_position(self, column: str, value: Any) -> int:
        """Index of ``value`` within ``category_span(column)``."""
        self.category_span(column)
        return self.encoders_[column].position(value)  # type: ignore[attr-defined]

    def categories_of(self, column: str) -> list:
        """The values of a categorical column in span order (``None`` marks the null slot)."""
        self.category_span(column)
        enc: CategoricalEncoder = self.encoders_[column]  # type: ignore[assignment]
        out = list(enc.categories_)
        if enc.has_other_:
            out.append("__other__")
        if enc.spec.nullable:
            out.append(None)
        return out

    # -- persistence ----------------------------------------------------------------------
    def to_dict(self) -> dict:
        self._check_fitted()
        return {
            "format": FORMAT,
            "params": {
                "random_state": self.random_state,
                "max_fit_samples": self.max_fit_samples,
                "numeric_encoder": self.numeric_encoder,
                "max_modes": self.max_modes,
                "rare_threshold": self.rare_threshold,
                "unseen": self.unseen,
                "max_categories": self.max_categories,
                "memory_budget": self.memory_budget,
            },
            "metadata": self.metadata_.to_dict(),
            "entropy": self.entropy_,
            "encoders": {name: enc.get_state() for name, enc in self.encoders_.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> TableTransformer:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise MetadataError("not a tabsynth transformer state")
        metadata = Metadata.from_dict(d["metadata"])
        tt = cls(metadata, **d["params"])
        tt.metadata_ = metadata
        tt.entropy_ = int(d["entropy"])
        tt.columns_ = list(metadata.names)
        tt.encoders_ = {}
        for name in tt.columns_:
            enc = tt._make_encoder(metadata[name])
            enc.set_state(d["encoders"][name])
            tt.encoders_[name] = enc
        tt._build_spans()
        return tt
