"""Encoder benchmark: fit / transform / inverse time and peak memory of the table transformer.

Contenders, each run in its own fresh subprocess so that peak RSS is per contender:

* ``tabsynth`` on the Adult train split (26,048 rows) and on a ``make_patients`` table of
  ``--rows`` rows (default 1,000,000);
* ``ctgan`` (``ctgan.data_transformer.DataTransformer``) on the same Adult frame (the one its
  model adapter gets), run in the anchor interpreter (``--anchor-python``, default
  ``.venv-bench``: ``scripts/bench-env.sh``).

Built on the benchmark harness :mod:`tabsynth.bench` (data, workers, peak meter, tables).

Acceptance targets checked at the end: tabsynth fit+transform on Adult ≥ 20× faster than
ctgan's DataTransformer; the big table encodes (fit+transform) in < 60 s with peak RSS < 4 GiB.

    python benchmarks/transformer.py [--rows N] [--skip-anchor] [--threads N] [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tabsynth import bench  # noqa: E402
from tabsynth.bench.measure import PeakRSS  # noqa: E402
from tabsynth.bench.results import markdown_table, write_records  # noqa: E402

SCRIPT = Path(__file__).resolve()
TARGET_SPEEDUP = 20.0
TARGET_BIG_SECONDS = 60.0
TARGET_BIG_PEAK_MIB = 4096.0
MIB = 2**20


# -- workers (run in the subprocess) -------------------------------------------------------
def _load(task: dict, meter: PeakRSS, out: dict):
    """The frame (and metadata) of the task: the Adult training split, or a big demo table."""
    from tabsynth import Metadata

    with meter.phase(out, "load"):
        if task["dataset"] == "adult":
            spec = bench.resolve_datasets(["adult"])[0]
            df = bench.prepare_data(spec)[0]
        else:
            from tabsynth.datasets import make_patients

            spec, df = None, make_patients(n_rows=int(task["rows"]), random_state=0)
    with meter.phase(out, "metadata"):
        meta = bench.build_metadata(df, spec.kinds, []) if spec else Metadata.infer(df)
    return df, meta


def _work(task: dict) -> dict:
    """Fit, transform and (optionally) inverse one encoder, each phase timed with its peak."""
    meter, out = PeakRSS(), {}
    df, meta = _load(task, meter, out)
    if task["contender"] == "tabsynth":
        from tabsynth.transform import TableTransformer

        encoder = TableTransformer(meta, random_state=0)
        fit = encoder.fit
    else:  # ctgan's DataTransformer on the frame its model adapter gets (bench.contenders)
        from ctgan.data_transformer import DataTransformer

        from tabsynth.bench.contenders import anchor_frame

        for key in ("metadata_s", "peak_rss_metadata_mib"):  # ctgan takes a column list instead
            out.pop(key)
        df, discrete, _ = anchor_frame(df, meta)
        encoder = DataTransformer()
        fit = lambda frame: encoder.fit(frame, discrete)  # noqa: E731
    with meter.phase(out, "fit"):
        fit(df)
    with meter.phase(out, "transform"):
        X = encoder.transform(df)
    if task["inverse"]:
        with meter.phase(out, "inverse"):
            encoder.inverse_transform(X)
    width = getattr(encoder, "output_dim_", None) or getattr(encoder, "output_dimensions", 0)
    return dict(
        out,
        process_peak_mib=meter.process_peak,
        n_rows=len(df),
        n_cols=df.shape[1],
        output_dim=int(width),
        matrix_mib=X.nbytes / MIB,
        matrix_dtype=str(X.dtype),
    )


# -- driver --------------------------------------------------------------------------------
def _run(task: dict, args: argparse.Namespace) -> dict:
    """Run one contender ``--repeat`` times (fresh process each) and keep medians."""
    runs = []
    python = args.anchor_python if task["contender"] == "ctgan" else sys.executable
    for i in range(args.repeat):
        label = f"{task['contender']} on {task['dataset']}"
        print(f"[{i + 1}/{args.repeat}] {label} ...", file=sys.stderr, flush=True)
        key = f"{task['contender']}-{task['dataset']}-{i}"
        task = dict(task, threads=args.threads)
        res = bench.run_worker(
            [python, str(SCRIPT), "--worker"], task, Path(args.out), key, args.timeout
        )
        if "error" in res:
            print(f"  FAILED: {res['error']} (log: {args.out}/logs/{key}.log)", file=sys.stderr)
            print(res.get("traceback", ""), file=sys.stderr)
            return dict(task, error=res["error"])
        runs.append(res)
    out = dict(task, runs=len(runs))
    for key in runs[0]:
        vals = [r.get(key) for r in runs]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals)
        out[key] = statistics.median(vals) if numeric else vals[0]
    for key in ("n_rows", "n_cols", "output_dim"):
        if key in out:
            out[key] = int(out[key])
    fit, transform = out.get("fit_s", float("nan")), out.get("transform_s", float("nan"))
    out["encode_s"] = fit + transform
    out["total_s"] = out["encode_s"] + (out.get("metadata_s") or 0.0)
    phases = [p for p in ("metadata", "fit", "transform") if f"peak_rss_{p}_mib" in out]
    out["encode_peak_mib"] = max(out[f"peak_rss_{p}_mib"] for p in phases)
    out["label"] = f"{task['contender']} · {task['dataset']}"
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return bench.worker_main(argv[1:], _work)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="rows of the big demo table")
    p.add_argument("--skip-anchor", action="store_true", help="do not run ctgan")
    p.add_argument("--skip-big", action="store_true", help="do not run the big demo table")
    p.add_argument("--skip-tabsynth", action="store_true", help="anchor only (harness check)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--repeat", type=int, default=1, help="fresh processes per contender")
    p.add_argument("--no-inverse", action="store_true", help="skip inverse_transform timing")
    p.add_argument("--anchor-python", help="interpreter with ctgan (default: .venv-bench)")
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per worker")
    p.add_argument("--out", default="results/transformer", help="folder for JSON/CSV results")
    args = p.parse_args(argv)

    base = dict(inverse=not args.no_inverse, rows=args.rows)
    tasks = []
    if not args.skip_tabsynth:
        tasks.append(dict(base, contender="tabsynth", dataset="adult"))
    if not args.skip_anchor:
        args.anchor_python = bench.anchor_python(args.anchor_python, print)
        tasks.append(dict(base, contender="ctgan", dataset="adult"))
    if not args.skip_tabsynth and not args.skip_big:
        tasks.append(dict(base, contender="tabsynth", dataset="patients"))

    results = [_run(t, args) for t in tasks]
    ok = [r for r in results if "error" not in r]

    print(f"\n## Table transformer: {bench.environment()}, {args.threads} thread(s)\n")
    print(f"Adult: the shared split's training rows; medians of {args.repeat} run(s)\n")
    cols = [
        ("label", "contender · data", "s"),
        ("n_rows", "rows", ",d"),
        ("n_cols", "cols", "d"),
        ("output_dim", "width", "d"),
        ("metadata_s", "metadata s", ".3g"),
        ("fit_s", "fit s", ".3g"),
        ("transform_s", "transform s", ".3g"),
        ("encode_s", "fit+transform s", ".3g"),
        ("inverse_s", "inverse s", ".3g"),
        ("encode_peak_mib", "peak RSS fit+transform MiB", ".0f"),
        ("process_peak_mib", "process peak MiB", ".0f"),
    ]
    print(markdown_table(ok, cols))

    ours = next((r for r in ok if r["contender"] == "tabsynth" and r["dataset"] == "adult"), None)
    anchor = next((r for r in ok if r["contender"] == "ctgan"), None)
    verdicts = []
    if ours and anchor:
        row = {"label": "ctgan / tabsynth on Adult"}
        for key in ("fit_s", "transform_s", "encode_s", "inverse_s", "encode_peak_mib"):
            row[key] = _ratio(anchor.get(key), ours.get(key))
        row["total_s"] = _ratio(anchor.get("encode_s"), ours.get("total_s"))
        print("\nRatios anchor / tabsynth (above 1: tabsynth faster or smaller):\n")
        print(
            markdown_table(
                [row],
                [
                    ("label", "", "s"),
                    ("fit_s", "fit", ".1fx"),
                    ("transform_s", "transform", ".1fx"),
                    ("encode_s", "fit+transform", ".1fx"),
                    ("total_s", "fit+transform vs ours incl. metadata", ".1fx"),
                    ("inverse_s", "inverse", ".1fx"),
                    ("encode_peak_mib", "peak RSS", ".2fx"),
                ],
            )
        )
        verdicts.append(
            _verdict(
                f"Adult fit+transform speed-up {row['encode_s']:.1f}× (target ≥ {TARGET_SPEEDUP:g}×)",
                row["encode_s"] >= TARGET_SPEEDUP,
            )
        )
    big = next((r for r in ok if r["dataset"] == "patients"), None)
    if big:
        verdicts.append(
            _verdict(
                f"{big['n_rows']:,}-row × {big['n_cols']} table fit+transform {big['encode_s']:.1f} s "
                f"(target < {TARGET_BIG_SECONDS:g} s)",
                big["encode_s"] < TARGET_BIG_SECONDS,
            )
        )
        verdicts.append(
            _verdict(
                f"{big['n_rows']:,}-row table peak RSS {big['encode_peak_mib']:.0f} MiB "
                f"(target < {TARGET_BIG_PEAK_MIB:g} MiB)",
                big["encode_peak_mib"] < TARGET_BIG_PEAK_MIB,
            )
        )
    if verdicts:
        print("\nTargets:\n")
        print("\n".join(verdicts))
    if anchor:
        print(
            "\nNote: ctgan's transform starts joblib worker processes (n_jobs=-1); their memory "
            "is not in its peak RSS."
        )
    info = {"environment": bench.environment(), "threads": args.threads, "args": vars(args)}
    write_records(args.out, "transformer", results, info)
    print(f"\nresults written to {args.out}/transformer.json and .csv")
    return 1 if len(ok) < len(results) else 0


def _ratio(anchor: float | None, ours: float | None) -> float | None:
    return anchor / ours if anchor is not None and ours else None


def _verdict(text: str, passed: bool) -> str:
    return f"- {'PASS' if passed else 'FAIL'}: {text}"


if __name__ == "__main__":
    sys.exit(main())
