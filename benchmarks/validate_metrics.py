"""Check tabsynth's fidelity scores against SDMetrics' QualityReport on Adult.

Computes Column Shapes and Column Pair Trends with ``tabsynth.metrics.evaluate`` and with
SDMetrics on the same frames (real = the 80 % train split, stratified on income, random_state=0)
and prints them side by side, with the largest per-column and per-pair differences. Pair trends
are compared twice: SDMetrics' default (average over pairs whose real association passes its
thresholds) against our ``column_pair_trends``, and SDMetrics with both thresholds set to 0
(average over every pair) against our ``column_pair_trends_all``.

Synthetic stand-ins:
  * ``test split`` - the real 20 % test split (the ceiling a synthesizer can reach);
  * ``shuffled columns`` - the test split with every column permuted independently (marginals
    kept, every pairwise trend destroyed);
  * ``perturbed`` - the test split with numerics stretched by 1.25 plus noise and 30 % of each
    categorical column redrawn uniformly from its real categories (marginals damaged, values
    partly outside the real range).

The 0.02 tolerance is checked on the first two, whose values stay inside the real range. On
``perturbed`` the pair scores differ by design: we bin a numeric column of a mixed pair with the
*real* bin edges (values outside the real range get their own levels), SDMetrics bins each table
with its own edges. Its row is printed for information.

Needs SDMetrics (``pip install tabsynth[bench]``; it pins pandas < 3, so use a separate
environment). Run: ``python benchmarks/validate_metrics.py [--data-dir ../shared/datasets]``.

``--timing`` instead times a full ``evaluate`` (all four metric families, holdout and target) on
30,000 x 15 frames drawn from Adult; it needs no SDMetrics.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

SDTYPES = {
    "continuous": "numerical",
    "integer": "numerical",
    "categorical": "categorical",
    "boolean": "boolean",
    "datetime": "datetime",
    "id": "id",
}


def load_adult(data_dir: Path | None) -> tuple[pd.DataFrame, dict]:
    """Adult as the benchmark reads it (tabsynth.datasets.load_shared), with its manifest kinds."""
    from tabsynth.datasets import load_shared

    if data_dir is not None:
        os.environ["TABSYNTH_SHARED_DIR"] = str(data_dir)
    df, info = load_shared("adult")
    return df, {"column_kinds": dict(info.column_kinds)}


def stand_ins(test: pd.DataFrame, kinds: dict, seed: int = 0) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    shuffled = test.copy()
    for col in shuffled.columns:
        shuffled[col] = shuffled[col].to_numpy()[rng.permutation(len(shuffled))]
    perturbed = test.copy()
    for col, kind in kinds.items():
        values = perturbed[col]
        if kind in ("continuous", "integer"):
            x = values.to_numpy(dtype="float64")
            perturbed[col] = 1.25 * x + rng.normal(0.0, 0.1 * np.nanstd(x), size=len(x))
        else:
            cats = values.dropna().unique()
            redraw = rng.random(len(values)) < 0.3
            new = values.to_numpy(dtype=object).copy()
            new[redraw] = rng.choice(cats, size=int(redraw.sum()))
            perturbed[col] = new
    return {"test split": test, "shuffled columns": shuffled, "perturbed": perturbed}


def sdmetrics_scores(real, synthetic, kinds, thresholds: bool):
    """SDMetrics QualityReport scores; ``thresholds=False`` averages every pair (pre-0.2x way)."""
    from sdmetrics.reports.single_table import QualityReport

    metadata = {"columns": {c: {"sdtype": SDTYPES[k]} for c, k in kinds.items()}}
    report = QualityReport()
    if not thresholds:
        report.real_correlation_threshold = 0
        report.real_association_threshold = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report.generate(real, synthetic, metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    pairs = report.get_details("Column Pair Trends")
    pairs = pairs.set_index(["Column 1", "Column 2"])["Score"]
    return float(props["Column Shapes"]), float(props["Column Pair Trends"]), shapes, pairs


def timing(data_dir: Path) -> int:
    """Wall time of a full evaluate on 30k-row real and synthetic frames plus a 10k holdout.

    Adult has 32,561 rows: the holdout is 10,000 of them; real and synthetic are drawn with
    replacement from the rest (the synthetic stand-in then has its columns shuffled).
    """
    import platform

    from tabsynth.metrics import evaluate

    df, entry = load_adult(data_dir)
    holdout = df.sample(10_000, random_state=3)
    pool = df.drop(index=holdout.index)  # real and synthetic stand-ins never overlap the holdout
    real = pool.sample(30_000, replace=True, random_state=1).reset_index(drop=True)
    synthetic = stand_ins(pool.sample(30_000, replace=True, random_state=2), entry["column_kinds"])[
        "shuffled columns"
    ].reset_index(drop=True)
    holdout = holdout.reset_index(drop=True)
    cpu = f"{os.cpu_count()} CPU(s), {platform.processor() or platform.machine()}"
    print(f"real {real.shape}, synthetic {synthetic.shape}, holdout {holdout.shape}; {cpu}")
    for n_threads in (1, None):
        t0, c0 = time.perf_counter(), time.process_time()
        rep = evaluate(
            real, synthetic, holdout=holdout, target="income", random_state=0, n_threads=n_threads
        )
        wall, cpu_s = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"n_threads={n_threads}: {wall:.1f} s wall, {cpu_s:.1f} s CPU; per family (s): "
            f"{rep.to_dict()['timings_s']}"
        )
    print(rep.summary()[["metric", "value"]].to_string(index=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="shared datasets folder (default ../shared)")
    parser.add_argument("--timing", action="store_true", help="time evaluate on 30k x 15 frames")
    args = parser.parse_args(argv)
    if args.timing:
        return timing(args.data_dir)
    try:
        import sdmetrics
    except ImportError:
        print(
            "sdmetrics is not installed: install the bench extra in a separate environment "
            "(pip install 'tabsynth[bench]'; SDMetrics pins pandas < 3) and rerun there.",
            file=sys.stderr,
        )
        return 2
    from tabsynth.datasets import split_table
    from tabsynth.metrics import evaluate

    df, entry = load_adult(args.data_dir)
    kinds = entry["column_kinds"]
    train, test, _ = split_table(df, "income", "binary", seed=0)  # the benchmark's split
    print(
        f"Adult: train {len(train)} rows, test {len(test)} rows; sdmetrics {sdmetrics.__version__},"
        f" pandas {pd.__version__}"
    )
    header = (
        f"{'synthetic stand-in':<17}| {'Column Shapes':^23} | {'Column Pair Trends':^23} | "
        f"{'pairs, all (thr. 0)':^23} | max |diff| per"
    )
    sub = (
        f"{'':<17}| " + " | ".join([f"{'ours':>7} {'SDM':>7} {'diff':>7}"] * 3) + " | column   pair"
    )
    print(header)
    print(sub)
    print("-" * len(sub))
    worst = 0.0
    for name, syn in stand_ins(test, kinds).items():
        checked = name != "perturbed"
        t0 = time.perf_counter()
        rep = evaluate(train, syn, metadata=kinds, metrics=["fidelity"], random_state=0)
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        sd_shape, sd_pair, sd_cols, _ = sdmetrics_scores(train, syn, kinds, thresholds=True)
        t_sd = time.perf_counter() - t0
        _, sd_pair_all, _, sd_pairs = sdmetrics_scores(train, syn, kinds, thresholds=False)
        ours_cols = rep.column_scores().set_index("column")["shape"]
        ours_pairs = rep.pair_scores().set_index(["column_1", "column_2"])["score"]
        col_diff = (ours_cols - sd_cols.reindex(ours_cols.index)).abs().max()
        pair_diff = (ours_pairs - sd_pairs.reindex(ours_pairs.index)).abs().max()
        shape = rep["fidelity.column_shapes"]
        pair, pair_all = rep["fidelity.column_pair_trends"], rep["fidelity.column_pair_trends_all"]
        trio = [(shape, sd_shape), (pair, sd_pair), (pair_all, sd_pair_all)]
        if checked:
            worst = max(worst, *(abs(a - b) for a, b in trio))
        cells = " | ".join(f"{a:>7.4f} {b:>7.4f} {a - b:>+7.4f}" for a, b in trio)
        print(
            f"{name:<17}| {cells} | {col_diff:.4f} {pair_diff:.4f}"
            f"  (ours {t_ours:.1f} s, SDMetrics {t_sd:.1f} s){'' if checked else '  [info]'}"
        )
    print(f"largest difference in an overall score, checked rows: {worst:.4f} (tolerance 0.02)")
    return 0 if worst <= 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
