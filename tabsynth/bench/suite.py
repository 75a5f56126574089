"""The benchmark suite: every (dataset, contender, epsilon, seed) cell, one process each.

For each dataset the table is split 80/20 once (fixed seed, stratified for classification);
each contender is fitted on the training part, samples the training row count and is scored with
``tabsynth.evaluate(train, synthetic, holdout=test, target=target)``. tabsynth contenders run in
this interpreter, the anchors in the anchor interpreter (``--anchor-python``,
``$TABSYNTH_ANCHOR_PYTHON`` or ``<repo>/.venv-bench``); a contender that cannot run there gets a
"skipped" row. ``results.csv`` is rewritten after every cell, so an interrupted run keeps what it
measured; ``--resume`` reuses the finished cells in ``OUT/cells``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tabsynth.bench.cell import run_cell_subprocess
from tabsynth.bench.contenders import CONTENDERS
from tabsynth.bench.data import DatasetSpec
from tabsynth.bench.results import (
    RESULT_COLUMNS,
    fmt,
    write_csv,
    write_markdown,
    write_plot,
)
from tabsynth.errors import DataError, HyperParameterError

__all__ = [
    "DEFAULTS",
    "QUICK",
    "BenchmarkConfig",
    "anchor_python",
    "check_config",
    "describe",
    "environment",
    "run_benchmark",
]

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
    "models": list(CONTENDERS),
    "epochs": 100,
    "batch_size": 500,
    "max_rows": None,
    "max_test_rows": None,
    "demo_rows": 10_000,
    "seeds": [0],
}


@dataclass
class BenchmarkConfig:
    """Everything ``run_benchmark`` needs; the CLI and ``benchmarks/*.py`` fill it."""

    datasets: list[DatasetSpec]
    models: list[str]
    epochs: int | None  # None: each contender's own default
    seeds: list[int]
    epsilons: list[float] = field(default_factory=list)
    delta: float | None = None
    batch_size: int | None = 500
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
    sample_repeat: int = 1  # draws per cell; sample_s is their median, the first is scored
    dp_only: bool = False  # only the cells at ``epsilons`` (no non-DP cell per contender)


def _cells(cfg: BenchmarkConfig) -> list[tuple[DatasetSpec, str, float | None, int]]:
    out = []
    for ds in cfg.datasets:
        for model in cfg.models:
            epsilons = [None, *cfg.epsilons] if CONTENDERS[model].dp else [None]
            if cfg.dp_only:
                epsilons = [eps for eps in epsilons if eps is not None]
            for eps in epsilons:
                for seed in cfg.seeds:
                    out.append((ds, model, eps, seed))
    return out


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def _can_run(python: str, code: str, cache: dict) -> bool:
    """Whether ``code`` (a contender's ``requires``) runs without error in ``python``."""
    key = (python, code)
    if key not in cache:
        from tabsynth.bench.cell import cell_env

        try:
            done = subprocess.run(
                [python, "-c", code], capture_output=True, timeout=300, env=cell_env(1)
            )
            cache[key] = done.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            cache[key] = False
    return cache[key]


def anchor_python(requested: str | None, log: Callable[[str], None]) -> str:
    """The interpreter for anchor cells: ``requested``, ``$TABSYNTH_ANCHOR_PYTHON``, this one
    when it has an anchor library, else the repository's ``.venv-bench`` when present."""
    import importlib.util

    if requested:
        if not Path(requested).exists():
            raise DataError(f"--anchor-python {requested!r} does not exist")
        return requested
    env = os.environ.get("TABSYNTH_ANCHOR_PYTHON")
    if env and Path(env).exists():
        return env
    if any(importlib.util.find_spec(m) for m in ("ctgan", "sdv", "mostlyai")):
        return sys.executable
    for bin_dir in ("bin", "Scripts"):  # POSIX, Windows
        bench = _repo_root() / ".venv-bench" / bin_dir / "python"
        if bench.exists() or bench.with_suffix(".exe").exists():
            log(f"anchors run with {bench} (they are not importable here)")
            return str(bench)
    return sys.executable


def _cell_key(dataset: str, model: str, epsilon: float | None, seed: int) -> str:
    eps = "nodp" if epsilon is None else f"eps{epsilon:g}"
    return f"{dataset}__{model}__{eps}__seed{seed}"


def _reuse(folder: Path, key: str, cell: dict) -> dict | None:
    """The finished row of an identical earlier cell (``--resume``), if any."""
    cached, spec_file = folder / "cells" / f"{key}.json", folder / "cells" / f"{key}.spec.json"
    if not (cached.exists() and spec_file.exists()):
        return None
    try:
        if json.loads(spec_file.read_text(encoding="utf-8")) != cell:
            return None
        row = json.loads(cached.read_text(encoding="utf-8"))
    except ValueError:
        return None
    return row if str(row.get("status")) == "ok" else None


def check_config(cfg: BenchmarkConfig) -> None:
    """HyperParameterError naming the setting that is out of range (before any cell runs)."""
    unknown = [m for m in cfg.models if m not in CONTENDERS]
    if unknown:
        raise HyperParameterError(
            f"unknown model(s) {unknown}; choose from {', '.join(CONTENDERS)}"
        )
    if not cfg.models or not cfg.seeds or not cfg.datasets:
        raise HyperParameterError("give at least one model, one seed and one dataset")
    positive = {
        "epochs": cfg.epochs,
        "batch_size": cfg.batch_size,
        "max_rows": cfg.max_rows,
        "max_test_rows": cfg.max_test_rows,
        "threads": cfg.threads,
        "cell_timeout": cfg.cell_timeout,
        "sample_repeat": cfg.sample_repeat,
        **{f"epsilons[{i}]": eps for i, eps in enumerate(cfg.epsilons)},
    }
    for name, value in positive.items():
        if value is not None and not value > 0:
            raise HyperParameterError(f"{name} must be positive, got {value!r}")
    if cfg.delta is not None and not 0 < cfg.delta < 1:
        raise HyperParameterError(f"delta must be in (0, 1), got {cfg.delta!r}")


def run_benchmark(
    cfg: BenchmarkConfig, out: str | os.PathLike[str], log: Callable[[str], None] = print
) -> list[dict]:
    """Run every cell, writing ``results.csv`` after each, then ``results.md`` and the plot."""
    check_config(cfg)
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise DataError(f"results folder {str(folder)!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    needs_anchor = any(CONTENDERS[m].anchor for m in cfg.models)
    anchor_py = anchor_python(cfg.anchor_python, log) if needs_anchor else sys.executable
    probe_cache: dict = {}
    cells = _cells(cfg)
    rows: list[dict] = []
    started = time.perf_counter()
    for i, (ds, model, eps, seed) in enumerate(cells, 1):
        contender = CONTENDERS[model]
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
            "max_rows": cfg.max_rows,
            "max_test_rows": cfg.max_test_rows,
            "split_seed": cfg.split_seed,
            "device": cfg.device,
            "public_schema": cfg.public_schema,
            "metrics": cfg.metrics,
            "threads": cfg.threads,
            "sample_repeat": cfg.sample_repeat,
        }
        python = anchor_py if contender.anchor else sys.executable
        row = _reuse(folder, key, cell) if cfg.resume else None
        if row is not None:
            log(f"{label}: reused from {folder / 'cells' / key}.json")
        elif not _can_run(python, contender.requires, probe_cache):
            row = {k: None for k in RESULT_COLUMNS}
            row["status"] = f"skipped: `{contender.requires}` fails in {python}"
            if contender.anchor:
                row["status"] += " (bash scripts/bench-env.sh; --anchor-python)"
            log(f"{label}: {row['status']}")
        else:
            t0 = time.perf_counter()
            row = run_cell_subprocess(python, cell, folder, key, cfg.cell_timeout)
            row["cell_s"] = time.perf_counter() - t0
            log(f"{label}: {describe(row)}")
        row.update(dataset=ds.name, model=model, epsilon=eps, seed=seed)
        row.setdefault("target", ds.target)
        rows.append(row)
        write_csv(rows, folder / "results.csv")
    settings = _settings(cfg, anchor_py, time.perf_counter() - started)
    write_markdown(rows, folder / "results.md", settings)
    plot_note = write_plot(rows, folder / "utility_vs_epsilon.png")
    if plot_note:
        log(plot_note)
    log(f"suite finished in {settings['wall_time']}; results in {folder}/")
    return rows


def describe(row: dict) -> str:
    """One log line for a finished cell."""
    if row.get("status") != "ok":
        return str(row.get("status"))
    parts = [f"fit {fmt(row.get('fit_s'), '.1f')} s", f"sample {fmt(row.get('sample_s'), '.2f')} s"]
    if row.get("peak_rss_fit_mib") is not None:
        parts.append(f"peak {fmt(row.get('peak_rss_fit_mib'), '.0f')} MiB")
    if row.get("utility_synthetic") is not None:
        parts.append(
            f"TSTR {fmt(row.get('utility_synthetic'))} (TRTR {fmt(row.get('utility_real'))})"
        )
    if row.get("column_shapes") is not None:
        parts.append(f"shapes {fmt(row.get('column_shapes'))}")
    return ", ".join(parts)


def environment(packages: tuple[str, ...] = ("torch", "pandas", "numpy", "scikit-learn")) -> str:
    """``python X, tabsynth Y, torch Z, ...; N CPU(s)``: the versions a figure was measured on."""
    from importlib.metadata import PackageNotFoundError, version

    import tabsynth

    found = [f"python {platform.python_version()}", f"tabsynth {tabsynth.__version__}"]
    for pkg in packages:
        try:
            found.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            continue
    machine = f"{platform.machine()}, {os.cpu_count()} CPU(s), {platform.system()}"
    return f"{', '.join(found)}; {machine}"


def _settings(cfg: BenchmarkConfig, anchor_py: str, wall: float) -> dict:
    minutes, seconds = divmod(wall, 60)
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions and machine": environment(),
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
        "sample draws per cell": cfg.sample_repeat,
        "wall_time": f"{int(minutes)} min {seconds:04.1f} s",
    }
