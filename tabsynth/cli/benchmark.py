"""The utility benchmark suite behind ``tabsynth benchmark``.

For each dataset (the shared real tables with their manifest target and task, the demo tables,
or a user CSV) the table is split 80/20 once (fixed seed, stratified for classification); each
model (tabsynth CTGAN/TVAE with and without DP, and the ctgan / SDV anchors when importable) is
fitted on the training part, samples the training row count and is scored with
``tabsynth.evaluate(train, synthetic, holdout=test, target=target)``.

Every (dataset, model, epsilon, seed) cell runs in a fresh Python subprocess, so peak memory is
the cell's own; inside it the kernel's peak-RSS counter is reset at the start of each phase
(``/proc/self/clear_refs``), so fit, sample and evaluate each get their own peak (where that is
not allowed the figure falls back to the process peak so far, an upper bound). Cells talk to the
parent through JSON files (no pickle). A failing cell is recorded with its error and the suite
goes on.

Outputs in the results folder: ``results.csv`` (one row per cell, rewritten after every cell so
an interrupted run keeps what it measured), ``results.md`` (readable tables) and
``utility_vs_epsilon.png``; ``cells/`` keeps each cell's JSON (``--resume`` reuses them) and
``logs/`` each cell's output.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import io
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tabsynth.cli._io import CLIError, atomic_write_bytes

__all__ = [
    "ANCHOR_MODELS",
    "BenchmarkConfig",
    "DEMO_TARGETS",
    "MODELS",
    "QUICK",
    "TABSYNTH_MODELS",
    "DatasetSpec",
    "resolve_datasets",
    "run_benchmark",
    "run_cell",
    "split_table",
    "write_markdown",
    "write_plot",
]

TABSYNTH_MODELS = ("ctgan", "tvae")
#: model name -> (module that must be importable, label)
ANCHOR_MODELS: dict[str, tuple[str, str]] = {
    "anchor-ctgan": ("ctgan", "ctgan.CTGAN"),
    "anchor-tvae": ("ctgan", "ctgan.TVAE"),
    "gaussiancopula": ("sdv", "SDV GaussianCopula"),
}
MODELS = TABSYNTH_MODELS + tuple(ANCHOR_MODELS)
DEMO_TARGETS = {"patients": "readmitted_30d", "loans": "default"}
#: settings of ``--quick`` (each can still be overridden on the command line)
#: 40 epochs x 15 batches of 200 = 600 optimizer steps. Fewer leave the models close to
#: independent columns (TSTR ~ 0.5 at 30-375 steps on Adult; TVAE reached 0.83 at 900 steps).
QUICK: dict[str, Any] = {
    "models": ["ctgan", "tvae"],
    "epochs": 40,
    "batch_size": 200,
    "max_rows": 3000,
    "max_test_rows": 1500,
    "demo_rows": 3000,
    "seeds": [0],
}
DEFAULTS: dict[str, Any] = {
    "models": list(MODELS),
    "epochs": 100,
    "batch_size": 500,
    "max_rows": None,
    "max_test_rows": None,
    "demo_rows": 10_000,
    "seeds": [0],
}
RESULT_COLUMNS = [
    "dataset",
    "model",
    "epsilon",
    "seed",
    "status",
    "target",
    "task",
    "n_train",
    "n_test",
    "n_columns",
    "epochs",
    "fit_s",
    "preprocess_s",
    "train_s",
    "sample_s",
    "evaluate_s",
    "cell_s",
    "peak_rss_fit_mib",
    "peak_rss_sample_mib",
    "peak_rss_evaluate_mib",
    "rss_method",
    "main_metric",
    "utility_synthetic",
    "utility_real",
    "utility_ratio",
    "utility_linear_synthetic",
    "column_shapes",
    "column_pair_trends",
    "detection_logistic_auc",
    "dcr_median_ratio",
    "membership_auc",
    "exact_copy_rate",
    "epsilon_spent",
    "delta",
    "note",
]


# -- datasets ---------------------------------------------------------------------------------
@dataclass
class DatasetSpec:
    """Where a benchmark table comes from; JSON-able so a cell subprocess can rebuild it."""

    name: str
    source: str  # "shared" | "demo" | "file"
    target: str
    task: str | None = None
    path: str | None = None
    rows: int | None = None  # demo tables only
    kinds: dict[str, str] = field(default_factory=dict)
    leakage: list[str] = field(default_factory=list)


def resolve_datasets(
    names: Sequence[str] | None,
    data: Sequence[str] = (),
    targets: Sequence[str] = (),
    tasks: Sequence[str] = (),
    demo_rows: int = 10_000,
) -> list[DatasetSpec]:
    """Dataset names (``all``, ``shared``, ``demo``, a shared table or a demo table) + files."""
    from tabsynth.datasets import list_shared, shared_info

    shared = list_shared()
    chosen: list[str] = []
    wanted = list(names) if names else (["all"] if not data else [])
    for name in wanted:
        expand = {
            "all": shared + list(DEMO_TARGETS),
            "shared": shared,
            "demo": list(DEMO_TARGETS),
        }.get(name, [name])
        for item in expand:
            if item not in chosen:
                chosen.append(item)
    specs: list[DatasetSpec] = []
    for name in chosen:
        if name in DEMO_TARGETS:
            specs.append(
                DatasetSpec(name, "demo", DEMO_TARGETS[name], task="binary", rows=demo_rows)
            )
        elif name in shared:
            info = shared_info(name)
            specs.append(
                DatasetSpec(
                    name,
                    "shared",
                    info.target,
                    task=info.task,
                    path=str(info.path),
                    kinds=dict(info.column_kinds),
                    leakage=list(info.leakage_columns),
                )
            )
        else:
            known = ", ".join(["all", "shared", "demo", *shared, *DEMO_TARGETS])
            hint = "" if shared else " (the shared datasets folder was not found)"
            raise CLIError(f"unknown dataset {name!r}; choose from {known}{hint}")
    if len(targets) != len(data):
        raise CLIError("give one --target per --data file (in the same order)")
    if tasks and len(tasks) != len(data):
        raise CLIError("give one --task per --data file, or none")
    for i, path in enumerate(data):
        p = Path(path)
        if not p.is_file():
            raise CLIError(f"--data file {path!r} does not exist")
        stem = p.name.split(".")[0]
        specs.append(
            DatasetSpec(
                stem,
                "file",
                targets[i],
                task=tasks[i] if tasks else None,
                path=str(p.resolve()),
            )
        )
    if not specs:
        raise CLIError("no dataset to run; name some with --datasets or give --data")
    return specs


def _guess_task(y: Any) -> str:
    import pandas as pd

    values = y.dropna()
    n = values.nunique()
    numeric = pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(
        values.dtype
    )
    if not numeric or n <= 2:
        return "binary" if n <= 2 else "multiclass"
    if pd.api.types.is_integer_dtype(values.dtype) and n <= 20:
        return "multiclass"
    return "regression"


def _strata(y: Any) -> Any:
    """A stratification key (missing target values form their own stratum)."""
    key = y.astype(object).where(y.notna(), "__missing__").astype(str)
    counts = key.value_counts()
    if len(counts) < 2 or counts.min() < 2:
        return None
    return key


def split_table(
    df: Any, target: str, task: str | None, seed: int = 0, test_size: float = 0.2
) -> tuple[Any, Any, str]:
    """80/20 train/test split with a fixed seed, stratified on the target for classification.

    Returns ``(train, test, note)``; the note says when stratification was not possible.
    """
    from sklearn.model_selection import train_test_split

    note = ""
    strata = None
    if task != "regression":
        strata = _strata(df[target])
        if strata is None:
            note = f"target {target!r} has a class with < 2 rows: split not stratified"
    train, test = train_test_split(df, test_size=test_size, random_state=seed, stratify=strata)
    return train.reset_index(drop=True), test.reset_index(drop=True), note


def _subsample(df: Any, n: int, target: str, task: str | None, seed: int) -> Any:
    if n is None or len(df) <= n:
        return df
    from sklearn.model_selection import train_test_split

    strata = _strata(df[target]) if task != "regression" else None
    try:
        part, _ = train_test_split(df, train_size=n, random_state=seed, stratify=strata)
    except ValueError:  # a stratum too small for the requested size
        part, _ = train_test_split(df, train_size=n, random_state=seed)
    return part.reset_index(drop=True)


def load_dataset(spec: DatasetSpec) -> tuple[Any, list[str]]:
    """The full table of a dataset spec, leakage columns dropped."""
    notes: list[str] = []
    if spec.source == "shared":
        from tabsynth.datasets import load_shared

        df, _ = load_shared(spec.name)
    elif spec.source == "demo":
        from tabsynth.datasets import load_demo

        df = load_demo(spec.name, n_rows=spec.rows or 10_000, random_state=0)
    else:
        from tabsynth.datasets import read_table

        df = read_table(spec.path)
    if spec.target not in df.columns:
        raise CLIError(f"dataset {spec.name!r}: target column {spec.target!r} is not in the table")
    drop = [c for c in spec.leakage if c in df.columns]
    if drop:
        df = df.drop(columns=drop)
        notes.append(f"dropped leakage columns {drop}")
    return df, notes


def prepare_data(
    spec: DatasetSpec,
    max_rows: int | None = None,
    max_test_rows: int | None = None,
    split_seed: int = 0,
) -> tuple[Any, Any, str, list[str]]:
    """``(train, test, task, notes)`` for one dataset: split, capped, unusable columns dropped."""
    df, notes = load_dataset(spec)
    task = spec.task or _guess_task(df[spec.target])
    train, test, note = split_table(df, spec.target, task, seed=split_seed)
    if note:
        notes.append(note)
    n_train = len(train)
    train = _subsample(train, max_rows, spec.target, task, split_seed)
    test = _subsample(test, max_test_rows, spec.target, task, split_seed)
    if len(train) < n_train:
        notes.append(f"training rows subsampled {n_train} -> {len(train)}")
    empty = [c for c in train.columns if train[c].isna().all()]
    if empty:
        train, test = train.drop(columns=empty), test.drop(columns=empty)
        notes.append(f"dropped columns with no value in the training rows: {empty}")
    return train, test, task, notes


def build_metadata(train: Any, kinds: dict[str, str], notes: list[str]) -> Any:
    """Inferred metadata with the manifest's column kinds declared where they differ."""
    from tabsynth.errors import TabsynthError
    from tabsynth.metadata import Metadata

    meta = Metadata.infer(train)
    for name, kind in kinds.items():
        if name in meta and meta[name].kind != kind:
            if kind == "boolean" and meta[name].kind == "categorical":
                continue  # two text labels (e.g. "yes"/"no"): a 2-level categorical is the same
            try:
                meta.update_column(name, kind=kind)
            except TabsynthError as exc:
                notes.append(f"kept inferred kind of {name!r} ({exc})")
    return meta


