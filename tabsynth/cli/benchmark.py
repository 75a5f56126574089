"""``tabsynth benchmark``: the command line of the benchmark harness in :mod:`tabsynth.bench`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Run the utility benchmark suite (see :mod:`tabsynth.bench.suite`)."""
    from tabsynth import bench

    preset = bench.QUICK if args.quick else bench.DEFAULTS

    def pick(name: str) -> Any:
        value = getattr(args, name)
        if value == "default":  # each contender's own value
            return None
        return preset[name] if value is None else value

    datasets = bench.resolve_datasets(
        args.datasets, args.data, args.target, args.task, demo_rows=pick("demo_rows")
    )
    cfg = bench.BenchmarkConfig(
        datasets=datasets,
        models=list(pick("models")),
        epochs=pick("epochs"),
        seeds=list(pick("seeds")),
        epsilons=list(args.epsilons),
        delta=args.delta,
        batch_size=pick("batch_size"),
        max_rows=pick("max_rows"),
        max_test_rows=pick("max_test_rows"),
        split_seed=args.split_seed,
        device=args.device,
        public_schema=not args.private_schema,
        cell_timeout=args.cell_timeout,
        threads=args.threads,
        anchor_python=args.anchor_python,
        resume=args.resume,
        quick=args.quick,
        metrics=args.metrics,
    )
    names = ", ".join(d.name for d in datasets)
    print(f"benchmark: {len(datasets)} dataset(s) ({names}); models {', '.join(cfg.models)}")
    rows = bench.run_benchmark(cfg, args.output, log=lambda s: print(s, flush=True))
    failed = [r for r in rows if str(r.get("status", "")).startswith("error")]
    if failed:
        print(f"{len(failed)} of {len(rows)} cell(s) failed; see results.md", file=sys.stderr)
    return 0
