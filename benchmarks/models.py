"""Model benchmark on Adult: tabsynth's models against the anchors, side by side.

A thin layer over the harness :mod:`tabsynth.bench` (the one behind ``tabsynth benchmark``):
the same shared split (80/20, stratified on income, seed 0), one fresh process per contender
and seed with the same thread count, epochs and batch size, the same scoring
(``tabsynth.evaluate`` against the test split). On top of the suite's ``results.*`` it prints
per run: preprocessing and training time, the median seconds per epoch (ctgan's epochs are
timed through its ``tqdm`` iterator, without changing its code), sampling time (median of
``--sample-repeat`` draws of the training row count), peak RSS of fit and of the whole process,
and the quality figures; then the medians across seeds with ratios anchor / tabsynth.

DP rows (``--epsilons``) fit the tabsynth models with a public schema (Adult's census codebook:
kinds, category domains and bounds read off the full file and declared public).

    python benchmarks/models.py [--models ctgan,anchor-ctgan,...] [--epochs 100] [--seeds 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: this checkout's tabsynth first
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabsynth import bench  # noqa: E402
from tabsynth.bench.results import float_or_none, markdown_table  # noqa: E402

DEFAULT_MODELS = ("ctgan", "tvae", "anchor-ctgan", "anchor-tvae")
#: tabsynth contender -> the anchor its ratios are taken against
ANCHOR_OF = {"ctgan": "anchor-ctgan", "tvae": "anchor-tvae", "argn": "mostlyai-argn"}
QUALITY = [
    ("column_shapes", "shapes", ".3f"),
    ("column_pair_trends", "pair trends", ".3f"),
    ("detection_logistic_auc", "detection AUC (LR)", ".3f"),
    ("detection_hgb_auc", "detection AUC (HGB)", ".3f"),
    ("utility_synthetic", "TSTR", ".3f"),
    ("utility_macro_f1_synthetic", "TSTR macro-F1", ".3f"),
]
TIMING = ["preprocess_s", "train_s", "epoch_median_s", "fit_s", "sample_s", "peak_rss_process_mib"]


def _label(row: dict) -> str:
    eps = float_or_none(row.get("epsilon"))
    return row["model"] if eps is None else f"{row['model']} ε={eps:g}"


def summarise(rows: list[dict]) -> list[dict]:
    """Medians across seeds per contender, ratios anchor / tabsynth (above 1: tabsynth faster)."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(_label(r), []).append(r)
    out: dict[str, dict] = {}
    for label, runs in groups.items():
        row = {"label": label, "model": runs[0]["model"], "runs": len(runs)}
        for key in [*TIMING, *(k for k, _, _ in QUALITY), "utility_real", "epsilon_spent"]:
            values = [v for v in (float_or_none(r.get(key)) for r in runs) if v is not None]
            row[key] = statistics.median(values) if values else None
        out[label] = row

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a is not None and b else None

    for row in out.values():
        anchor = out.get(ANCHOR_OF.get(row["model"], ""))
        if anchor and " ε=" not in row["label"]:
            row["x_fit"] = ratio(anchor["fit_s"], row["fit_s"])
            row["x_epoch"] = ratio(anchor["epoch_median_s"], row["epoch_median_s"])
            row["x_sample"] = ratio(anchor["sample_s"], row["sample_s"])
            row["x_peak"] = ratio(anchor["peak_rss_process_mib"], row["peak_rss_process_mib"])
        base = out.get(row["model"]) if " ε=" in row["label"] else None
        if base:  # DP overhead: a DP epoch over a non-DP epoch of the same model and batch
            row["dp_overhead"] = ratio(row["epoch_median_s"], base["epoch_median_s"])
    return list(out.values())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_list = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument(
        "--models", type=csv_list, default=list(DEFAULT_MODELS), help=",".join(bench.CONTENDERS)
    )
    p.add_argument("--dataset", default="adult", help="a shared table (default adult)")
    p.add_argument(
        "--epochs",
        type=lambda t: None if t == "default" else int(t),
        default=100,
        help="epochs of every contender, or 'default' for each one's own (default 100)",
    )
    p.add_argument("--batch-size", type=lambda t: None if t == "default" else int(t), default=500)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seeds", type=lambda s: [int(x) for x in csv_list(s)], default=[0])
    p.add_argument("--epsilons", type=lambda s: [float(x) for x in csv_list(s)], default=[])
    p.add_argument("--delta", type=float, help="DP delta (default: the model's)")
    p.add_argument("--dp-only", action="store_true", help="only the cells at --epsilons")
    p.add_argument("--sample-repeat", type=int, default=3)
    p.add_argument("--metrics", type=csv_list, default=None, help="metric families (default all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (every contender)")
    p.add_argument("--anchor-python", help="interpreter with the anchors (default .venv-bench)")
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per cell")
    p.add_argument("--out", default="results/models", help="results folder")
    args = p.parse_args(argv)

    cfg = bench.BenchmarkConfig(
        datasets=bench.resolve_datasets([args.dataset]),
        models=args.models,
        epochs=args.epochs,
        seeds=args.seeds,
        epsilons=args.epsilons,
        delta=args.delta,
        dp_only=args.dp_only,
        batch_size=args.batch_size,
        device=args.device,
        cell_timeout=args.timeout,
        threads=args.threads,
        anchor_python=args.anchor_python,
        metrics=args.metrics,
        sample_repeat=args.sample_repeat,
    )
    rows = bench.run_benchmark(cfg, args.out, log=lambda s: print(s, file=sys.stderr, flush=True))
    ok = [dict(r, label=_label(r)) for r in rows if r.get("status") == "ok"]
    print(f"\n## Models on {args.dataset}: {bench.environment()}, {args.threads} thread(s)\n")
    print(
        f"epochs {args.epochs}, batch {args.batch_size}, {ok[0]['n_train'] if ok else '?'} "
        f"training rows, sampled rows = training rows (median of {args.sample_repeat} draws)\n"
    )
    print("### Runs\n")
    timing = [
        ("preprocess_s", "preprocess s", ".3g"),
        ("train_s", "train s", ".4g"),
        ("epoch_median_s", "s/epoch (median)", ".3g"),
        ("sample_s", "sample s", ".3g"),
        ("peak_rss_fit_mib", "fit peak MiB", ".0f"),
        ("peak_rss_process_mib", "process peak MiB", ".0f"),
    ]
    print(
        markdown_table(ok, [("label", "contender", "s"), ("seed", "seed", "d"), *timing, *QUALITY])
    )
    print("\n### Medians across seeds, ratios anchor / tabsynth (above 1: tabsynth faster)\n")
    columns = [
        ("label", "contender", "s"),
        ("runs", "runs", "d"),
        ("fit_s", "fit s", ".3g"),
        ("epoch_median_s", "s/epoch", ".3g"),
        ("sample_s", "sample s", ".3g"),
        ("peak_rss_process_mib", "peak MiB", ".0f"),
        ("x_fit", "× fit", ".2fx"),
        ("x_epoch", "× s/epoch", ".2fx"),
        ("x_sample", "× sample", ".2fx"),
        ("x_peak", "× peak", ".2fx"),
        *QUALITY,
        ("epsilon_spent", "ε spent", ".3g"),
        ("dp_overhead", "DP s/epoch ÷ non-DP", ".2fx"),
    ]
    print(markdown_table(summarise(ok), columns))
    real = [float_or_none(r.get("utility_real")) for r in ok]
    if any(v is not None for v in real):
        print(
            f"\nTRTR (real train → real test): {statistics.median(v for v in real if v is not None):.3f}"
        )
    print(f"\nresults in {args.out}/ (results.csv, results.md, cells/, logs/)")
    return (
        1
        if len(ok) < len([r for r in rows if not str(r.get("status")).startswith("skipped")])
        else 0
    )


if __name__ == "__main__":
    sys.exit(main())