# -- peak memory per phase --------------------------------------------------------------------
class PeakRSS:
    """Peak resident memory of this process per phase.

    Linux lets a process reset its own peak (``VmHWM``) by writing 5 to ``/proc/self/clear_refs``;
    elsewhere the figure is ``ru_maxrss``, the peak of the process so far (an upper bound).
    """

    def __init__(self) -> None:
        self.method = "vmhwm" if self._reset() else "ru_maxrss"

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        if self.method == "vmhwm":
            self._reset()

    def peak_mib(self) -> float:
        if self.method == "vmhwm":
            try:
                with open("/proc/self/status") as fh:
                    for line in fh:
                        if line.startswith("VmHWM:"):
                            return int(line.split()[1]) / 1024
            except OSError:
                pass
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


# -- the models -------------------------------------------------------------------------------
def _anchor_frame(train: Any, meta: Any) -> tuple[Any, list[str], dict[str, str]]:
    """The training table in the plain types the anchor libraries take.

    id columns are left out (they are not modelled), datetimes become float seconds, nullable
    numeric extension types become float, discrete columns become object with NaN for missing.
    """
    import numpy as np
    import pandas as pd

    out = {}
    discrete: list[str] = []
    kinds: dict[str, str] = {}
    for spec in meta:
        name, kind = spec.name, spec.kind
        if kind == "id":
            continue
        s = train[name]
        kinds[name] = kind
        if kind == "datetime":
            values = pd.to_datetime(s)
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            secs = values.astype("datetime64[ns]").to_numpy().astype("int64") / 1e9
            secs[values.isna().to_numpy()] = np.nan
            out[name] = secs
        elif kind in ("categorical", "boolean"):
            out[name] = s.astype(object).where(s.notna(), np.nan).to_numpy(dtype=object)
            discrete.append(name)
        else:
            out[name] = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    return pd.DataFrame(out), discrete, kinds


