"""Demo tables, table IO and the registry of the shared real tables.

``make_patients`` / ``make_loans`` generate seeded tables with real structure (no download);
``read_table`` / ``write_table`` handle CSV(.gz) and Parquet; ``load_shared`` loads one of the
real development tables listed in ``shared/datasets/manifest.json``; ``split_table`` is the
seeded, stratified 80/20 split of the benchmark and the demo.
"""

from tabsynth.datasets.demo import (
    DEMO_NAMES,
    DEMO_TARGETS,
    DIABETES_CODES,
    load_demo,
    make_loans,
    make_patients,
    write_demo_parquet,
)
from tabsynth.datasets.io import SUPPORTED_EXTENSIONS, read_table, write_table
from tabsynth.datasets.shared import (
    SharedDatasetInfo,
    list_shared,
    load_shared,
    shared_datasets_dir,
    shared_info,
)
from tabsynth.datasets.split import split_table, subsample_rows

__all__ = [
    "DEMO_NAMES",
    "DEMO_TARGETS",
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
    "split_table",
    "subsample_rows",
    "write_demo_parquet",
    "write_table",
]
