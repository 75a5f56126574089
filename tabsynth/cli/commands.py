"""The subcommands behind ``tabsynth``: each takes the parsed arguments and returns an exit code.

Heavy libraries (pandas, torch, sklearn) are imported inside the functions so that
``tabsynth --help`` answers at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from tabsynth.cli._io import (
    CLIError,
    check_input_file,
    check_output_path,
    resolve_conditions,
    table_format,
    table_writer,
)
from tabsynth.errors import DataError


def _say(args: argparse.Namespace, text: str = "") -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def _read(path: str, what: str = "input table", sep: str | None = None) -> Any:
    """Read a table; a CSV read as one column whose header holds ``;``, a tab or ``|`` is read
    again with that delimiter (with a note on stderr), unless ``sep`` says which one."""
    from tabsynth.datasets import read_table

    p = check_input_file(path, what)
    fmt, _ = table_format(p)
    if fmt != "csv":
        if sep is not None:
            raise CLIError(f"--sep applies to CSV files, not {str(p)!r}")
        return read_table(p)
    if sep is not None:
        return read_table(p, sep=sep)
    df = read_table(p)
    if df.shape[1] == 1:
        header = str(df.columns[0])
        found = {c: header.count(c) for c in (";", "\t", "|") if c in header}
        if found:
            guess = max(found, key=found.get)
            again = read_table(p, sep=guess)
            if again.shape[1] > 1:
                shown = {"\t": "tab"}.get(guess, guess)
                print(
                    f"note: {str(p)!r} read with delimiter {shown!r} (its header holds it); "
                    "pass --sep to choose another",
                    file=sys.stderr,
                )
                return again
    return df


def _notes(df: Any, meta: Any) -> list[str]:
    """One line per column whose inferred treatment a user should know about."""
    from tabsynth.transform.categorical import AUTO, resolve_rare_threshold

    lines = []
    for spec in meta:
        s = df[spec.name]
        if spec.kind == "id":
            n = int(s.notna().sum())
            lines.append(
                f"note: {spec.name!r} looks like a key ({int(s.nunique())} distinct of {n} "
                "values): kind id, not modelled; sampling generates new unique ids"
            )
        elif spec.kind == "categorical":
            counts = s.value_counts()
            limit = resolve_rare_threshold(AUTO, int(counts.sum()), len(counts))
            rare = int((counts < limit).sum())
            if rare:
                lines.append(
                    f"note: {spec.name!r}: {rare} of {len(counts)} values are seen fewer than "
                    f"{limit:g} times; fit groups them into one 'other' slot "
                    "(--rare-threshold)"
                )
    return lines


def _metadata(path: str | None, df: Any) -> Any:
    from tabsynth.metadata import Metadata

    if path is None:
        return Metadata.infer(df)
    check_input_file(path, "metadata file")
    return Metadata.load(path)


def _set_threads(args: argparse.Namespace) -> None:
    """Apply ``--threads`` to torch (this process only; the CLI owns its process)."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 60 else f"{int(s // 60)} min {s % 60:04.1f} s"


def _print_timings(timings: dict[str, float]) -> None:
    width = max(len(k) for k in timings)
    print("phase timings:")
    for name, value in timings.items():
        print(f"  {name:<{width}}  {_seconds(value):>12}")
    print(f"  {'total':<{width}}  {_seconds(sum(timings.values())):>12}")


# -- inspect ----------------------------------------------------------------------------------
def cmd_inspect(args: argparse.Namespace) -> int:
    """Infer the metadata of a table and print it (``--save`` writes it as JSON)."""
    df = _read(args.data, sep=getattr(args, "sep", None))
    from tabsynth.metadata import Metadata

    meta = Metadata.infer(df)
    print(f"{args.data}: {len(df)} rows x {df.shape[1]} columns")
    print(meta)
    for line in _notes(df, meta):
        print(line)
    if args.save:
        out = check_output_path(args.save, "metadata file")
        meta.save(out)
        print(f"metadata written to {out} (edit kinds/bounds there, then pass --metadata)")
    return 0


# -- fit --------------------------------------------------------------------------------------
def _model_class(name: str) -> Any:
    import tabsynth

    return getattr(tabsynth, name.upper())


def cmd_fit(args: argparse.Namespace) -> int:
    """Train a model on a table and save it to one ``.tsyn`` file."""
    if (args.delta is not None) and args.epsilon is None:
        raise CLIError("--delta needs --epsilon (it is part of the privacy budget)")
    if getattr(args, "dp_domains", False) and args.epsilon is None:
        raise CLIError("--dp-domains needs --epsilon (the category lists are paid from it)")
    streamed = bool(getattr(args, "out_of_core", False))
    if streamed and getattr(args, "declare_public", False):
        if args.epsilon is None:
            raise CLIError("--declare-public is for DP fits (--epsilon)")
        if getattr(args, "metadata", None) is None:
            # it would publish facts inferred from the rows (a sample plus whole-file min/max
            # and category lists): not done for a streamed table
            raise CLIError(
                "--declare-public with --out-of-core needs --metadata meta.json: a streamed DP "
                "fit does not infer a schema from the rows; write meta.json from a codebook "
                "(tabsynth inspect writes a draft to check and edit)"
            )
    if (
        args.epsilon is not None
        and getattr(args, "metadata", None) is None
        and not getattr(args, "declare_public", False)
    ):
        # refused before the file is read: inferring a schema reads every row, and a refusal
        # that depended on what the rows hold would itself leak (docs/privacy.md)
        raise CLIError(
            "differential privacy needs a public schema: pass --metadata meta.json written "
            "from a codebook (kinds, bounds, category lists declared public), or add "
            "--declare-public to publish the facts inferred from the data (they are then not "
            "protected)"
        )
    distributed = bool(getattr(args, "distributed", False))
    main_rank = True
    if distributed:  # before the file is read: the environment alone
        from tabsynth import _distributed

        main_rank = _distributed.environment()[0] == 0
        args.quiet = args.quiet or not main_rank  # rank 0 alone prints
    out = check_output_path(args.output, "model file")
    _set_threads(args)
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    if streamed:  # the model streams the file itself (and infers the metadata from it)
        if not os.path.exists(args.data):
            raise CLIError(f"no such file or folder: {args.data}")
        df = args.data
        _say(args, f"streaming {args.data} (out-of-core)")
    else:
        df = _read(args.data, sep=getattr(args, "sep", None))
    timings["read"] = time.perf_counter() - t0
    if not streamed and args.epsilon is None:
        _say(args, f"read {args.data}: {len(df)} rows x {df.shape[1]} columns")
    elif not streamed:  # under DP the exact row count is private; the noisy one comes later
        _say(args, f"read {args.data}: {df.shape[1]} columns (row count private under DP)")

    t0 = time.perf_counter()
    if streamed:
        meta = None if args.metadata is None else _metadata(args.metadata, None)
    else:
        meta = _metadata(args.metadata, df)
    dp_domains = bool(getattr(args, "dp_domains", False))
    if getattr(args, "declare_public", False):
        # with --dp-domains the category lists that were not declared stay private: DP pays
        meta.declare_public(category_lists=not dp_domains)
    timings["metadata"] = time.perf_counter() - t0

    params: dict[str, Any] = {
        "device": args.device,
        "random_state": args.seed,
        "verbose": not args.quiet,
    }
    for name in ("epochs", "batch_size", "epsilon", "delta"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    if dp_domains:
        params["dp_domains"] = True
    params["rare_threshold"] = getattr(args, "rare_threshold", "auto")
    model = _model_class(args.model)(**params)
    _say(args, f"fitting {model!r}")
    model.fit(df, metadata=meta, log_dir=getattr(args, "log_dir", None), distributed=distributed)
    if not main_rank:  # every process holds the same model: rank 0 writes it
        return 0
    if streamed and args.epsilon is None:  # under DP the (noisy) count is printed below
        _say(args, f"fitted on {model.n_rows_fit_} rows streamed from {args.data}")
    fitted = getattr(model, "timings_", {})
    timings["preprocess"] = float(fitted.get("preprocess_s", float("nan")))
    timings["train"] = float(fitted.get("train_s", float("nan")))

    t0 = time.perf_counter()
    model.save(out)
    timings["save"] = time.perf_counter() - t0

    if args.epsilon is not None:
        # timings scale with the private row count: not printed under DP
        how = "declared" if meta.n_rows is not None else "noisy, DP"
        print(f"row count used by the fit ({how}): {model.n_rows_fit_}")
    if not args.quiet:
        if args.epsilon is None:
            _print_timings(timings)
        device = getattr(model, "device_", None)
        if device is not None:
            print(f"device: {device}")
    if args.epsilon is not None and args.quiet:  # a verbose fit has printed it already
        from tabsynth.models.base import format_privacy_report

        print(format_privacy_report(model.privacy_report()))
    print(f"model written to {out}")
    return 0


# -- sample -----------------------------------------------------------------------------------
def _chunk_seeds(seed: int | None, n_chunks: int) -> list[int | None]:
    """Independent per-chunk seeds from one ``--seed`` (None: the model's own stream)."""
    if seed is None:
        return [None] * n_chunks
    import numpy as np

    children = np.random.SeedSequence(seed).spawn(n_chunks)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


def cmd_sample(args: argparse.Namespace) -> int:
    """Draw rows from a saved model and stream them to a CSV or Parquet file."""
    if args.n_rows < 1:
        raise CLIError(f"-n must be a positive number of rows, got {args.n_rows}")
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be positive, got {args.chunk_size}")
    table_format(args.output)
    check_input_file(args.model, "model file")
    _set_threads(args)
    import tabsynth

    t0 = time.perf_counter()
    model = tabsynth.load(args.model)
    load_s = time.perf_counter() - t0
    meta = model.metadata_
    transformer = model.transformer_

    def categories_of(column: str) -> list:
        try:
            return list(transformer.categories_of(column))
        except (AttributeError, DataError):
            return list(meta[column].categories or [])

    conditions = resolve_conditions(args.condition or [], meta, categories_of)
    chunk = int(args.chunk_size)
    n_chunks = -(-args.n_rows // chunk)
    seeds = _chunk_seeds(args.seed, n_chunks)

    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    bar = tqdm(total=args.n_rows, unit="row", unit_scale=True, desc="sampling", disable=args.quiet)
    try:
        with table_writer(args.output) as writer:
            for i in range(n_chunks):
                size = min(chunk, args.n_rows - writer.rows)
                df = model.sample(
                    size,
                    conditions=conditions or None,
                    random_state=seeds[i],
                    id_start=writer.rows + 1,  # ids continue across chunks
                )
                writer.write(df)
                bar.update(len(df))
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0
    _say(args, f"loaded the model in {_seconds(load_s)}; sampled in {_seconds(elapsed)}")
    if conditions:
        _say(args, "conditions: " + ", ".join(f"{k}={v!r}" for k, v in conditions.items()))
    print(f"wrote {writer.rows} rows to {writer.path}")
    return 0


# -- evaluate ---------------------------------------------------------------------------------
def _need_matplotlib() -> None:
    """Fail before the (long) evaluation rather than after it when the plots cannot be drawn."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise CLIError("the HTML report needs matplotlib: pip install 'tabsynth[report]'")


def _format_value(value: float) -> str:
    import math

    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.4f}"


def print_summary(report: Any, file: Any = None) -> None:
    """The report's summary as an aligned text table (metric, value, how to read it)."""
    file = sys.stdout if file is None else file
    summary = report.summary()
    rows = []
    for metric, value, direction, meaning in summary[
        ["metric", "value", "direction", "meaning"]
    ].itertuples(index=False):
        how = direction if not str(meaning).startswith("skipped") else meaning
        rows.append((str(metric), _format_value(value), str(how)))
    w0 = max([len(r[0]) for r in rows] + [6])
    w1 = max([len(r[1]) for r in rows] + [5])
    print(f"{'metric':<{w0}}  {'value':>{w1}}  how to read", file=file)
    print(f"{'-' * w0}  {'-' * w1}  {'-' * 11}", file=file)
    for metric, value, how in rows:
        print(f"{metric:<{w0}}  {value:>{w1}}  {how}", file=file)
    for note in report.warnings:
        print(f"note: {note}", file=file)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Compare a synthetic table with the real one and print the summary table."""
    for path in (args.html, args.json):
        if path is not None:
            check_output_path(path, "report file")
    if args.html:
        _need_matplotlib()
    real = _read(args.real, "real table")
    synthetic = _read(args.synthetic, "synthetic table")
    holdout = _read(args.holdout, "holdout table") if args.holdout else None
    if args.target is not None and args.target not in real.columns:
        shown = ", ".join(map(str, real.columns[:20]))
        raise CLIError(f"target column {args.target!r} is not in {args.real}; columns: {shown}")
    if args.target is not None and holdout is None:
        _say(args, "note: ML utility needs --holdout (real rows the model never saw)")
    meta = None
    if args.metadata:
        check_input_file(args.metadata, "metadata file")
        from tabsynth.metadata import Metadata

        meta = Metadata.load(args.metadata)
    import tabsynth

    model = None
    if getattr(args, "model", None):
        model = tabsynth.load(check_input_file(args.model, "model file"))
    t0 = time.perf_counter()
    report = tabsynth.evaluate(
        real,
        synthetic,
        model=model,
        metadata=meta,
        holdout=holdout,
        target=args.target,
        task=args.task,
        random_state=args.seed,
        **({"metrics": args.metrics} if args.metrics else {}),
    )
    elapsed = time.perf_counter() - t0
    print_summary(report)
    _say(args, f"evaluated in {_seconds(elapsed)}")
    if args.json:
        report.to_json(args.json)
        print(f"JSON report written to {args.json}")
    if args.html:
        report.to_html(args.html)
        print(f"HTML report written to {args.html}")
    return 0


# -- demo -------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    """Demo table -> fit -> sample -> evaluate -> HTML report, on built-in data."""
    import tabsynth
    from tabsynth.datasets import DEMO_TARGETS, load_demo, split_table, write_table

    _need_matplotlib()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    _set_threads(args)
    target = DEMO_TARGETS[args.table]
    timings: dict[str, float] = {}
    started = time.perf_counter()

    t0 = time.perf_counter()
    table = load_demo(args.table, n_rows=args.rows, random_state=args.seed)
    train, holdout, note = split_table(table, target, "binary", seed=args.seed)
    write_table(train, out / "real.csv")
    write_table(holdout, out / "holdout.csv")
    meta = tabsynth.Metadata.infer(train)
    meta.save(out / "metadata.json")
    timings["data"] = time.perf_counter() - t0
    _say(args, f"demo table {args.table!r}: {len(train)} training rows, {len(holdout)} holdout")
    _say(args, str(meta))

    from tabsynth.cli.main import DEMO_SETTINGS

    epochs, batch_size = DEMO_SETTINGS[args.model]
    model = _model_class(args.model)(
        epochs=epochs if args.epochs is None else args.epochs,
        batch_size=batch_size if args.batch_size is None else args.batch_size,
        random_state=args.seed,
        device=args.device,
        verbose=not args.quiet,
    )
    _say(args, f"fitting {model!r}")
    t0 = time.perf_counter()
    model.fit(train, metadata=meta)
    timings["fit"] = time.perf_counter() - t0
    model.save(out / "model.tsyn")

    t0 = time.perf_counter()
    synthetic = model.sample(len(train), random_state=args.seed)
    timings["sample"] = time.perf_counter() - t0
    write_table(synthetic, out / "synthetic.csv")

    t0 = time.perf_counter()
    report = tabsynth.evaluate(
        train,
        synthetic,
        metadata=meta,
        holdout=holdout,
        target=target,
        random_state=args.seed,
        model=model,
    )
    report.to_json(out / "report.json")
    report.to_html(out / "report.html")
    timings["evaluate"] = time.perf_counter() - t0

    print_summary(report)
    print()
    _print_timings(timings)
    print(f"\ndone in {_seconds(time.perf_counter() - started)}; outputs in {out}/:")
    for name, what in (
        ("real.csv", "the real training rows"),
        ("holdout.csv", "real rows held out for the utility and privacy tests"),
        ("metadata.json", "the inferred metadata (edit it and pass --metadata to fit)"),
        ("model.tsyn", "the fitted model"),
        ("synthetic.csv", "the synthetic table"),
        ("report.html", "the evaluation report (open it in a browser)"),
        ("report.json", "the same report as JSON"),
    ):
        print(f"  {out / name}  {what}")
    print("next: tabsynth sample " + str(out / "model.tsyn") + " -n 1000 -o more.csv")
    if note:
        print(f"note: {note}")
    print()
    for line in report.verdict_lines():
        print(line)
    return 0
