"""CLI helpers: input checks, atomic (and chunked) output files, ``--condition`` parsing.

Kept free of heavy imports at module level so ``tabsynth --help`` stays fast.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from tabsynth import MODELS, _files
from tabsynth.errors import DataError

__all__ = [
    "CLIError",
    "atomic_write_bytes",
    "check_input_file",
    "check_output_path",
    "MODEL_NAMES",
    "parse_condition",
    "resolve_conditions",
    "table_format",
    "table_writer",
]

#: the model families the commands accept, by their lower-case class names
MODEL_NAMES = tuple(name.lower() for name in MODELS)

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}
_RANGE = re.compile(r"^(?P<lo>.*?)\.\.(?P<hi>.*)$")


class CLIError(DataError):
    """A bad command line (wrong value, missing file); printed as one ``tabsynth: error:`` line."""


# -- paths ----------------------------------------------------------------------------------
def table_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """``(format, compression)`` from the file name; CLIError for anything else."""
    from tabsynth.datasets.io import table_format as _table_format  # lazy: keeps --help fast

    try:
        return _table_format(path)
    except DataError as exc:
        raise CLIError(str(exc)) from None


def check_input_file(path: str | os.PathLike[str], what: str = "input file") -> Path:
    """Fail early, with the path, when an input is missing, a folder or unreadable."""
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise CLIError(f"{what} {str(p)!r} is a folder, not a file")
    if not os.access(p, os.R_OK):
        raise CLIError(f"{what} {str(p)!r} is not readable (permission denied)")
    return p


def check_output_path(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Refuse folders as output files; create missing parent folders."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{what} {str(p)!r} is a folder; give a file name")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CLIError(f"cannot create the folder of {what} {str(p)!r}: {exc.strerror}") from None
    if not os.access(p.parent, os.W_OK):
        raise CLIError(f"cannot write {what} {str(p)!r}: its folder is not writable")
    return p


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Check ``path`` as a CLI output (clear CLIError), then write it atomically."""
    return _files.atomic_write_bytes(check_output_path(path), data)


def table_writer(path: str | os.PathLike[str]) -> Any:
    """A :class:`tabsynth.datasets.io.ChunkedTableWriter` for ``path`` after the CLI's checks
    (a folder, an unwritable place or an unknown extension is a one-line ``CLIError`` before
    any write). Imported on use: the datasets layer loads pandas, and ``--help`` must not."""
    table_format(path)
    from tabsynth.datasets.io import ChunkedTableWriter

    return ChunkedTableWriter(check_output_path(path))


# -- conditions -------------------------------------------------------------------------------
def parse_condition(text: str) -> tuple[str, str]:
    """Split ``col=value`` / ``col=lo..hi`` (syntax only; values are checked against the model).

    Used as an argparse ``type=``: a ValueError becomes a usage error naming the bad item.
    """
    if "=" not in text:
        raise ValueError(f"condition {text!r} must look like col=value or col=lo..hi")
    column, value = text.split("=", 1)
    column = column.strip()
    if not column:
        raise ValueError(f"condition {text!r} has no column name before '='")
    if not value.strip():
        raise ValueError(f"condition {text!r} has no value after '='")
    return column, value.strip()


def _parse_number(column: str, text: str, kind: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise CLIError(f"condition on {column!r} ({kind}): {text!r} is not a number") from None
    if math.isnan(value):
        raise CLIError(f"condition on {column!r}: NaN is not a valid value")
    if kind == "integer" and value.is_integer():
        return int(value)
    return value


def _parse_time(column: str, text: str) -> Any:
    import pandas as pd

    try:
        return pd.Timestamp(text)
    except (ValueError, TypeError):
        raise CLIError(
            f"condition on {column!r} (datetime): {text!r} is not a date/time "
            "(use e.g. 2021-03-01 or 2021-03-01T12:00)"
        ) from None


def _parse_bound(column: str, text: str, kind: str) -> Any:
    if kind == "datetime":
        return _parse_time(column, text)
    return _parse_number(column, text, kind)


def _match_category(column: str, text: str, domain: Iterable[Any]) -> Any:
    """The domain value whose text is ``text``; numeric categories also match by value."""
    domain = list(domain)
    for value in domain:
        if str(value) == text:
            return value
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        for value in domain:
            if isinstance(value, int | float) and not isinstance(value, bool):
                if float(value) == number:
                    return value
    lowered = [v for v in domain if str(v).lower() == text.lower()]
    if len(lowered) == 1:
        return lowered[0]
    shown = ", ".join(map(str, domain[:12])) + (", …" if len(domain) > 12 else "")
    raise CLIError(f"condition on {column!r}: {text!r} is not one of its categories ({shown})")


def resolve_conditions(
    items: Sequence[tuple[str, str]],
    metadata: Any,
    categories_of: Callable[[str], Sequence[Any]] | None = None,
) -> dict[str, Any]:
    """Turn parsed ``(column, text)`` pairs into the ``conditions`` dict that ``sample`` takes.

    Values are parsed against the column's kind: categories are matched to the fitted domain
    (``"3"`` matches a numeric category 3), booleans accept true/false/yes/no/1/0, numbers and
    datetimes give an inclusive ``(low, high)`` range (``lo..hi``; an empty end is open). A single
    value is accepted for integer columns, and for datetimes as a date (the whole day).
    """
    out: dict[str, Any] = {}
    names = list(metadata.names)
    for column, text in items:
        if column not in names:
            shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
            raise CLIError(f"condition on unknown column {column!r}; the columns are: {shown}")
        if column in out:
            raise CLIError(f"column {column!r} is conditioned twice; give one condition per column")
        spec = metadata[column]
        kind = spec.kind
        if kind == "id":
            raise CLIError(f"cannot condition on id column {column!r}: ids are regenerated")
        if kind == "boolean":
            low = text.lower()
            if low in _TRUE:
                out[column] = True
            elif low in _FALSE:
                out[column] = False
            else:
                raise CLIError(f"condition on {column!r} (boolean): {text!r} is not true/false")
        elif kind == "categorical":
            domain = categories_of(column) if categories_of is not None else spec.categories
            out[column] = _match_category(column, text, domain or [])
        else:
            match = _RANGE.match(text)
            if match:
                lo_text, hi_text = match.group("lo").strip(), match.group("hi").strip()
                if not lo_text and not hi_text:
                    raise CLIError(f"condition on {column!r}: range {text!r} has no bounds")
                lo = _parse_bound(column, lo_text, kind) if lo_text else None
                hi = _parse_bound(column, hi_text, kind) if hi_text else None
                if lo is not None and hi is not None and lo > hi:
                    raise CLIError(f"condition on {column!r}: empty range {text!r} (low > high)")
                out[column] = (lo, hi)
            elif kind == "integer":
                out[column] = _parse_bound(column, text, kind)
            elif kind == "datetime" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
                import pandas as pd

                day = _parse_time(column, text)
                out[column] = (day, day + pd.Timedelta(days=1) - pd.Timedelta(1, "ns"))
            else:
                raise CLIError(
                    f"condition on {kind} column {column!r} needs a range: {column}=lo..hi "
                    f"(lo.. or ..hi for one side), got {text!r}"
                )
    return out