def _from_anchor(syn: Any, kinds: dict[str, str]) -> Any:
    """Undo ``_anchor_frame`` where evaluation needs it (datetimes, integer rounding)."""
    import numpy as np
    import pandas as pd

    syn = syn.copy()
    for name, kind in kinds.items():
        if name not in syn.columns:
            continue
        if kind == "datetime":
            secs = pd.to_numeric(syn[name], errors="coerce").to_numpy(dtype="float64")
            syn[name] = pd.to_datetime(secs * 1e9, unit="ns", errors="coerce")
        elif kind == "integer":
            values = pd.to_numeric(syn[name], errors="coerce").to_numpy(dtype="float64")
            syn[name] = np.round(values)
    return syn


def _fit_sample_tabsynth(
    cell: dict, train: Any, test: Any, meta: Any, peak: PeakRSS, row: dict
) -> Any:
    import pandas as pd

    import tabsynth

    cls = tabsynth.CTGAN if cell["model"] == "ctgan" else tabsynth.TVAE
    params: dict[str, Any] = {
        "epochs": cell["epochs"],
        "batch_size": cell["batch_size"],
        "random_state": cell["seed"],
        "verbose": False,
        "device": cell.get("device", "auto"),
    }
    if cell.get("epsilon") is not None:
        params["epsilon"] = cell["epsilon"]
        if cell.get("delta") is not None:
            params["delta"] = cell["delta"]
        # the schema (kinds, domains, bounds) stands for a public codebook: read off the
        # full table and declared public, so no epsilon is spent on it; with a private
        # schema the category lists are instead derived from the training rows with DP
        meta = build_metadata(pd.concat([train, test], ignore_index=True), {}, [])
        for name, kind in cell.get("kinds", {}).items():
            if name in meta and meta[name].kind != kind:
                meta.update_column(name, kind=kind)
        private_lists = not cell.get("public_schema", True)
        meta.declare_public(category_lists=not private_lists)
        if private_lists:
            params["dp_domains"] = True
    model = cls(**params)
    peak.reset()
    t0 = time.perf_counter()
    model.fit(train, metadata=meta)
    row["fit_s"] = time.perf_counter() - t0
    row["peak_rss_fit_mib"] = peak.peak_mib()
    timings = getattr(model, "timings_", {}) or {}
    row["preprocess_s"] = timings.get("preprocess_s")
    row["train_s"] = timings.get("train_s")
    if cell.get("epsilon") is not None:
        row["epsilon_spent"], row["delta"] = _privacy_spent(model)
    peak.reset()
    t0 = time.perf_counter()
    syn = model.sample(len(train), random_state=cell["seed"])
    row["sample_s"] = time.perf_counter() - t0
    row["peak_rss_sample_mib"] = peak.peak_mib()
    return syn


