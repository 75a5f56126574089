"""Read a Parquet table larger than memory: row batches, streamed statistics, a bounded sample.

An out-of-core fit (``model.fit("big.parquet")``) never holds the table: one pass reads it in
row batches to merge per-column statistics (row and null counts, minimum and maximum) and to
draw a seeded sample of at most ``sample_rows`` rows; the metadata is inferred from the sample
and corrected by the statistics (bounds and nullability hold for the whole file), the
transformer is fit on the sample, and a second pass encodes every batch into a
:class:`~tabsynth.transform.compact.CompactTable`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabsynth.errors import DataError, MetadataError
from tabsynth.metadata import Metadata
from tabsynth.transform.compact import CompactTable, encode_frames
from tabsynth.transform.table import TableTransformer

#: rows per batch read from the file (bounds the memory of one pass)
BATCH_ROWS = 65_536
#: rows in the sample that metadata inference and the encoders are fit on
SAMPLE_ROWS = 100_000


def is_table_path(obj: Any) -> bool:
    """True for a str or path naming a Parquet file or a folder (an out-of-core fit)."""
    return isinstance(obj, (str, os.PathLike))


class ParquetSource:
    """A Parquet file, or a folder of Parquet files with one schema, read in row batches."""

    def __init__(self, path: str | os.PathLike, batch_rows: int = BATCH_ROWS) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.path = Path(os.fspath(path))
        if not self.path.exists():
            raise DataError(f"no such file or folder: {str(self.path)!r}")
        if self.path.is_file() and not self.path.name.lower().endswith((".parquet", ".pq")):
            raise DataError(
                f"{str(self.path)!r}: an out-of-core fit reads Parquet (.parquet, .pq); "
                "load other formats with tabsynth.datasets.read_table and pass the frame"
            )
        files = (
            [self.path]
            if self.path.is_file()
            else sorted(
                p
                for p in self.path.rglob("*")
                if p.is_file() and p.name.lower().endswith((".parquet", ".pq"))
            )
        )
        if not files:
            raise DataError(f"{str(self.path)!r}: no .parquet or .pq file in this folder")
        try:
            metas = [pq.read_metadata(f) for f in files]
            schemas = [pq.read_schema(f) for f in files]
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot read {str(self.path)!r} as Parquet: {exc}") from None
        self.files = files
        self.schema = schemas[0]
        self.columns = [str(c) for c in self.schema.names]
        for f, s in zip(files, schemas, strict=True):
            if [str(c) for c in s.names] != self.columns:
                raise DataError(
                    f"{str(f)!r} has columns {list(s.names)}, unlike {self.columns} in "
                    f"{str(files[0])!r}: every file of a folder must hold the same columns"
                )
        self.n_rows = int(sum(m.num_rows for m in metas))
        if self.n_rows == 0:
            raise DataError(f"{str(self.path)!r} holds no rows")
        if len(set(self.columns)) != len(self.columns):
            raise DataError(f"{str(self.path)!r}: duplicate column names")
        self.batch_rows = int(batch_rows)

    def _batches(self) -> Iterator[Any]:
        # file by file, row group by row group, with no read-ahead: the consumer (encoding,
        # ~10 s per million rows) is far slower than the reader, and a dataset scanner's
        # read-ahead buffered 0.75 GiB of decoded rows on a 10M-row file
        import pyarrow as pa
        import pyarrow.parquet as pq

        for path in self.files:
            with pq.ParquetFile(path) as f:
                for batch in f.iter_batches(batch_size=self.batch_rows):
                    if batch.num_rows:
                        yield batch
        pa.default_memory_pool().release_unused()

    def _frame(self, batches: list[Any]) -> pd.DataFrame:
        import pyarrow as pa

        table = pa.Table.from_batches(batches).replace_schema_metadata(self.schema.metadata)
        return table.to_pandas()

    def frames(self) -> Iterator[pd.DataFrame]:
        """The table as consecutive frames of at most ``batch_rows`` rows, in file order."""
        for batch in self._batches():
            yield self._frame([batch])

    def scan(self, sample_rows: int, random_state: int) -> tuple[pd.DataFrame, dict[str, dict]]:
        """One pass: a seeded uniform sample of ``min(sample_rows, n_rows)`` rows (in file order)
        and per-column statistics of the whole file (``nulls``, ``min``, ``max``)."""
        import pyarrow as pa
        import pyarrow.compute as pc

        rng = np.random.default_rng(random_state)
        k = min(int(sample_rows), self.n_rows)
        picked = np.sort(rng.choice(self.n_rows, size=k, replace=False))
        stats: dict[str, dict] = {c: {"nulls": 0, "min": None, "max": None} for c in self.columns}
        parts, start = [], 0
        for batch in self._batches():
            stop = start + batch.num_rows
            lo, hi = np.searchsorted(picked, [start, stop])
            if hi > lo:
                parts.append(batch.take(pa.array(picked[lo:hi] - start)))
            for name, col in zip(self.columns, batch.columns, strict=True):
                st = stats[name]
                st["nulls"] += col.null_count
                t = col.type
                if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t):
                    mm = pc.min_max(col)
                    for key, better in (("min", min), ("max", max)):
                        v = mm[key].as_py()
                        if v is not None and not (isinstance(v, float) and np.isnan(v)):
                            st[key] = v if st[key] is None else better(st[key], v)
            start = stop
        # k >= 1 rows are picked (the source refuses an empty table), so parts is never empty;
        # Table.from_batches, not concat_batches (pyarrow >= 19 only; we support >= 14)
        return self._frame(parts).reset_index(drop=True), stats


def infer_metadata(sample: pd.DataFrame, stats: dict[str, dict], n_rows: int) -> Metadata:
    """Metadata inferred from ``sample`` with the whole table's bounds and nullability."""
    meta = Metadata.infer(sample)
    for name, spec in meta.columns.items():
        st = stats[name]
        if st["nulls"] >= n_rows:
            raise DataError(f"column {name!r} has only missing values; drop it or fill it")
        if st["nulls"] and not spec.nullable:
            spec.nullable = True  # seen outside the sample; still a fact of the data
        if spec.kind in ("integer", "continuous") and st["min"] is not None:
            if spec.origin.get("lower") == "data":
                lo = st["min"]
                spec.lower = int(lo) if spec.kind == "integer" else float(lo)
            if spec.origin.get("upper") == "data":
                hi = st["max"]
                spec.upper = int(hi) if spec.kind == "integer" else float(hi)
        elif spec.kind == "datetime" and st["min"] is not None:
            if spec.origin.get("lower") == "data":
                spec.lower = pd.Timestamp(st["min"]).isoformat()
            if spec.origin.get("upper") == "data":
                spec.upper = pd.Timestamp(st["max"]).isoformat()
        spec.check()
    return meta


