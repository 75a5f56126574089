"""The benchmark harness (tabsynth.bench): split, task, registry, cells, suite outputs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tabsynth.bench import (
    CONTENDERS,
    BenchmarkConfig,
    CellContext,
    Contender,
    DatasetSpec,
    guess_task,
    run_benchmark,
    run_cell,
    tabsynth_model,
)
from tabsynth.datasets import split_table

PATIENTS = DatasetSpec("patients", "demo", "readmitted_30d", task="binary", rows=250)


def test_split_is_stratified_and_fixed() -> None:
    df = pd.DataFrame({"x": np.arange(200), "y": [True] * 20 + [False] * 180})
    train, test, note = split_table(df, "y", "binary", seed=0)
    assert (len(train), len(test), note) == (160, 40, "")
    assert test["y"].sum() == 4  # 10 % positives on both sides
    again, _, _ = split_table(df, "y", "binary", seed=0)
    pd.testing.assert_frame_equal(train, again)
    lone = pd.DataFrame({"x": np.arange(50), "y": ["a"] * 49 + ["b"]})
    assert "not stratified" in split_table(lone, "y", "binary")[2]


def test_task_guess_is_the_metrics_rule() -> None:
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "two": rng.choice(["yes", "no"], 300),
            "five": rng.choice(list("abcde"), 300),
            "level": rng.integers(0, 5, 300),
            "amount": rng.normal(size=300),
        }
    )
    assert guess_task(df, "two") == "binary"
    assert guess_task(df, "five") == "multiclass"
    assert guess_task(df, "amount") == "regression"
    assert guess_task(df, "level") == "regression"  # an integer is a number unless declared
    assert guess_task(df, "level", {"level": "categorical"}) == "multiclass"


def _bootstrap(ctx: CellContext):
    """A toy contender: resample the training rows (one registry entry, no other change)."""
    with ctx.peak.phase(ctx.row, "fit"):
        pass
    with ctx.peak.phase(ctx.row, "sample"):
        return ctx.train.sample(len(ctx.train), replace=True, random_state=ctx.seed)


def test_a_contender_is_one_registry_entry_and_every_figure_is_recorded(monkeypatch) -> None:
    monkeypatch.setitem(
        CONTENDERS, "bootstrap", Contender("bootstrap", "bootstrap", _bootstrap, "pass")
    )
    cell = {"dataset": vars(PATIENTS), "model": "bootstrap", "seed": 0, "epochs": None}
    row = run_cell(cell)
    assert row["status"] == "ok", row["status"]
    assert (row["n_train"], row["n_test"], row["task"]) == (200, 50, "binary")
    assert row["column_shapes"] > 0.9  # resampled real rows
    assert row["exact_copy_rate"] > 0.9
    figures = [
        "utility_synthetic",
        "utility_real",
        "utility_macro_f1_synthetic",
        "column_pair_trends",
        "detection_logistic_auc",
        "detection_hgb_auc",
        "dcr_median_ratio",
        "fit_s",
        "sample_s",
        "evaluate_s",
    ]
    assert all(row[k] is not None for k in figures), {k: row[k] for k in figures}


def test_contender_failure_is_a_row_not_a_crash(monkeypatch) -> None:
    def broken(ctx: CellContext):
        raise RuntimeError("boom")

    monkeypatch.setitem(CONTENDERS, "broken", Contender("broken", "broken", broken, "pass"))
    row = run_cell({"dataset": vars(PATIENTS), "model": "broken", "seed": 0})
    assert row["status"] == "error: RuntimeError: boom"


def test_benchmark_suite_writes_its_three_outputs(tmp_path: Path, monkeypatch) -> None:
    missing = tabsynth_model("nosuch", "NoSuchModel")  # e.g. a model not on this branch yet
    monkeypatch.setitem(CONTENDERS, "nosuch", missing)
    cfg = BenchmarkConfig(
        datasets=[PATIENTS],
        models=["tvae", "gaussiancopula", "mostlyai-argn", "nosuch"],
        epochs=1,
        seeds=[0],
        batch_size=50,
        anchor_python=sys.executable,  # the test venv has no sdv/mostlyai: skipped
        metrics=["fidelity", "utility"],
    )
    logged: list[str] = []
    rows = run_benchmark(cfg, tmp_path / "results", log=logged.append)
    results = pd.read_csv(tmp_path / "results" / "results.csv").set_index("model")
    assert len(rows) == len(results) == 4
    ours = results.loc["tvae"]
    assert ours["status"] == "ok", ours["status"]
    assert (ours["n_train"], ours["n_test"]) == (200, 50)
    assert 0 <= ours["column_shapes"] <= 1 and 0 <= ours["utility_synthetic"] <= 1
    assert ours["fit_s"] > 0 and ours["peak_rss_fit_mib"] > 50
    assert ours["epochs_run"] == 1 and ours["epoch_median_s"] > 0
    assert results.loc["nosuch", "status"].startswith("skipped: `import tabsynth; tabsynth.NoSuch")
    for anchor, module in (("gaussiancopula", "sdv"), ("mostlyai-argn", "mostlyai")):
        if _importable(module):
            assert results.loc[anchor, "status"] == "ok", results.loc[anchor, "status"]
        else:
            assert results.loc[anchor, "status"].startswith("skipped:")
    md = (tmp_path / "results" / "results.md").read_text(encoding="utf-8")
    assert "## patients" in md and "| tvae | ∞ (no DP) | 1/1 |" in md
    png = (tmp_path / "results" / "utility_vs_epsilon.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # --resume reuses the finished cell instead of fitting again
    again = run_benchmark(
        BenchmarkConfig(**{**vars(cfg), "models": ["tvae"], "resume": True}),
        tmp_path / "results",
        log=logged.append,
    )
    assert again[0]["fit_s"] == rows[0]["fit_s"] and "reused" in logged[-2]


def test_benchmark_private_schema_derives_category_lists_with_dp(tmp_path: Path) -> None:
    """--private-schema: the DP cell pays for its category lists (dp_domains) and still runs."""
    cfg = BenchmarkConfig(
        datasets=[DatasetSpec("patients", "demo", "readmitted_30d", task="binary", rows=5000)],
        models=["tvae"],
        epochs=1,
        seeds=[0],
        epsilons=[10.0],
        batch_size=1000,
        public_schema=False,
        metrics=["fidelity"],
    )
    rows = run_benchmark(cfg, tmp_path / "results", log=lambda _: None)
    dp = [r for r in rows if r.get("epsilon") is not None]
    assert len(dp) == 1 and dp[0]["status"] == "ok", dp[0]["status"]
    assert 0 < dp[0]["epsilon_spent"] <= 10.0 * (1 + 1e-9)
    settings = (tmp_path / "results" / "results.md").read_text(encoding="utf-8")
    assert "category lists DP-derived (paid from ε)" in settings


def test_unknown_model_and_dataset_are_clear_errors(tmp_path: Path) -> None:
    from tabsynth.bench import resolve_datasets
    from tabsynth.errors import DataError, HyperParameterError

    with pytest.raises(HyperParameterError, match="unknown model"):
        run_benchmark(BenchmarkConfig([PATIENTS], ["gan9000"], 1, [0]), tmp_path / "r")
    with pytest.raises(HyperParameterError, match="sample_repeat must be positive, got 0"):
        run_benchmark(BenchmarkConfig([PATIENTS], ["tvae"], 1, [0], sample_repeat=0), tmp_path)
    with pytest.raises(HyperParameterError, match=r"epsilons\[1\] must be positive"):
        run_benchmark(BenchmarkConfig([PATIENTS], ["tvae"], 1, [0], epsilons=[1, -2]), tmp_path)
    assert not (tmp_path / "r").exists()  # refused before anything was written
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        resolve_datasets(["nope"])


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_argn_runs_by_name_through_its_registry_line() -> None:
    import tabsynth

    cell = {
        "dataset": vars(PATIENTS),
        "model": "argn",
        "seed": 0,
        "epochs": 1,
        "batch_size": 100,
        "metrics": ["fidelity"],
    }
    row = run_cell(cell)
    assert CONTENDERS["argn"].requires == "import tabsynth; tabsynth.ARGN" and tabsynth.ARGN
    assert row["status"] == "ok", row["status"]
    assert row["epochs_run"] == 1 and 0 < row["column_shapes"] <= 1


def test_dp_only_runs_no_cell_without_epsilon():
    from tabsynth import bench
    from tabsynth.bench.suite import _cells

    datasets = bench.resolve_datasets(["patients"])
    cfg = bench.BenchmarkConfig(
        datasets=datasets, models=["argn", "tvae"], epochs=1, seeds=[0, 1], epsilons=[1.0, 3.0]
    )
    assert {eps for _, _, eps, _ in _cells(cfg)} == {None, 1.0, 3.0}
    cfg.dp_only = True
    cells = _cells(cfg)
    assert {eps for _, _, eps, _ in cells} == {1.0, 3.0} and len(cells) == 2 * 2 * 2


def test_gpu_benchmark_exits_cleanly_without_a_gpu() -> None:
    import os
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    done = subprocess.run(
        [sys.executable, str(script), "--budget-s", "1"], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "no CUDA device" in done.stdout
