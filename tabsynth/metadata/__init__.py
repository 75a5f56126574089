"""Metadata layer: what each column is and where each fact came from."""

from tabsynth.metadata.dtypes import dtype_from_str, dtype_to_str
from tabsynth.metadata.metadata import KINDS, ColumnSpec, Metadata, check_frame, datetime_to_int

__all__ = [
    "KINDS",
    "ColumnSpec",
    "Metadata",
    "check_frame",
    "datetime_to_int",
    "dtype_from_str",
    "dtype_to_str",
]
