"""Out-of-core benchmark: fit a 10-million-row Parquet table in bounded memory, sample it back.

Steps, each CLI command in its own fresh subprocess so that its peak RSS is its own:

1. ``write_demo_parquet("patients", ...)``: ``make_patients`` rows written a chunk at a time;
2. ``tabsynth fit big.parquet --out-of-core --epochs 1`` for each model (TVAE, CTGAN);
3. the compact store's size against the dense float32 matrix, from the fitted layout;
4. ``tabsynth sample model.tsyn -n ROWS -o synthetic.parquet``.

Targets (issue #15): fit peak RSS ≤ 3 GiB, store ≤ 25 % of dense, sample peak RSS ≤ 1 GiB.

    python benchmarks/scale.py [--rows 10000000] [--models tvae ctgan] [--batch-size N]
        [--threads 1] [--no-sample] [--workdir /tmp/tabsynth-scale]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# runs the CLI in this child process and reports its own peak RSS (the harness's one meter)
_CHILD = """
import sys
from tabsynth.bench.measure import PeakRSS
meter = PeakRSS()
from tabsynth.cli.main import main
try:
    rc = main(sys.argv[1:])
finally:
    print("PEAK_RSS_MIB=" + str(meter.peak_mib()), file=sys.stderr)
sys.exit(rc)
"""


def run_cli(argv: list[str], threads: int) -> dict:
    """``tabsynth argv`` in a fresh process: wall seconds, peak RSS (GiB), return code."""
    env = dict(os.environ)
    env.update({k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")})
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv, "--threads", str(threads)],
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    peak = None
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_RSS_MIB=") and line != "PEAK_RSS_MIB=None":
            peak = float(line.split("=", 1)[1]) / 1024
    if proc.returncode:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    return {"wall_s": wall, "peak_rss_gib": peak, "rc": proc.returncode, "stdout": proc.stdout}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--models", nargs="+", default=["tvae", "ctgan"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads per step (default 1: on a shared or oversubscribed machine two "
        "OpenMP threads ran a TVAE step 4-30x slower than one)",
    )
    ap.add_argument("--no-sample", action="store_true", help="fit only")
    ap.add_argument("--workdir", default="/tmp/tabsynth-scale")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    import tabsynth
    from tabsynth.datasets import write_demo_parquet
    from tabsynth.transform.compact import CompactTable

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"patients-{args.rows}.parquet"
    results: dict = {"rows": args.rows, "threads": args.threads, "models": {}}
    if not data.exists():
        t0 = time.perf_counter()
        write_demo_parquet("patients", data, args.rows, random_state=0)
        results["write_s"] = time.perf_counter() - t0
    results["file_mib"] = data.stat().st_size / 2**20
    print(f"{data}: {args.rows:,} rows, {results['file_mib']:.0f} MiB", flush=True)

    for name in args.models:
        model_path = work / f"{name}.tsyn"
        fit = ["fit", str(data), "--model", name, "--epochs", str(args.epochs), "--out-of-core"]
        fit += ["--seed", "0", "-o", str(model_path)]
        if args.batch_size:
            fit += ["--batch-size", str(args.batch_size)]
        row = {"fit": run_cli(fit, args.threads)}
        if row["fit"]["rc"] == 0:
            model = tabsynth.load(model_path)
            tt = model.transformer_
            store = CompactTable.allocate(tt.spans_, tt.output_dim_, 1)
            row["store_bytes_per_row"] = store.nbytes
            row["dense_bytes_per_row"] = store.dense_nbytes
            row["store_share"] = store.nbytes / store.dense_nbytes
            row["store_gib"] = store.nbytes * args.rows / 2**30
            row["dense_gib"] = store.dense_nbytes * args.rows / 2**30
            row["batch_size"] = int(model.batch_size_)
            row["train_s"] = None
            for line in row["fit"]["stdout"].splitlines():
                if line.strip().startswith(("train", "preprocess")):
                    row[line.split()[0] + "_text"] = " ".join(line.split()[1:])
            out = work / f"{name}-synthetic.parquet"
        if row["fit"]["rc"] == 0 and not args.no_sample:
            row["sample"] = run_cli(
                ["sample", str(model_path), "-n", str(args.rows), "-o", str(out), "--seed", "0"],
                args.threads,
            )
        results["models"][name] = row
        f, s = row["fit"], row.get("sample", {})
        print(
            f"{name}: fit rc={f['rc']} {f['wall_s']:.0f} s peak {f['peak_rss_gib']:.2f} GiB; "
            f"store {row.get('store_share', float('nan')):.1%} of dense "
            f"({row.get('store_gib', float('nan')):.2f} vs {row.get('dense_gib', float('nan')):.2f}"
            f" GiB); sample {s.get('wall_s', float('nan')):.0f} s peak "
            f"{s.get('peak_rss_gib') or float('nan'):.2f} GiB",
            flush=True,
        )

    print()
    print(
        "| model | rows | batch | fit wall | fit peak RSS | store / dense | sample wall "
        "| sample peak RSS |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, row in results["models"].items():
        f, s = row["fit"], row.get("sample", {})
        print(
            f"| {name} | {args.rows:,} | {row.get('batch_size', '-')} | {f['wall_s']:.0f} s "
            f"| {f['peak_rss_gib']:.2f} GiB | {row.get('store_share', float('nan')):.1%} "
            f"| {s.get('wall_s', float('nan')):.0f} s | {s.get('peak_rss_gib') or float('nan'):.2f}"
            " GiB |"
        )
    if args.json:
        for row in results["models"].values():
            for step in ("fit", "sample"):
                if step in row:
                    row[step].pop("stdout", None)
        Path(args.json).write_text(json.dumps(results, indent=2))
    ok = all(
        r["fit"]["rc"] == 0 and (args.no_sample or r.get("sample", {}).get("rc") == 0)
        for r in results["models"].values()
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
