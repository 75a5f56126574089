"""GPU benchmark: epoch time, sampling speed and peak GPU memory of every model.

For each model in ``tabsynth.MODELS`` (ARGN, CTGAN, TVAE) on the Adult train split (when the
shared datasets are present) and on ``make_patients`` tables of 1 and 10 million rows (the 10M
table streamed from Parquet, out-of-core, so only the compact store is held): one epoch of
training, then 100,000 rows sampled. Prints one markdown row per cell with the device name and
the date, within a time budget (``--budget-s``, default 300 s; cells that would start after it
are listed as skipped). Exits 0 with a message, measuring nothing, when no CUDA device is
present.

    python benchmarks/gpu.py [--rows 1000000 10000000] [--models ARGN CTGAN TVAE]
        [--batch-size 4096] [--precision fp32 bf16] [--budget-s 300]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--models", nargs="+", default=None, help="default: every tabsynth model")
    ap.add_argument("--batch-size", type=int, default=4096, help="for the demo tables")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--sample-rows", type=int, default=100_000)
    ap.add_argument("--budget-s", type=float, default=300.0)
    args = ap.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (benchmarks/gpu.py needs a GPU)")
        return 0

    import tabsynth
    from tabsynth.datasets import make_patients, write_demo_parquet

    device = torch.cuda.get_device_name(0)
    print(f"# {device}, torch {torch.__version__}, {dt.date.today().isoformat()}", flush=True)
    models = args.models or list(tabsynth.MODELS)
    tables: list[tuple[str, object, int | None]] = []
    try:
        from tabsynth.datasets import load_shared, split_table

        adult, info = load_shared("adult")
        train, _, _ = split_table(adult, info.target, info.task, seed=0)
        tables.append(("adult", train, None))
    except Exception as exc:  # the shared tables are optional here
        print(f"adult skipped: {exc}")
    tmp = Path(tempfile.mkdtemp(prefix="tabsynth-gpu-"))
    for n in args.rows:
        if n <= 2_000_000:
            tables.append((f"patients-{n:,}", make_patients(n, random_state=0), args.batch_size))
        else:  # streamed: the frame would not be the bottleneck on a GPU machine, the host is
            path = write_demo_parquet("patients", tmp / f"patients-{n}.parquet", n)
            tables.append((f"patients-{n:,} (out-of-core)", str(path), args.batch_size))

    print(
        "| table | model | precision | batch | epoch s | rows/s trained | sample rows/s "
        "| peak GPU GiB |"
    )
    print("|---|---|---|---|---|---|---|---|")
    t_start = time.perf_counter()
    for label, data, batch in tables:
        n_rows = len(data) if not isinstance(data, str) else None
        for name in models:
            for precision in args.precision:
                if time.perf_counter() - t_start > args.budget_s:
                    print(f"| {label} | {name} | {precision} | skipped: over the time budget |")
                    continue
                params = {"epochs": 1, "device": "cuda", "random_state": 0, "verbose": False}
                if batch:
                    params["batch_size"] = batch
                if precision != "fp32":
                    params["precision"] = precision
                torch.cuda.reset_peak_memory_stats()
                model = getattr(tabsynth, name)(**params)
                try:
                    model.fit(data)
                except Exception as exc:  # report and go on: one cell must not end the run
                    print(f"| {label} | {name} | {precision} | failed: {exc} |")
                    continue
                torch.cuda.synchronize()
                train_s = model.timings_["train_s"]
                n = n_rows or model.n_rows_fit_
                t0 = time.perf_counter()
                model.sample(args.sample_rows, random_state=0)
                sample_s = time.perf_counter() - t0
                peak = torch.cuda.max_memory_allocated() / 2**30
                print(
                    f"| {label} | {name} | {precision} | {model.batch_size_} | {train_s:.1f} "
                    f"| {n / train_s:,.0f} | {args.sample_rows / sample_s:,.0f} | {peak:.2f} |",
                    flush=True,
                )
                del model
                torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
