"""Shared helpers for the benchmarks: data loading, isolated workers, timing, memory, tables.

Every contender runs in a fresh Python subprocess (see :func:`run_worker`) so that its peak RSS
is its own and not the leftover of a previous contender. Inside a worker, :class:`PeakMeter`
resets the kernel's peak-RSS counter (``/proc/self/clear_refs``) at the start of each phase,
so a phase (fit, transform, sample) gets its own peak as well; where that reset is not
allowed the phase peak falls back to the process peak so far, which is still an upper bound.

Tasks and results cross the process boundary as JSON files (no pickle).
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
#: ../shared next to the repository root; TABSYNTH_SHARED overrides it
SHARED_DIR = Path(os.environ.get("TABSYNTH_SHARED", REPO_ROOT.parent / "shared"))
DATASETS_DIR = SHARED_DIR / "datasets"
ADULT_TARGET = "income"
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
MIB = 1024 * 1024


# -- data ---------------------------------------------------------------------------------
def load_manifest() -> dict:
    path = DATASETS_DIR / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: the shared datasets must sit in ../shared next to the repository "
            "(or set TABSYNTH_SHARED)"
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_adult(missing: str = "nan"):
    """Adult (32,561 × 15), cleaned exactly as baselines.md: leading/trailing blanks stripped.

    ``missing="nan"`` (default) reads the ``?`` marker as a missing value, as the manifest says:
    the realistic setting, and both contenders get the same frame (ctgan accepts NaN in
    discrete columns and encodes it as a category of its own; Adult's 3 columns with ``?``
    are all categorical). ``missing="category"`` keeps ``?`` as a category, which reproduces
    the frame baselines.md was measured on.
    """
    import pandas as pd

    if missing not in ("nan", "category"):
        raise ValueError(f"missing must be 'nan' or 'category', not {missing!r}")
    entry = load_manifest()["adult"]
    kwargs = dict(entry["read_csv_kwargs"])
    if missing == "category":
        kwargs.pop("na_values", None)
    df = pd.read_csv(DATASETS_DIR / entry["path"], **kwargs)
    for name in df.columns:
        s = df[name]
        if pd.api.types.is_object_dtype(s) or pd.api.types.is_string_dtype(s):
            df[name] = s.str.strip()
    return df


def split_adult(df):
    """The 80/20 split of baselines.md: train 26,048 rows, test 6,513 rows."""
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(df, test_size=0.2, stratify=df[ADULT_TARGET], random_state=0)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def adult_kinds() -> dict[str, str]:
    return dict(load_manifest()["adult"]["column_kinds"])


def adult_discrete_columns() -> list[str]:
    """The 9 columns every contender is told are discrete (categorical in the manifest)."""
    return [c for c, k in adult_kinds().items() if k in ("categorical", "boolean")]


def adult_metadata(df, public: bool = False):
    """tabsynth metadata for Adult: kinds declared from the manifest, the rest inferred.

    With ``public=True`` every fact (kinds, category domains, bounds, nullability) is declared
    public. For Adult this stands for the census codebook: the domains and ranges of the
    1994 CPS extract are published, so a DP run may use them without paying ε. They are read
    off the full 32,561-row file (train + test), which is what the codebook lists.
    """
    from tabsynth import Metadata

    meta = Metadata.infer(df)
    for name, kind in adult_kinds().items():
        if meta[name].kind != kind:
            meta.update_column(name, kind=kind)
    if public:
        meta.declare_public()
    return meta


# -- threads ------------------------------------------------------------------------------
def default_threads() -> int:
    return os.cpu_count() or 1


def thread_env(n: int) -> dict[str, str]:
    """Environment variables that pin every native thread pool to ``n`` threads."""
    return {var: str(n) for var in THREAD_ENV_VARS}


def set_threads(n: int) -> None:
    """Pin torch and the BLAS/OpenMP pools of this process to ``n`` threads.

    The environment variables only take effect in libraries loaded afterwards, which is why
    :func:`run_worker` also puts them in the worker's environment before it starts.
    """
    os.environ.update(thread_env(n))
    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(n)
    if importlib.util.find_spec("threadpoolctl") is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)


# -- memory and time ----------------------------------------------------------------------
def current_rss_mib() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except OSError:
        return float("nan")


def peak_rss_mib() -> float:
    """Peak RSS of this process (since start, or since the last peak reset)."""
    try:
        with open("/proc/self/status") as fh:
            match = re.search(r"VmHWM:\s+(\d+)\s+kB", fh.read())
        if match:
            return int(match.group(1)) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS (Linux ≥ 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


@dataclass
class Phase:
    """Wall time and memory of one measured phase."""

    name: str
    seconds: float = float("nan")
    rss_start_mib: float = float("nan")
    peak_rss_mib: float = float("nan")
    isolated: bool = False  # True when the peak was reset at the phase start

    @property
    def peak_delta_mib(self) -> float:
        return self.peak_rss_mib - self.rss_start_mib


@dataclass
class PeakMeter:
    """Measures phases of one process; keeps the lifetime peak across the per-phase resets."""

    phases: list[Phase] = field(default_factory=list)
    _lifetime_peak: float = 0.0

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        self._lifetime_peak = max(self._lifetime_peak, peak_rss_mib())
        ph = Phase(name, isolated=reset_peak_rss(), rss_start_mib=current_rss_mib())
        start = time.perf_counter()
        try:
            yield ph
        finally:
            ph.seconds = time.perf_counter() - start
            ph.peak_rss_mib = peak_rss_mib()
            self._lifetime_peak = max(self._lifetime_peak, ph.peak_rss_mib)
            self.phases.append(ph)

    @property
    def process_peak_mib(self) -> float:
        return max(self._lifetime_peak, peak_rss_mib())

    def to_dict(self) -> dict[str, float]:
        """Flat record: ``<phase>_s``, ``<phase>_peak_mib``, ``<phase>_delta_mib``."""
        out: dict[str, float] = {}
        for ph in self.phases:
            out[f"{ph.name}_s"] = ph.seconds
            out[f"{ph.name}_peak_mib"] = ph.peak_rss_mib
            out[f"{ph.name}_delta_mib"] = ph.peak_delta_mib
        out["process_peak_mib"] = self.process_peak_mib
        out["peak_isolated"] = all(ph.isolated for ph in self.phases)
        return out


@contextlib.contextmanager
def measure(name: str = "phase") -> Iterator[Phase]:
    """Time one block and record its peak RSS (reset at the start where the kernel allows)."""
    with PeakMeter().phase(name) as ph:
        yield ph


# -- isolated workers ---------------------------------------------------------------------
def run_worker(
    script: str | Path,
    task: dict,
    threads: int,
    timeout: float | None = None,
    python: str | None = None,
) -> dict:
    """Run ``python script --worker TASK.json RESULT.json`` in a fresh process; return its result.

    The worker inherits the environment plus the thread pins, so BLAS/OpenMP pools are sized
    before numpy or torch load. A failed worker returns ``{"error": ...}`` instead of raising,
    so one broken contender does not stop the others.
    """
    env = dict(os.environ, **thread_env(threads), PYTHONPATH=_pythonpath())
    with tempfile.TemporaryDirectory(prefix="tabsynth-bench-") as tmp:
        task_path, result_path = Path(tmp, "task.json"), Path(tmp, "result.json")
        task_path.write_text(json.dumps(dict(task, threads=threads)), encoding="utf-8")
        cmd = [python or sys.executable, str(script), "--worker", str(task_path), str(result_path)]
        try:
            proc = subprocess.run(
                cmd, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout} s"}
        if result_path.exists():
            result = json.loads(result_path.read_text(encoding="utf-8"))
        else:
            result = {"error": f"worker exited with code {proc.returncode} and no result"}
        if "error" in result:
            result["stderr_tail"] = proc.stderr[-3000:]
        return result


def _pythonpath() -> str:
    parts = [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    return os.pathsep.join(p for p in parts if p)


def worker_main(argv: Sequence[str], handler: Callable[[dict], dict]) -> int:
    """Entry point of a worker: read the task, pin threads, run ``handler``, write the result."""
    task_path, result_path = argv[0], argv[1]
    with open(task_path, encoding="utf-8") as fh:
        task = json.load(fh)
    set_threads(int(task["threads"]))
    try:
        result = handler(task)
        code = 0
    except Exception as exc:  # reported to the parent, which goes on with other contenders
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
        code = 1
    with open(result_path, "w", encoding="utf-8") as fh:
        json.dump(_jsonable(result), fh, indent=2)
    return code


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        try:
            return obj.item()
        except (TypeError, ValueError):
            return str(obj)
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)


def has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "-"
    return out


def environment_line(threads: int) -> str:
    v = versions("tabsynth", "torch", "ctgan", "pandas", "numpy", "scikit-learn")
    pkgs = ", ".join(f"{k} {val}" for k, val in v.items() if val != "-")
    return f"python {sys.version.split()[0]}, {pkgs}; cpus {os.cpu_count()}, threads {threads}"


# -- aggregation and output ---------------------------------------------------------------
def median(values: Sequence[Any]) -> float:
    nums = [float(v) for v in values if isinstance(v, int | float) and v == v]
    return statistics.median(nums) if nums else float("nan")


def ratio(anchor: Any, ours: Any) -> float:
    """``anchor / tabsynth``: above 1 means tabsynth is faster (or smaller)."""
    try:
        a, o = float(anchor), float(ours)
    except (TypeError, ValueError):
        return float("nan")
    if a != a or o != o or o == 0:
        return float("nan")
    return a / o


def fmt(value: Any, spec: str = ".3g") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float):
        if value != value:
            return "–"
        if spec.endswith("x"):
            return format(value, spec[:-1]) + "×"
        return format(value, spec)
    return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """``columns`` are ``(key, header, format spec)``; a spec ending in ``x`` prints a ratio."""
    header = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), spec) for k, _, spec in columns) + " |" for r in rows]
    return "\n".join([header, rule, *body])


def write_results(out_dir: str | Path, name: str, records: Sequence[dict], extra: dict) -> None:
    """``<name>.json`` (records + run info) and ``<name>.csv`` (one line per record)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = dict(extra, records=list(records))
    (out / f"{name}.json").write_text(json.dumps(_jsonable(payload), indent=2), encoding="utf-8")
    keys: list[str] = []
    for r in records:
        keys += [k for k, v in r.items() if k not in keys and not isinstance(v, dict | list)]
    with open(out / f"{name}.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: _jsonable(r.get(k)) for k in keys})
