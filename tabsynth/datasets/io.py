"""Read and write tables as CSV (optionally gzipped) or Parquet, chosen by file extension.

Parquet is the lossless format: nullable integers/booleans/floats, categories (with unused levels
and order), strings and timezone-aware datetimes come back exactly, including the datetime unit.
CSV is the interchange format and keeps values, not dtypes. Writes are atomic: the table goes to
a temporary file in the target folder, is flushed to disk and then renamed over the target, so an
interrupted run never leaves a truncated file behind.
"""

from __future__ import annotations

import gzip
import io
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tabsynth._files import atomic_path, commit_temp, temp_beside
from tabsynth.errors import DataError

__all__ = ["read_table", "write_table", "ChunkedTableWriter", "SUPPORTED_EXTENSIONS"]

# suffix -> (format, compression); matched on the lower-cased file name, longest suffix first.
_FORMATS: dict[str, tuple[str, str | None]] = {
    ".csv.gz": ("csv", "gzip"),
    ".csv": ("csv", None),
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
_TIME_UNIT = re.compile(r"^(datetime64|timedelta64)\[(s|ms|us|ns)\]$")


def _as_path(path: object) -> Path:
    try:
        return Path(os.fspath(path))  # type: ignore[arg-type]
    except TypeError:
        raise DataError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None


def table_format(path: str | os.PathLike) -> tuple[str, str | None]:
    """``(format, compression)`` from the file name; DataError for anything else."""
    path = Path(path)
    name = path.name.lower()
    for suffix, fmt in _FORMATS.items():
        if name.endswith(suffix):
            return fmt
    raise DataError(
        f"cannot tell the table format of {str(path)!r} from its extension; "
        f"use one of {', '.join(SUPPORTED_EXTENSIONS)}"
    )


def _parquet_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (pa.ArrowException,)


def _restore_time_units(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Parquet has no second resolution; put back the unit pandas recorded when writing."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).pandas_metadata or {}
    for entry in meta.get("columns", []):
        name = entry.get("name")
        match = _TIME_UNIT.match(str(entry.get("numpy_type", "")))
        if match is None or name not in df.columns:
            continue
        dtype = df[name].dtype
        unit = getattr(dtype, "unit", None)  # DatetimeTZDtype
        if unit is None and isinstance(dtype, np.dtype) and dtype.kind in "mM":
            unit = np.datetime_data(dtype)[0]
        if unit is not None and unit != match.group(2):
            df[name] = df[name].dt.as_unit(match.group(2))
    return df


def read_table(path: str | os.PathLike[str], **kwargs: Any) -> pd.DataFrame:
    """Read a ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    Extra keyword arguments go to ``pandas.read_csv`` or ``pandas.read_parquet`` (e.g.
    ``na_values`` or ``columns``).
    """
    path = _as_path(path)
    fmt, compression = table_format(path)
    if not path.exists():
        raise DataError(f"no such file: {str(path)!r}")
    if not path.is_file():
        raise DataError(f"not a file: {str(path)!r}")
    if fmt == "csv":
        kwargs.setdefault("compression", compression)
        try:
            return pd.read_csv(path, **kwargs)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise DataError(f"could not parse CSV file {str(path)!r}: {exc}") from exc
        except (OSError, EOFError) as exc:  # e.g. a .gz that is not gzip or is cut short
            raise DataError(f"could not read {str(path)!r}: {exc}") from exc
    try:
        df = pd.read_parquet(path, engine="pyarrow", **kwargs)
        return _restore_time_units(df, path)
    except _parquet_errors() as exc:
        raise DataError(f"could not read Parquet file {str(path)!r}: {exc}") from exc


def _check_columns(df: pd.DataFrame, fmt: str) -> None:
    duplicated = df.columns[df.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"column {duplicated[0]!r} appears more than once; names must be unique")
    if fmt == "parquet":
        for name in df.columns:
            if not isinstance(name, str):
                raise DataError(
                    f"column {name!r} has a {type(name).__name__} name; Parquet needs str names"
                )


def write_table(df: pd.DataFrame, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Write ``df`` (without its index) atomically; the format follows the extension.

    Missing parent folders are created. Extra keyword arguments go to ``DataFrame.to_csv`` or
    ``DataFrame.to_parquet``. Returns the path written.
    """
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"write_table needs a pandas DataFrame, got {type(df).__name__}")
    path = _as_path(path)
    fmt, compression = table_format(path)
    _check_columns(df, fmt)
    if path.is_dir():
        raise DataError(f"cannot write a table to {str(path)!r}: it is a folder")
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        if fmt == "csv" and compression == "gzip":
            # Own gzip stream: no file name (it would be the temp name) and mtime=0, so the
            # output is byte-identical across runs.
            with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz:
                df.to_csv(gz, mode="wb", **kwargs)
        elif fmt == "csv":
            df.to_csv(tmp, **kwargs)
        else:
            try:
                df.to_parquet(tmp, engine="pyarrow", **kwargs)
            except _parquet_errors() as exc:
                raise DataError(f"could not write {str(path)!r} as Parquet: {exc}") from exc
    return path


class ChunkedTableWriter:
    """Append a table chunk by chunk to a temporary file; ``commit`` renames it into place.

    Memory stays bounded by one chunk whatever the total size. CSV chunks are appended as text
    (one header); ``.csv.gz`` goes through one gzip stream; Parquet uses a pyarrow
    ``ParquetWriter`` whose schema is fixed by the first chunk (later chunks are cast to it, so a
    chunk whose column happens to be all-missing still matches). Used as a context manager the
    file is committed on success and removed on error, so no partial output is ever left behind.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = _as_path(path)
        self.format, self.compression = table_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.rows = 0
        self._tmp: Path | None = None
        self._raw: Any = None
        self._text: Any = None
        self._parquet: Any = None
        self._schema: Any = None

    def __enter__(self) -> ChunkedTableWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def _open(self) -> None:
        self._tmp = temp_beside(self.path)
        if self.format == "csv":
            self._raw = open(self._tmp, "wb")  # noqa: SIM115 - closed in commit/abort
            stream = self._raw
            if self.compression == "gzip":
                stream = gzip.GzipFile("", "wb", fileobj=self._raw, mtime=0)
            self._gz = stream if stream is not self._raw else None
            self._text = io.TextIOWrapper(stream, encoding="utf-8", newline="")

    def write(self, df: Any) -> None:
        """Append one chunk (a pandas DataFrame with the same columns as the first one)."""
        first = self._tmp is None
        if first:
            self._open()
        if self.format == "csv":
            df.to_csv(self._text, header=first, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            if first:
                table = pa.Table.from_pandas(df, preserve_index=False)
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self._tmp, self._schema)
            else:
                try:
                    table = pa.Table.from_pandas(df, schema=self._schema, preserve_index=False)
                except (pa.ArrowException, ValueError, TypeError) as exc:
                    raise DataError(
                        f"chunk {self.rows}+ does not match the Parquet schema of the first: {exc}"
                    ) from exc
            self._parquet.write_table(table)
        self.rows += len(df)

    def commit(self) -> Path:
        """Flush, fsync and rename the temporary file over the target; returns the path."""
        if self._tmp is None:
            raise DataError(f"nothing was written to {str(self.path)!r}")
        try:
            self._close()
            commit_temp(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._tmp = None
        return self.path

    def _close(self) -> None:
        if self._text is not None:
            self._text.flush()
            self._text.detach()
            self._text = None
        if getattr(self, "_gz", None) is not None:
            self._gz.close()
            self._gz = None
        if self._raw is not None:
            self._raw.close()
            self._raw = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def abort(self) -> None:
        """Drop the temporary file (the target is left untouched)."""
        try:
            self._close()
        except Exception:  # noqa: BLE001 - best effort on the error path
            pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
            self._tmp = None
