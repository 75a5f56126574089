"""``tabsynth augment``: real rows plus synthetic rows of chosen classes, in one file."""

from __future__ import annotations

import argparse

from tabsynth.cli._io import CLIError, check_input_file, check_output_path


def _counts(pairs: list[str], column: str, values: list) -> dict:
    """``CLASS=N`` texts -> {class value: n}, matching the class text against the column."""
    by_text = {str(v): v for v in values}
    out = {}
    for pair in pairs:
        name, sep, n = pair.rpartition("=")
        if not sep or not name:
            raise CLIError(f"--add expects CLASS=N, got {pair!r}")
        try:
            count = int(n)
        except ValueError:
            raise CLIError(f"--add {pair!r}: {n!r} is not a whole number of rows") from None
        if name not in by_text:
            raise CLIError(
                f"--add {pair!r}: class {name!r} does not occur in column {column!r}; known "
                f"classes: {sorted(by_text)}"
            )
        out[by_text[name]] = count
    return out


def cmd_augment(args: argparse.Namespace) -> int:
    """Fit (or load) a model and add conditional synthetic rows of the chosen classes."""
    import tabsynth
    from tabsynth.cli.commands import _metadata, _model_class, _read, _say, _set_threads
    from tabsynth.datasets import write_table
    from tabsynth.models.base import format_privacy_report

    if bool(args.balance) == bool(args.add):
        raise CLIError("give either --balance or --add CLASS=N (repeatable)")
    out = check_output_path(args.output, "output table")
    _set_threads(args)
    df = _read(args.data, sep=args.sep)
    if args.target not in df.columns:
        raise CLIError(f"--target {args.target!r} is not a column of {args.data}")
    if args.from_model:
        model = tabsynth.load(check_input_file(args.from_model, "model file"))
        meta = None
    else:
        params = {"random_state": args.seed, "verbose": not args.quiet}
        if args.epochs is not None:
            params["epochs"] = args.epochs
        model = _model_class(args.model)(**params)
        meta = _metadata(args.metadata, df)
    strategy = (
        "balance"
        if args.balance
        else _counts(args.add, args.target, df[args.target].dropna().unique().tolist())
    )
    result = tabsynth.augment(
        df,
        model,
        target=args.target,
        strategy=strategy,
        metadata=meta,
        random_state=args.seed,
        indicator=args.indicator,
    )
    write_table(result, out)
    added = int(result[args.indicator].sum())
    report = result.attrs.get("privacy_report")
    if report is not None:
        print(format_privacy_report(report))
        print(f"DP model: {added} synthetic rows written to {out} (no real row is included)")
    else:
        _say(args, f"{len(df)} real + {added} synthetic rows written to {out}")
    return 0