def _privacy_spent(model: Any) -> tuple[float | None, float | None]:
    """(epsilon, delta) the fitted model reports, whatever shape its privacy report has."""
    for eps_attr, delta_attr in (("epsilon_spent_", "delta_"), ("epsilon_", "delta_")):
        eps = getattr(model, eps_attr, None)
        if eps is not None:
            return float(eps), _float_or_none(getattr(model, delta_attr, None))
    try:
        report = model.privacy_report()
    except Exception:  # noqa: BLE001 - the report is informative only
        return None, None
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    if isinstance(report, dict):
        eps = report.get("epsilon_spent", report.get("epsilon"))
        return _float_or_none(eps), _float_or_none(report.get("delta"))
    eps = getattr(report, "epsilon", None)
    return _float_or_none(eps), _float_or_none(getattr(report, "delta", None))


def _float_or_none(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _impute_for_ctgan(frame: Any, discrete: list[str]) -> tuple[Any, list[str], dict[str, str]]:
    """ctgan refuses missing values in continuous columns: fill them with the median and add a
    discrete ``<col>__missing`` indicator, which ``_restore_missing`` turns back into NaN."""
    import numpy as np

    frame = frame.copy()
    indicators: dict[str, str] = {}
    for name in [c for c in frame.columns if c not in discrete]:
        missing = frame[name].isna().to_numpy()
        if missing.any():
            flag = f"{name}__missing"
            fill = float(np.nanmedian(frame[name].to_numpy())) if (~missing).any() else 0.0
            frame[name] = frame[name].fillna(fill)
            frame[flag] = np.where(missing, "yes", "no").astype(object)
            indicators[name] = flag
    return frame, [*discrete, *indicators.values()], indicators


def _restore_missing(syn: Any, indicators: dict[str, str]) -> Any:
    for name, flag in indicators.items():
        if name in syn.columns and flag in syn.columns:
            syn.loc[syn[flag].astype(str) == "yes", name] = float("nan")
    return syn.drop(columns=[f for f in indicators.values() if f in syn.columns])


def _fit_sample_anchor(cell: dict, train: Any, meta: Any, peak: PeakRSS, row: dict) -> Any:
    frame, discrete, kinds = _anchor_frame(train, meta)
    seed, n = cell["seed"], len(train)
    peak.reset()
    t0 = time.perf_counter()
    if cell["model"] in ("anchor-ctgan", "anchor-tvae"):
        import ctgan

        frame, discrete_all, indicators = _impute_for_ctgan(frame, discrete)
        cls = ctgan.CTGAN if cell["model"] == "anchor-ctgan" else ctgan.TVAE
        extra = {"cuda": False}
        if cls is ctgan.CTGAN:
            extra["verbose"] = False
        model = cls(epochs=cell["epochs"], batch_size=cell["batch_size"], **extra)
        if hasattr(model, "set_random_state"):
            model.set_random_state(seed)
        model.fit(frame, discrete_columns=discrete_all)
        row["fit_s"] = time.perf_counter() - t0
        row["peak_rss_fit_mib"] = peak.peak_mib()
        peak.reset()
        t0 = time.perf_counter()
        syn = _restore_missing(model.sample(n), indicators)
    else:
        from sdv.metadata import Metadata as SDVMetadata
        from sdv.single_table import GaussianCopulaSynthesizer

        columns = {
            name: {"sdtype": "categorical"} if name in discrete else {"sdtype": "numerical"}
            for name in frame.columns
        }
        sdv_meta = SDVMetadata.load_from_dict({"tables": {"table": {"columns": columns}}})
        model = GaussianCopulaSynthesizer(sdv_meta)
        import sdv

        # SDV 2 takes and returns {table name: frame}; SDV 1 a frame
        model.fit({"table": frame} if int(sdv.__version__.split(".")[0]) >= 2 else frame)
        row["fit_s"] = time.perf_counter() - t0
        row["peak_rss_fit_mib"] = peak.peak_mib()
        peak.reset()
        t0 = time.perf_counter()
        syn = model.sample(num_rows=n)
        if isinstance(syn, dict):
            syn = next(iter(syn.values()))
    row["sample_s"] = time.perf_counter() - t0
    row["peak_rss_sample_mib"] = peak.peak_mib()
    return _from_anchor(syn, kinds)


def _metric(report: Any, name: str) -> float | None:
    try:
        return _float_or_none(report[name])
    except KeyError:
        return None


def _record_report(report: Any, task: str, row: dict) -> None:
    main = "r2" if task == "regression" else "roc_auc"
    row["main_metric"] = f"{main} (hist_gradient_boosting)"
    base = f"utility.hist_gradient_boosting.{main}"
    row["utility_synthetic"] = _metric(report, f"{base}.synthetic")
    row["utility_real"] = _metric(report, f"{base}.real")
    row["utility_ratio"] = _metric(report, f"{base}.ratio")
    row["utility_linear_synthetic"] = _metric(report, f"utility.linear.{main}.synthetic")
    row["column_shapes"] = _metric(report, "fidelity.column_shapes")
    row["column_pair_trends"] = _metric(report, "fidelity.column_pair_trends")
    row["detection_logistic_auc"] = _metric(report, "detection.logistic_auc")
    row["dcr_median_ratio"] = _metric(report, "privacy.dcr_median_ratio")
    row["membership_auc"] = _metric(report, "privacy.membership_auc")
    row["exact_copy_rate"] = _metric(report, "privacy.exact_copy_rate")


def run_cell(cell: dict) -> dict:
    """Run one (dataset, model, epsilon, seed) cell in this process and return its row.

    Called inside the cell subprocess; any failure is caught and recorded in ``status``.
    """
    peak = PeakRSS()
    row: dict[str, Any] = {k: None for k in RESULT_COLUMNS}
    spec = DatasetSpec(**cell["dataset"])
    row.update(
        dataset=spec.name,
        model=cell["model"],
        epsilon=cell.get("epsilon"),
        seed=cell["seed"],
        target=spec.target,
        epochs=cell["epochs"] if cell["model"] != "gaussiancopula" else None,
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
        if cell["model"] in TABSYNTH_MODELS:
            cell = {**cell, "kinds": spec.kinds}
            syn = _fit_sample_tabsynth(cell, train, test, meta, peak, row)
        else:
            syn = _fit_sample_anchor(cell, train, meta, peak, row)
        import tabsynth

        peak.reset()
        t0 = time.perf_counter()
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
        row["evaluate_s"] = time.perf_counter() - t0
        row["peak_rss_evaluate_mib"] = peak.peak_mib()
        _record_report(report, task, row)
        row["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - a failing cell is a result, not a crash
        message = " ".join(str(exc).split()) or type(exc).__name__
        row["status"] = f"error: {type(exc).__name__}: {message}"[:300]
        traceback.print_exc()
    row["note"] = "; ".join(notes) or None
    return row


def _cell_main(argv: Sequence[str]) -> int:
    """``python -m tabsynth.cli.benchmark CELL.json RESULT.json`` (the cell subprocess)."""
    if len(argv) != 2:
        print("usage: python -m tabsynth.cli.benchmark CELL.json RESULT.json", file=sys.stderr)
        return 2
    cell = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    if cell.get("threads"):
        import torch  # this process is the cell's own: pin its intra-op pool

        torch.set_num_threads(int(cell["threads"]))
    row = run_cell(cell)
    atomic_write_bytes(argv[1], json.dumps(_jsonable(row), indent=1).encode("utf-8"))
    return 0


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- the suite --------------------------------------------------------------------------------
def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _python_has(python: str, module: str, cache: dict) -> bool:
    key = (python, module)
    if key not in cache:
        if python == sys.executable:
            cache[key] = importlib.util.find_spec(module) is not None
        else:
            try:
                done = subprocess.run(
                    [python, "-c", f"import {module}"], capture_output=True, timeout=120
                )
                cache[key] = done.returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                cache[key] = False
    return cache[key]


def anchor_python(requested: str | None, log: Callable[[str], None]) -> str:
    """The interpreter for anchor cells: ``--anchor-python``, ``$TABSYNTH_ANCHOR_PYTHON``, this
    one when it has the anchors, else the repository's ``.venv-bench`` when present."""
    if requested:
        if not Path(requested).exists():
            raise CLIError(f"--anchor-python {requested!r} does not exist")
        return requested
    env = os.environ.get("TABSYNTH_ANCHOR_PYTHON")
    if env and Path(env).exists():
        return env
    if importlib.util.find_spec("ctgan") or importlib.util.find_spec("sdv"):
        return sys.executable
    bench = _repo_root() / ".venv-bench" / "bin" / "python"
    if bench.exists():
        log(f"anchors run with {bench} (they are not importable here)")
        return str(bench)
    return sys.executable


def _cell_key(dataset: str, model: str, epsilon: float | None, seed: int) -> str:
    eps = "nodp" if epsilon is None else f"eps{epsilon:g}"
    return f"{dataset}__{model}__{eps}__seed{seed}"


def _env_for_cell(threads: int | None) -> dict[str, str]:
    env = dict(os.environ)
    root = str(_repo_root())
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    if threads:
        for var in (
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "OPENBLAS_NUM_THREADS",
            "NUMEXPR_NUM_THREADS",
        ):
            env[var] = str(threads)
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def _run_subprocess(
    python: str, cell: dict, folder: Path, key: str, timeout: float | None, threads: int | None
) -> dict:
    cells, logs = folder / "cells", folder / "logs"
    cells.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    spec_path, result_path = cells / f"{key}.spec.json", cells / f"{key}.json"
    atomic_write_bytes(spec_path, json.dumps(cell, indent=1).encode("utf-8"))
    result_path.unlink(missing_ok=True)
    cmd = [python, "-m", "tabsynth.cli.benchmark", str(spec_path), str(result_path)]
    with open(logs / f"{key}.log", "wb") as log:
        try:
            done = subprocess.run(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env=_env_for_cell(threads),
            )
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = None
    if result_path.exists():
        return json.loads(result_path.read_text(encoding="utf-8"))
    row = {k: None for k in RESULT_COLUMNS}
    if code is None:
        row["status"] = f"error: timeout after {timeout:g} s"
    else:
        tail = (logs / f"{key}.log").read_text(encoding="utf-8", errors="replace").strip()
        last = tail.splitlines()[-1] if tail else ""
        row["status"] = f"error: cell process exited with code {code}: {last}"[:300]
    return row


@dataclass
class BenchmarkConfig:
    """Everything ``run_benchmark`` needs; the CLI fills it from the arguments."""

    datasets: list[DatasetSpec]
    models: list[str]
    epochs: int
    seeds: list[int]
    epsilons: list[float] = field(default_factory=list)
    delta: float | None = None
    batch_size: int = 500
    max_rows: int | None = None
    max_test_rows: int | None = None
    split_seed: int = 0
    device: str = "auto"
    public_schema: bool = True
    cell_timeout: float | None = None
    threads: int | None = 1
    anchor_python: str | None = None
    resume: bool = False
    quick: bool = False
    metrics: list[str] | None = None  # metric families for evaluate (None: all)


def _cells(cfg: BenchmarkConfig) -> list[tuple[DatasetSpec, str, float | None, int]]:
    out = []
    for ds in cfg.datasets:
        for model in cfg.models:
            epsilons = [None, *cfg.epsilons] if model in TABSYNTH_MODELS else [None]
            for eps in epsilons:
                for seed in cfg.seeds:
                    out.append((ds, model, eps, seed))
    return out


def run_benchmark(
    cfg: BenchmarkConfig, out: str | os.PathLike[str], log: Callable[[str], None] = print
) -> list[dict]:
    """Run every cell, writing ``results.csv`` after each, then ``results.md`` and the plot."""
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"results folder {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    unknown = [m for m in cfg.models if m not in MODELS]
    if unknown:
        raise CLIError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    needs_anchor = any(m in ANCHOR_MODELS for m in cfg.models)
    anchor_py = anchor_python(cfg.anchor_python, log) if needs_anchor else sys.executable
    probe_cache: dict = {}
    cells = _cells(cfg)
    rows: list[dict] = []
    started = time.perf_counter()
    for i, (ds, model, eps, seed) in enumerate(cells, 1):
        key = _cell_key(ds.name, model, eps, seed)
        label = f"[{i}/{len(cells)}] {ds.name} / {model} / " + (
            "no DP" if eps is None else f"ε={eps:g}"
        )
        label += f" / seed {seed}"
        cell = {
            "dataset": asdict(ds),
            "model": model,
            "epsilon": eps,
            "delta": cfg.delta if eps is not None else None,
            "seed": seed,
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "threads per cell": cfg.threads or "library default",
            "max_rows": cfg.max_rows,
            "max_test_rows": cfg.max_test_rows,
            "split_seed": cfg.split_seed,
            "device": cfg.device,
            "public_schema": cfg.public_schema,
            "metrics": cfg.metrics,
            "threads": cfg.threads,
        }
        cached = folder / "cells" / f"{key}.json"
        spec_file = folder / "cells" / f"{key}.spec.json"
        row = None
        if cfg.resume and cached.exists() and spec_file.exists():
            try:
                if json.loads(spec_file.read_text(encoding="utf-8")) == cell:
                    row = json.loads(cached.read_text(encoding="utf-8"))
                    if str(row.get("status")) != "ok":
                        row = None
            except ValueError:
                row = None
            if row is not None:
                log(f"{label}: reused from {cached}")
        if row is None and model in ANCHOR_MODELS:
            module = ANCHOR_MODELS[model][0]
            if not _python_has(anchor_py, module, probe_cache):
                row = {k: None for k in RESULT_COLUMNS}
                row["status"] = f"skipped: {module} is not importable (pip install tabsynth[bench])"
                log(f"{label}: {row['status']}")
        if row is None:
            python = anchor_py if model in ANCHOR_MODELS else sys.executable
            t0 = time.perf_counter()
            row = _run_subprocess(python, cell, folder, key, cfg.cell_timeout, cfg.threads)
            row["cell_s"] = time.perf_counter() - t0
            log(f"{label}: {_describe(row)}")
        row.update(dataset=ds.name, model=model, epsilon=eps, seed=seed)
        row.setdefault("target", ds.target)
        rows.append(row)
        _write_csv(rows, folder / "results.csv")
    settings = _settings(cfg, anchor_py, time.perf_counter() - started)
    write_markdown(rows, folder / "results.md", settings)
    plot_note = write_plot(rows, folder / "utility_vs_epsilon.png")
    if plot_note:
        log(plot_note)
    log(f"suite finished in {settings['wall_time']}; results in {folder}/")
    return rows


def _describe(row: dict) -> str:
    if row.get("status") != "ok":
        return str(row.get("status"))
    parts = [
        f"fit {_num(row.get('fit_s'), '.1f')} s",
        f"sample {_num(row.get('sample_s'), '.2f')} s",
    ]
    if row.get("peak_rss_fit_mib") is not None:
        parts.append(f"peak {_num(row.get('peak_rss_fit_mib'), '.0f')} MiB")
    if row.get("utility_synthetic") is not None:
        parts.append(
            f"TSTR {_num(row.get('utility_synthetic'))} (TRTR {_num(row.get('utility_real'))})"
        )
    if row.get("column_shapes") is not None:
        parts.append(f"shapes {_num(row.get('column_shapes'))}")
    return ", ".join(parts)


def _num(value: Any, spec: str = ".3f") -> str:
    value = _float_or_none(value)
    return "–" if value is None else format(value, spec)


def _write_csv(rows: list[dict], path: Path) -> None:
    import pandas as pd

    frame = pd.DataFrame([{k: r.get(k) for k in RESULT_COLUMNS} for r in rows])
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def _settings(cfg: BenchmarkConfig, anchor_py: str, wall: float) -> dict:
    import tabsynth

    versions = {"tabsynth": tabsynth.__version__, "python": platform.python_version()}
    for pkg in ("torch", "pandas", "numpy", "sklearn"):
        module = sys.modules.get(pkg)
        if module is None:
            try:
                module = __import__(pkg)
            except ImportError:
                continue
        versions[pkg] = getattr(module, "__version__", "?")
    minutes, seconds = divmod(wall, 60)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()}",
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "preset": "quick" if cfg.quick else "custom/full",
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "seeds": cfg.seeds,
        "epsilons": cfg.epsilons,
        "delta": cfg.delta,
        "threads per cell": cfg.threads or "library default",
        "max_rows": cfg.max_rows,
        "max_test_rows": cfg.max_test_rows,
        "split": f"80/20, seed {cfg.split_seed}, stratified for classification",
        "dp_schema": "public (declared)"
        if cfg.public_schema
        else "category lists DP-derived (paid from ε), kinds and bounds declared",
        "anchor_python": anchor_py,
        "wall_time": f"{int(minutes)} min {seconds:04.1f} s",
    }


# -- reports ----------------------------------------------------------------------------------
def _median_range(values: list[float], spec: str) -> str:
    import statistics

    clean = [v for v in (_float_or_none(x) for x in values) if v is not None]
    if not clean:
        return "–"
    mid = format(statistics.median(clean), spec)
    if len(clean) == 1:
        return mid
    return f"{mid} [{format(min(clean), spec)}–{format(max(clean), spec)}]"


_MD_COLUMNS = [
    ("fit_s", "fit s", ".1f"),
    ("sample_s", "sample s", ".2f"),
    ("peak_rss_fit_mib", "peak MiB (fit)", ".0f"),
    ("column_shapes", "shapes", ".3f"),
    ("column_pair_trends", "pair trends", ".3f"),
    ("detection_logistic_auc", "detection AUC (LR)", ".3f"),
    ("utility_synthetic", "TSTR", ".3f"),
    ("utility_real", "TRTR", ".3f"),
    ("utility_ratio", "TSTR/TRTR", ".3f"),
    ("dcr_median_ratio", "DCR ratio", ".2f"),
    ("epsilon_spent", "ε spent", ".3g"),
]


def _eps_label(eps: Any) -> str:
    value = _float_or_none(eps)
    return "∞ (no DP)" if value is None else format(value, "g")


def write_markdown(rows: list[dict], path: str | os.PathLike[str], settings: dict) -> Path:
    """One table per dataset (median [min–max] over seeds), then failures and notes."""
    lines = ["# tabsynth benchmark results", ""]
    for key, value in settings.items():
        if isinstance(value, list):
            value = ", ".join(map(str, value)) or "–"
        lines.append(f"- **{key.replace('_', ' ')}**: {value}")
    lines.append(
        "- **columns**: TSTR = hist-gradient-boosting trained on synthetic, scored on the real "
        "test split (ROC AUC for classification, R² for regression); TRTR = same trained on the "
        "real training split; shapes / pair trends: 1 = same marginals / pairwise trends; "
        "detection AUC 0.5 = indistinguishable; DCR ratio ≥ 1 is reassuring. Times and peak "
        "memory are per cell, measured in its own process."
    )
    lines.append("")
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    problems: list[str] = []
    notes: dict[str, str] = {}
    for ds in datasets:
        mine = [r for r in rows if r["dataset"] == ds]
        ok = [r for r in mine if r.get("status") == "ok"]
        first = next(iter(ok), mine[0])
        lines.append(f"## {ds}")
        lines.append("")
        if ok:
            lines.append(
                f"target `{first.get('target')}` ({first.get('task')}), "
                f"{first.get('n_train')} training rows, {first.get('n_test')} test rows, "
                f"{first.get('n_columns')} columns"
            )
            lines.append("")
        header = ["model", "ε", "runs", *(label for _, label, _ in _MD_COLUMNS)]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        groups: dict[tuple, list[dict]] = {}
        for r in mine:
            groups.setdefault((r["model"], _float_or_none(r.get("epsilon"))), []).append(r)
        for (model, eps), group in groups.items():
            good = [r for r in group if r.get("status") == "ok"]
            for r in group:
                if r.get("status") != "ok":
                    problems.append(
                        f"{ds} / {model} / ε {_eps_label(eps)} / seed {r['seed']}: "
                        f"{r.get('status')}"
                    )
                if r.get("note"):
                    notes[ds] = str(r["note"])
            cells = [model, _eps_label(eps), f"{len(good)}/{len(group)}"]
            cells += [_median_range([r.get(k) for r in good], spec) for k, _, spec in _MD_COLUMNS]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += ["## Notes", ""]
        lines += [f"- {ds}: {text}" for ds, text in notes.items()]
        lines.append("")
    if problems:
        lines += ["## Skipped or failed cells", ""]
        lines += [f"- {p}" for p in problems]
        lines.append("")
    return atomic_write_bytes(path, "\n".join(lines).encode("utf-8"))


def write_plot(rows: list[dict], path: str | os.PathLike[str]) -> str | None:
    """Utility (TSTR main score) against ε, one panel per dataset; None or a note if skipped.

    Non-DP runs sit at the right edge, labelled ∞; anchors are non-DP points there too; the
    dashed line is TRTR (the same model trained on real rows).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    import statistics

    ok = [r for r in rows if r.get("status") == "ok" and r.get("utility_synthetic") is not None]
    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    if not datasets:
        return "plot skipped: no results"
    eps_values = sorted(
        {e for e in (_float_or_none(r.get("epsilon")) for r in rows) if e is not None}
    )
    if eps_values:
        lo, hi = math.log10(min(eps_values)), math.log10(max(eps_values))
        inf_x = 10 ** (hi + max(0.5, (hi - lo) * 0.25))
    else:
        inf_x = 1.0
    ncols = min(3, len(datasets))
    nrows = -(-len(datasets) // ncols)
    fig = Figure(figsize=(4.6 * ncols, 3.4 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    markers = "osD^vP*X"
    for k, ds in enumerate(datasets):
        ax = fig.add_subplot(nrows, ncols, k + 1)
        mine = [r for r in ok if r["dataset"] == ds]
        models = list(dict.fromkeys(r["model"] for r in mine))
        for j, model in enumerate(models):
            by_eps: dict[float, list[float]] = {}
            for r in mine:
                if r["model"] != model:
                    continue
                eps = _float_or_none(r.get("epsilon"))
                by_eps.setdefault(inf_x if eps is None else eps, []).append(
                    float(r["utility_synthetic"])
                )
            xs = sorted(by_eps)
            ys = [statistics.median(by_eps[x]) for x in xs]
            ax.plot(xs, ys, marker=markers[j % len(markers)], label=model)
        real = [_float_or_none(r.get("utility_real")) for r in mine]
        real = [v for v in real if v is not None]
        if real:
            ax.axhline(statistics.median(real), color="grey", linestyle="--", label="TRTR (real)")
        metric = next((r.get("main_metric") for r in mine), None) or "utility"
        if str(metric).startswith("roc_auc"):
            ax.axhline(0.5, color="lightgrey", linestyle=":", label="chance")
        if eps_values:
            ax.set_xscale("log")
            ticks = [*eps_values, inf_x]
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{e:g}" for e in eps_values] + ["∞"])
            ax.minorticks_off()
        else:
            ax.set_xticks([inf_x])
            ax.set_xticklabels(["∞ (no DP)"])
        ax.set_title(ds, fontsize=10)
        ax.set_xlabel("ε")
        ax.set_ylabel(f"TSTR {str(metric).split(' ')[0]}")
        ax.grid(alpha=0.3)
        if not mine:
            ax.text(0.5, 0.5, "no successful run", ha="center", va="center", transform=ax.transAxes)
        elif k == 0:
            ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(path, buf.getvalue())
    return None


if __name__ == "__main__":  # the cell subprocess
    raise SystemExit(_cell_main(sys.argv[1:]))
