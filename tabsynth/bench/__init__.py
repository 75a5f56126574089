"""The benchmark harness behind ``tabsynth benchmark`` and the scripts in ``benchmarks/``.

- :mod:`~tabsynth.bench.data`: which tables, the shared 80/20 split, caps, metadata, the task;
- :mod:`~tabsynth.bench.contenders`: the registry of contenders (tabsynth models and anchors),
  one entry each, libraries imported lazily inside their adapters;
- :mod:`~tabsynth.bench.cell`: one (dataset, contender, epsilon, seed) cell in a fresh process,
  scored with ``tabsynth.evaluate``;
- :mod:`~tabsynth.bench.suite`: every cell of a configuration, ``--resume``, anchor interpreter;
- :mod:`~tabsynth.bench.results`: ``results.csv`` / ``results.md`` / the utility-vs-ε plot;
- :mod:`~tabsynth.bench.measure`: peak memory per phase, thread pins, JSON-safe values.

Nothing in the library imports this package; importing it loads no model, torch or pandas.
"""

from tabsynth.bench.cell import run_cell, run_cell_subprocess, run_worker, worker_main
from tabsynth.bench.contenders import CONTENDERS, CellContext, Contender, tabsynth_model
from tabsynth.bench.data import (
    DatasetSpec,
    build_metadata,
    guess_task,
    prepare_data,
    resolve_datasets,
)
from tabsynth.bench.measure import PeakRSS, set_threads
from tabsynth.bench.results import RESULT_COLUMNS, markdown_table, write_markdown, write_plot
from tabsynth.bench.suite import (
    DEFAULTS,
    QUICK,
    BenchmarkConfig,
    anchor_python,
    environment,
    run_benchmark,
)

__all__ = [
    "CONTENDERS",
    "DEFAULTS",
    "QUICK",
    "RESULT_COLUMNS",
    "BenchmarkConfig",
    "CellContext",
    "Contender",
    "anchor_python",
    "build_metadata",
    "DatasetSpec",
    "PeakRSS",
    "environment",
    "guess_task",
    "markdown_table",
    "prepare_data",
    "resolve_datasets",
    "run_benchmark",
    "run_cell",
    "run_cell_subprocess",
    "run_worker",
    "set_threads",
    "worker_main",
    "tabsynth_model",
    "write_markdown",
    "write_plot",
]