def check_chunk(metadata: Metadata, frame: pd.DataFrame, first_row: int) -> None:
    """The per-batch part of ``Metadata.validate``: the columns, and nulls only where allowed
    (a batch may hold only missing values of a sparse column; the whole file may not)."""
    names = [str(c) for c in frame.columns]
    if names != list(metadata.names):
        raise MetadataError(
            f"columns of the rows from {first_row} differ from the metadata: "
            f"got {names}, expected {list(metadata.names)}"
        )
    for name in names:
        if not metadata[name].nullable and frame[name].isna().any():
            raise DataError(
                f"column {name!r} has missing values (rows from {first_row}) but its metadata "
                "says nullable=False"
            )


def parquet_transformer(
    source: ParquetSource, metadata: Metadata | None, settings: dict[str, Any]
) -> TableTransformer:
    """The transformer of an out-of-core fit: the metadata declared or inferred (sample +
    streamed statistics), the encoders fit on the sample; values first seen outside the sample
    take their column's ``other`` slot (``unseen="other"``)."""
    sample, stats = source.scan(SAMPLE_ROWS, settings["random_state"])
    if metadata is None:
        metadata = infer_metadata(sample, stats, source.n_rows)
    return TableTransformer(metadata, unseen="other", **settings).fit(sample)


def encode_parquet(source: ParquetSource, transformer: TableTransformer) -> CompactTable:
    """Every row of ``source``, batch by batch, validated and encoded into a compact store."""

    def checked() -> Iterator[pd.DataFrame]:
        first = 0
        for frame in source.frames():
            check_chunk(transformer.metadata_, frame, first)
            first += len(frame)
            yield frame

    return encode_frames(transformer, checked(), source.n_rows)
