"""The encoded table kept compact: one small integer per one-hot span, one float per scalar.

The transformer's matrix is mostly zeros: a column with 10 modes and a null flag is 13 float32
columns of which 3 are non-zero. :class:`CompactTable` keeps each one-hot span as the index of
its hot slot (``int8``/``int16``/``int32``, the smallest that holds the widest span; ``-1`` for
an all-zero span) and each scalar as one float32, and expands a batch of rows to the dense
layout on the device when a model asks for it (one ``scatter_`` and one column copy). The
expansion is exact: ``table.dense()`` equals ``transformer.transform(df)`` element for element,
so a model trains on the same numbers whether the table fits in memory as a dense matrix or not.

Rows can be written chunk by chunk (:func:`encode_frames`), which is how a table larger than
memory is encoded from a Parquet file (:mod:`tabsynth.transform.stream`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tabsynth.errors import DataError
from tabsynth.transform.base import SOFTMAX, Span

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import torch

    from tabsynth.transform.table import TableTransformer

#: rows encoded per dense chunk (a bounded float32 buffer: chunk x output_dim x 4 bytes)
CHUNK_ROWS = 131_072


def _code_dtype(widths: Sequence[int]) -> np.dtype:
    widest = max(widths, default=1)
    for dt in (np.int8, np.int16, np.int32):
        if widest <= np.iinfo(dt).max:
            return np.dtype(dt)
    raise DataError(f"a one-hot span of width {widest} is too wide to encode")  # pragma: no cover


class CompactTable:
    """Encoded rows stored compactly; :meth:`dense` gives any rows in the transformer layout.

    ``codes`` ``(n, k)``: the hot slot of each of the ``k`` one-hot spans (``-1``: none);
    ``values`` ``(n, m)``: the ``m`` scalar spans. Both are torch tensors on one device.
    """

    def __init__(self, spans: Sequence[Span], dim: int, codes: Any, values: Any) -> None:
        import torch

        self.spans = list(spans)
        self.dim = int(dim)
        hot = [s for s in self.spans if s.activation == SOFTMAX]
        scalar = [s for s in self.spans if s.activation != SOFTMAX]
        if codes.shape[1] != len(hot) or values.shape[1] != len(scalar):
            raise DataError("compact codes and values do not match the span layout")
        self.codes = codes
        self.values = values
        dev = codes.device
        self._offsets = torch.as_tensor([s.start for s in hot], dtype=torch.long, device=dev)
        self._scalar_cols = torch.as_tensor([s.start for s in scalar], dtype=torch.long, device=dev)
        self._code_index = {s.start: j for j, s in enumerate(hot)}
        self._column_at: Any = None  # dense column of each transformer column (reorder)
        self._target: Any = None  # where dense rows go when the store stays on the host

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def allocate(cls, spans: Sequence[Span], dim: int, n_rows: int) -> CompactTable:
        """An empty table of ``n_rows`` rows on the CPU, to be filled by :meth:`write`."""
        import torch

        hot = [s.width for s in spans if s.activation == SOFTMAX]
        n_scalar = sum(1 for s in spans if s.activation != SOFTMAX)
        codes = torch.from_numpy(np.full((n_rows, len(hot)), -1, dtype=_code_dtype(hot)))
        values = torch.zeros((n_rows, n_scalar), dtype=torch.float32)
        return cls(spans, dim, codes, values)

    def write(self, start: int, dense: np.ndarray) -> None:
        """Store the dense rows ``dense`` (transformer layout) at rows ``start, start + 1, …``."""
        import torch

        stop = start + dense.shape[0]
        if dense.shape[1] != self.dim or stop > self.n_rows:
            raise DataError(f"cannot write {dense.shape} at row {start} of {self.shape}")
        codes = np.empty((dense.shape[0], self.codes.shape[1]), dtype=np.int64)
        j = 0
        for s in self.spans:
            if s.activation != SOFTMAX:
                continue
            block = dense[:, s.start : s.stop]
            hot = block.argmax(axis=1)
            codes[:, j] = np.where(block[np.arange(len(block)), hot] > 0, hot, -1)
            j += 1
        self.codes[start:stop] = torch.from_numpy(codes.astype(_np_dtype(self.codes)))
        cols = self._scalar_cols.cpu().numpy()
        self.values[start:stop] = torch.from_numpy(np.ascontiguousarray(dense[:, cols]))

    @classmethod
    def from_dense(cls, dense: np.ndarray, spans: Sequence[Span]) -> CompactTable:
        """The compact form of a dense transformer matrix (exact: ``.dense()`` gives it back)."""
        table = cls.allocate(spans, dense.shape[1], dense.shape[0])
        table.write(0, dense)
        return table

    # -- reading ----------------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.codes.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.dim)

    def __len__(self) -> int:
        return self.n_rows

    @property
    def device(self) -> torch.device:
        """Where :meth:`dense` and :meth:`span_codes` put their results."""
        return self.codes.device if self._target is None else self._target

    @property
    def nbytes(self) -> int:
        """Bytes held by the store (codes and scalars)."""
        return int(
            self.codes.numel() * self.codes.element_size()
            + self.values.numel() * self.values.element_size()
        )

    @property
    def dense_nbytes(self) -> int:
        """Bytes the same rows take as a dense float32 matrix."""
        return self.n_rows * self.dim * 4

    def to(self, device: Any) -> CompactTable:
        return type(self)(self.spans, self.dim, self.codes.to(device), self.values.to(device))

    def place(self, device: Any, share: float = 0.5) -> CompactTable:
        """The store on ``device`` when it takes under ``share`` of the device's free memory;
        otherwise kept on the host (pinned) with :meth:`dense` batches sent to ``device``."""
        import torch

        device = torch.device(device)
        if device.type != "cuda":
            return self.to(device)
        free, _total = torch.cuda.mem_get_info(device)
        if self.nbytes < share * free:
            return self.to(device)
        out = type(self)(self.spans, self.dim, self.codes.pin_memory(), self.values.pin_memory())
        out._column_at, out._target = self._column_at, device
        return out

    def take(self, rows: Any) -> CompactTable:
        """The rows ``rows`` (an index tensor or a slice) as a new compact table."""
        out = type(self)(self.spans, self.dim, self.codes[rows], self.values[rows])
        out._column_at, out._target = self._column_at, self._target
        return out

    def reorder(self, order: Any) -> CompactTable:
        """The same rows whose :meth:`dense` gives the columns in ``order`` (``dense()[:, order]``
        without the gather: the scatter writes each slot at its new place)."""
        import torch

        order = torch.as_tensor(order, dtype=torch.long, device=self.codes.device)
        if sorted(order.tolist()) != list(range(self.dim)):
            raise DataError(f"order must be a permutation of the {self.dim} columns")
        column_at = torch.empty_like(order)
        column_at[order] = torch.arange(self.dim, device=self.codes.device)
        if self._column_at is not None:
            column_at = column_at[self._column_at]
        out = type(self)(self.spans, self.dim, self.codes, self.values)
        out._column_at, out._target = column_at, self._target
        return out

    def dense(self, rows: Any = None) -> torch.Tensor:
        """Rows ``rows`` (an index tensor; ``None``: every row) as a dense float32 matrix."""
        import torch

        if rows is not None and self._target is not None:  # a host store, device batches
            rows = rows.to(self.codes.device) if isinstance(rows, torch.Tensor) else rows
        codes = self.codes if rows is None else self.codes[rows]
        values = self.values if rows is None else self.values[rows]
        home = self.codes.device
        out = torch.zeros((codes.shape[0], self.dim), dtype=torch.float32, device=home)
        at = self._column_at
        if codes.shape[1]:
            c = codes.long()
            on = (c >= 0).to(torch.float32)
            pos = c.clamp_(min=0) + self._offsets
            out.scatter_(1, pos if at is None else at[pos], on)  # spans never overlap
        if values.shape[1]:
            out[:, self._scalar_cols if at is None else at[self._scalar_cols]] = values
        return out if self._target is None else out.to(self._target, non_blocking=True)

    def span_codes(self, start: int) -> torch.Tensor:
        """The hot slot (int64; ``-1``: none) of the one-hot span starting at column ``start``."""
        try:
            j = self._code_index[start]
        except KeyError:
            raise DataError(f"no one-hot span starts at column {start}") from None
        codes = self.codes[:, j].long()
        return codes if self._target is None else codes.to(self._target)


def _np_dtype(t: Any) -> np.dtype:
    import torch

    return {torch.int8: np.int8, torch.int16: np.int16, torch.int32: np.int32}[t.dtype]


def encode_frames(
    transformer: TableTransformer,
    frames: Iterable[pd.DataFrame],
    n_rows: int,
    *,
    random_state: int | None = None,
) -> CompactTable:
    """Encode ``frames`` (consecutive chunks of one table, ``n_rows`` in all) into a compact
    table, one bounded dense chunk at a time.

    Each chunk's encoding draws are keyed by its first row, so a table encoded in chunks gets
    independent draws per chunk, and a table of one chunk encodes exactly as
    ``transformer.transform(df)``.
    """
    table = CompactTable.allocate(transformer.spans_, transformer.output_dim_, n_rows)
    start = 0
    for frame in frames:
        for lo in range(0, max(len(frame), 1), CHUNK_ROWS):
            part = frame.iloc[lo : lo + CHUNK_ROWS]
            if not len(part):
                continue
            if start + len(part) > n_rows:
                raise DataError(f"the table has more rows than the {n_rows} announced")
            dense = transformer.transform(part, random_state=random_state, row_offset=start)
            table.write(start, dense)
            start += len(part)
    if start != n_rows:
        raise DataError(f"the table has {start} rows, not the {n_rows} announced")
    return table
