"""Demo tables, table IO and the registry of the shared real tables.

``make_patients`` / ``make_loans`` generate seeded tables with real structure (no download);
``read_table`` / ``write_table`` handle CSV(.gz) and Parquet; ``load_shared`` loads one of the
real development tables listed in ``shared/datasets/manifest.json``.
"""

from tabsynth.datasets.demo import DEMO_NAMES, DIABETES_CODES, load_demo, make_loans, make_patients
from tabsynth.datasets.io import SUPPORTED_EXTENSIONS, read_table, write_table
from tabsynth.datasets.shared import (
    SharedDatasetInfo,
    list_shared,
    load_shared,
    shared_datasets_dir,
    shared_info,
)

__all__ = [
    "DEMO_NAMES",
    "DIABETES_CODES",
    "SUPPORTED_EXTENSIONS",
    "SharedDatasetInfo",
    "list_shared",
    "load_demo",
    "load_shared",
    "make_loans",
    "make_patients",
    "read_table",
    "shared_datasets_dir",
    "shared_info",
    "write_table",
]
