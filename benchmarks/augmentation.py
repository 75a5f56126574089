"""Augmentation benchmark (issue #16): does adding balancing synthetic minority rows to the real
training rows help a classifier tested on real holdout rows?

For each table with a minority class: a stratified 80/20 split (seed 0), the training part
subsampled (stratified) to at most ``--max-train`` rows, each model fitted with each seed, then
``tabsynth.augment(strategy="balance")`` rows scored by the report's augmentation utility
(gradient boosting on real vs real + synthetic, holdout ROC AUC, average precision, minority
recall, 95 % bootstrap interval of the difference). Leakage columns of the manifest are dropped.

    python benchmarks/augmentation.py --out results/augmentation.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

import tabsynth
from tabsynth.datasets import load_shared

TABLES = ("bank_marketing", "home_equity_hmeq", "diabetes_130_us_hospitals")
METRICS = ("roc_auc", "average_precision", "minority_recall")


def split(name: str, max_train: int) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    df, info = load_shared(name)
    target = info.target
    df = df.drop(columns=[c for c in info.leakage_columns if c in df.columns])
    ids = [c for c, k in info.column_kinds.items() if k == "id" and c in df.columns]
    df = df.drop(columns=ids).dropna(subset=[target]).reset_index(drop=True)
    train, test = train_test_split(df, test_size=0.2, stratify=df[target], random_state=0)
    if len(train) > max_train:
        train, _ = train_test_split(
            train, train_size=max_train, stratify=train[target], random_state=0
        )
    return train.reset_index(drop=True), test.reset_index(drop=True), target


def run(name: str, model_name: str, seed: int, epochs: int | None, max_train: int) -> dict:
    train, test, target = split(name, max_train)
    shares = train[target].value_counts(normalize=True)
    model = getattr(tabsynth, model_name)(epochs=epochs, random_state=seed, verbose=False)
    t0 = time.perf_counter()
    out = tabsynth.augment(train, model, target=target, random_state=seed)
    seconds = time.perf_counter() - t0
    synthetic = out[out["is_synthetic"]].drop(columns="is_synthetic")
    report = tabsynth.evaluate(
        train, synthetic, holdout=test, target=target, random_state=seed, metrics=("utility",)
    )
    aug = report.metrics["utility"]["augmentation"]
    row = {
        "table": name,
        "model": model_name,
        "seed": seed,
        "n_train": len(train),
        "minority_share": float(shares.min()),
        "minority_class": aug["minority_class"],
        "n_added": aug["n_synthetic_added"],
        "fit_augment_s": round(seconds, 1),
    }
    for m in METRICS:
        for part in ("real", "augmented", "difference", "ci_low", "ci_high"):
            row[f"{m}.{part}"] = aug[m][part]
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", nargs="+", default=list(TABLES))
    p.add_argument("--models", nargs="+", default=["ARGN", "CTGAN", "TVAE"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument(
        "--epochs",
        type=lambda text: None if text == "default" else int(text),
        default=50,
        help="epochs of every model, or 'default' for each model's own (ARGN/TVAE: None)",
    )
    p.add_argument("--max-train", type=int, default=8000)
    p.add_argument("--out", type=Path, default=Path("results/augmentation.json"))
    args = p.parse_args()
    rows = []
    for name in args.tables:
        for model_name in args.models:
            for seed in args.seeds:
                row = run(name, model_name, seed, args.epochs, args.max_train)
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))
    print()
    print(
        "| table | model | minority share | rows added | "
        + " | ".join(f"{m} real → augmented (Δ, 95% CI of seed 0)" for m in METRICS)
        + " |"
    )
    print("|---|---|---|---|" + "---|" * len(METRICS))
    frame = pd.DataFrame(rows)
    for (table, model_name), g in frame.groupby(["table", "model"], sort=False):
        cells = []
        for m in METRICS:
            real = statistics.median(g[f"{m}.real"])
            aug = statistics.median(g[f"{m}.augmented"])
            first = g.iloc[0]
            cells.append(
                f"{real:.3f} → {aug:.3f} ({aug - real:+.3f}, "
                f"[{first[f'{m}.ci_low']:+.3f}, {first[f'{m}.ci_high']:+.3f}])"
            )
        print(
            f"| {table} | {model_name} | {g['minority_share'].iloc[0]:.3f} | "
            f"{int(np.median(g['n_added']))} | " + " | ".join(cells) + " |"
        )


if __name__ == "__main__":
    main()
