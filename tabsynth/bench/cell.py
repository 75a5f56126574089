"""One benchmark cell, (dataset, contender, epsilon, seed), in a fresh Python process.

A cell prepares the shared split, fits the contender, samples the training row count and scores
the sample with :func:`tabsynth.evaluate` (holdout = the test split). Running it in its own
process makes its peak memory its own; inside, the peak is reset at the start of each phase
(fit, sample, evaluate). Cell and result cross the process boundary as JSON files (no pickle);
a failing cell is a result (its ``status``), not a crash of the suite.

    python -m tabsynth.bench.cell CELL.json RESULT.json
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tabsynth._files import atomic_write_bytes
from tabsynth.bench.measure import PeakRSS, jsonable, set_threads, thread_env
from tabsynth.bench.results import RESULT_COLUMNS, float_or_none

__all__ = [
    "cell_env",
    "record_report",
    "run_cell",
    "run_cell_subprocess",
    "run_worker",
    "worker_main",
]

#: result column -> key of the evaluation report (``{main}`` is roc_auc or r2)
_REPORT_KEYS = {
    "utility_synthetic": "utility.hist_gradient_boosting.{main}.synthetic",
    "utility_real": "utility.hist_gradient_boosting.{main}.real",
    "utility_ratio": "utility.hist_gradient_boosting.{main}.ratio",
    "utility_macro_f1_synthetic": "utility.hist_gradient_boosting.macro_f1.synthetic",
    "utility_macro_f1_real": "utility.hist_gradient_boosting.macro_f1.real",
    "utility_linear_synthetic": "utility.linear.{main}.synthetic",
    "column_shapes": "fidelity.column_shapes",
    "column_pair_trends": "fidelity.column_pair_trends",
    "detection_logistic_auc": "detection.logistic_auc",
    "detection_hgb_auc": "detection.hist_gradient_boosting_auc",
    "dcr_median_ratio": "privacy.dcr_median_ratio",
    "membership_auc": "privacy.membership_auc",
    "exact_copy_rate": "privacy.exact_copy_rate",
}


def record_report(report: Any, task: str, row: dict) -> None:
    """Copy the headline figures of an evaluation report into a result row."""
    main = "r2" if task == "regression" else "roc_auc"
    row["main_metric"] = f"{main} (hist_gradient_boosting)"
    for column, key in _REPORT_KEYS.items():
        try:
            row[column] = float_or_none(report[key.format(main=main)])
        except KeyError:
            row[column] = None


def run_cell(cell: dict) -> dict:
    """Run one cell in this process and return its result row (failures in ``status``)."""
    from tabsynth.bench.contenders import CONTENDERS, CellContext
    from tabsynth.bench.data import DatasetSpec, build_metadata, prepare_data

    peak = PeakRSS()
    row: dict[str, Any] = {k: None for k in RESULT_COLUMNS}
    spec = DatasetSpec(**cell["dataset"])
    contender = CONTENDERS[cell["model"]]
    row.update(
        dataset=spec.name,
        model=cell["model"],
        epsilon=cell.get("epsilon"),
        seed=cell["seed"],
        target=spec.target,
        epochs=cell.get("epochs") if contender.uses_epochs else None,
        rss_method=peak.method,
        delta=cell.get("delta"),
    )
    notes: list[str] = []
    try:
        train, test, task, notes = prepare_data(
            spec, cell.get("max_rows"), cell.get("max_test_rows"), cell.get("split_seed", 0)
        )
        row.update(task=task, n_train=len(train), n_test=len(test), n_columns=train.shape[1])
        meta = build_metadata(train, spec.kinds, notes)
        ctx = CellContext(cell, train, test, meta, spec.kinds, peak, row)
        syn = contender.fit_sample(ctx)
        import tabsynth

        with peak.phase(row, "evaluate"):
            report = tabsynth.evaluate(
                train,
                syn,
                metadata=meta,
                holdout=test,
                target=spec.target,
                task=task,
                random_state=cell["seed"],
                **({"metrics": cell["metrics"]} if cell.get("metrics") else {}),
            )
        record_report(report, task, row)
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a failing cell is a result, not a crash
        message = " ".join(str(exc).split()) or type(exc).__name__
        row["status"] = f"error: {type(exc).__name__}: {message}"[:300]
        traceback.print_exc()
    row["peak_rss_process_mib"] = peak.process_peak or None
    row["note"] = "; ".join(notes) or None
    return row


def worker_main(argv: Sequence[str], handler: Callable[[dict], dict]) -> int:
    """Entry point of a worker process: ``TASK.json RESULT.json`` -> pin threads, run
    ``handler(task)``, write its result (an ``error`` entry if it raised)."""
    if len(argv) != 2:
        print("usage: ... TASK.json RESULT.json", file=sys.stderr)
        return 2
    task = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    set_threads(task.get("threads"))
    try:
        result, code = handler(task), 0
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which goes on
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        code = 1
    atomic_write_bytes(argv[1], json.dumps(jsonable(result), indent=1).encode("utf-8"))
    return code


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def cell_env(threads: int | None) -> dict[str, str]:
    """A worker's environment: this checkout first on PYTHONPATH (the anchor interpreter runs
    this tabsynth too), native thread pools pinned before numpy or torch load."""
    env = dict(os.environ, **thread_env(threads))
    env["PYTHONPATH"] = os.pathsep.join([str(_repo_root()), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_worker(
    command: Sequence[str],
    task: dict,
    folder: Path,
    key: str,
    timeout: float | None = None,
) -> dict:
    """Run ``command + [TASK.json, RESULT.json]`` in a fresh process; return its JSON result.

    The task goes to ``folder/cells/KEY.spec.json``, the result to ``KEY.json``, the output to
    ``folder/logs/KEY.log``. A worker that dies or times out gets ``{"error": ...}``.
    """
    cells, logs = folder / "cells", folder / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = cells / f"{key}.spec.json", cells / f"{key}.json"
    atomic_write_bytes(spec_path, json.dumps(task, indent=1).encode("utf-8"))
    result_path.unlink(missing_ok=True)
    log_path = logs / f"{key}.log"
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(
                [*command, str(spec_path), str(result_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=cell_env(task.get("threads")),
            )
            code: int | None = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    if result_path.exists():
        return json.loads(result_path.read_text(encoding="utf-8"))
    if code is None:
        return {"error": f"timeout after {timeout:g} s"}
    tail = log_path.read_text(encoding="utf-8", errors="replace").strip()
    last = tail.splitlines()[-1] if tail else ""
    return {"error": f"process exited with code {code}: {last}"}


def run_cell_subprocess(
    python: str, cell: dict, folder: Path, key: str, timeout: float | None = None
) -> dict:
    """Run ``cell`` with ``python -m tabsynth.bench.cell`` in a fresh process; return its row."""
    row = run_worker([python, "-m", "tabsynth.bench.cell"], cell, folder, key, timeout)
    if "error" in row:
        return {**{k: None for k in RESULT_COLUMNS}, "status": f"error: {row['error']}"[:300]}
    return row


if __name__ == "__main__":
    raise SystemExit(worker_main(sys.argv[1:], run_cell))
