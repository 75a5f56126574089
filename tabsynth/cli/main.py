"""``tabsynth`` command: argument parsing and dispatch; each subcommand is a small function."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from tabsynth.errors import TabsynthError


def _demo(args: argparse.Namespace) -> int:
    """Infer metadata on a demo table and round-trip it through the transformer."""
    import numpy as np  # noqa: PLC0415 - keep `tabsynth --help` fast

    from tabsynth import Metadata, TableTransformer  # noqa: PLC0415
    from tabsynth.datasets import load_demo  # noqa: PLC0415

    df = load_demo(args.table, n_rows=args.rows, random_state=args.seed)
    meta = Metadata.infer(df)
    print(f"demo table {args.table!r}: {len(df)} rows x {df.shape[1]} columns")
    print(meta)
    t0 = time.perf_counter()
    tt = TableTransformer(meta, random_state=args.seed).fit(df)
    x = tt.transform(df, dtype=np.float64)
    back = tt.inverse_transform(x)
    elapsed = time.perf_counter() - t0
    same = [c for c in df.columns if df[c].dtype == back[c].dtype]
    print(
        f"encoded into {tt.output_dim_} columns in {len(tt.spans_)} spans; round trip in "
        f"{elapsed:.2f} s; {len(same)} of {df.shape[1]} columns restored with identical dtype "
        "(id columns are regenerated, not modelled)"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tabsynth", description="Synthetic tabular data with differential privacy."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the built-in demo", description=_demo.__doc__)
    demo.add_argument("--table", choices=["patients", "loans"], default="patients")
    demo.add_argument("--rows", type=int, default=5000)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except TabsynthError as exc:
        print(f"tabsynth: error: {exc}", file=sys.stderr)
        return 2
