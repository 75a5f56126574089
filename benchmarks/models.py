"""Model benchmark on Adult: tabsynth's CTGAN/TVAE (and DP CTGAN) against the ctgan library.

Every contender × seed is fitted in its own fresh subprocess (peak RSS per model), with the same
torch/BLAS thread count, epochs and batch size. For each run it records:

* fit time split into preprocessing (metadata + encoder + everything before epoch 0) and
  training, and the median seconds per epoch;
* sampling time for the training row count (26,048 rows), median of ``--sample-repeat`` draws;
* peak RSS of the fit phase, the sample phase and the whole worker process;
* sample quality from ``tabsynth.metrics.evaluate`` (real train vs synthetic, test as holdout,
  target ``income``), computed in a separate subprocess so it does not inflate the peaks.

ctgan's epochs are timed without changing its code: inside the worker, the ``tqdm`` name in
``ctgan.synthesizers.ctgan`` / ``.tvae`` is replaced by an iterator that records a timestamp at
each epoch boundary, and ``DataTransformer.fit`` / ``.transform`` are wrapped with timers.

DP rows (``--epsilons``) fit ``tabsynth.CTGAN(epsilon=E)`` with a public schema: kinds, category
domains and bounds of Adult are declared public knowledge (the census codebook), so no ε is
spent on metadata.

    python benchmarks/models.py [--models ...] [--epochs 100] [--seeds 0,1,2] [--epsilons 1,3,10]
"""

from __future__ import annotations

import argparse
import inspect
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the ``benchmarks`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _common as C  # noqa: E402

SCRIPT = Path(__file__).resolve()
MODELS = ("tabsynth-ctgan", "tabsynth-tvae", "ctgan-ctgan", "ctgan-tvae")
ANCHOR_OF = {"tabsynth-ctgan": "ctgan-ctgan", "tabsynth-tvae": "ctgan-tvae"}
#: headline quality fields: (record key, header, path in ``Report.to_dict()``)
_HGB = "metrics.utility.models.hist_gradient_boosting"
QUALITY = (
    ("q_shape", "shape", "metrics.fidelity.column_shapes"),
    ("q_pair", "pair trends", "metrics.fidelity.column_pair_trends"),
    ("q_detection_lr", "detection AUC LR", "metrics.detection.logistic_auc"),
    ("q_detection_hgb", "detection AUC HGB", "metrics.detection.hist_gradient_boosting_auc"),
    ("q_tstr_auc", "TSTR ROC AUC", f"{_HGB}.roc_auc.synthetic"),
    ("q_tstr_f1", "TSTR macro-F1", f"{_HGB}.macro_f1.synthetic"),
    ("q_dcr", "DCR median", "metrics.privacy.dcr_synthetic_median"),
    ("q_trtr_auc", "TRTR ROC AUC", f"{_HGB}.roc_auc.real"),
    ("q_trtr_f1", "TRTR macro-F1", f"{_HGB}.macro_f1.real"),
    ("q_dcr_holdout", "DCR median holdout", "metrics.privacy.dcr_holdout_median"),
)


# -- ctgan timing (inside the worker only) -----------------------------------------------
class _EpochClock:
    """Stand-in for ``tqdm`` in ctgan's modules: iterates unchanged and timestamps each epoch."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, iterable, *args, **kwargs) -> _EpochClock._Iter:
        self.stamps = []
        return self._Iter(iterable, self.stamps)

    class _Iter:
        def __init__(self, iterable, stamps: list[float]) -> None:
            self._iterable, self._stamps = iterable, stamps

        def __iter__(self):
            for item in self._iterable:
                self._stamps.append(time.perf_counter())
                yield item
            self._stamps.append(time.perf_counter())

        def set_description(self, *args, **kwargs) -> None:
            pass

        set_postfix = update = close = refresh = set_description


def _timed(method, log: dict, key: str):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            log.setdefault(key, time.perf_counter() - start)  # first call: the one inside fit

    return wrapper


def _fit_ctgan(task: dict, train) -> tuple[object, dict]:
    import ctgan
    import ctgan.synthesizers.ctgan as ctgan_mod
    import ctgan.synthesizers.tvae as tvae_mod
    from ctgan.data_transformer import DataTransformer

    clock, log = _EpochClock(), {}
    ctgan_mod.tqdm = tvae_mod.tqdm = clock
    DataTransformer.fit = _timed(DataTransformer.fit, log, "encoder_fit_s")
    DataTransformer.transform = _timed(DataTransformer.transform, log, "encoder_transform_s")

    cls = ctgan.CTGAN if task["model"] == "ctgan" else ctgan.TVAE
    model = cls(
        epochs=task["epochs"],
        batch_size=task["batch_size"],
        enable_gpu=task["device"] != "cpu",
    )
    model.set_random_state(task["seed"])
    start = time.perf_counter()
    model.fit(train, C.adult_discrete_columns())
    end = time.perf_counter()
    stamps = clock.stamps
    epochs = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    timing = dict(
        log,
        encoder_s=log.get("encoder_fit_s", 0.0) + log.get("encoder_transform_s", 0.0),
        fit_s=end - start,
        preprocess_s=stamps[0] - start if stamps else float("nan"),
        train_s=stamps[-1] - stamps[0] if stamps else float("nan"),
        epoch_seconds=epochs,
    )
    losses = model.loss_values
    if losses is not None and len(losses):
        last = losses[losses["Epoch"] == losses["Epoch"].max()]
        timing["final_loss"] = {c: float(last[c].mean()) for c in last.columns if "Loss" in c}
    return model, timing


def _fit_tabsynth(task: dict, train, test) -> tuple[object, dict]:
    import tabsynth

    start = time.perf_counter()
    if task["epsilon"] is None:
        meta = C.adult_metadata(train)
    else:  # public schema: the codebook's domains and ranges (read off the full file)
        import pandas as pd

        meta = C.adult_metadata(pd.concat([train, test], ignore_index=True), public=True)
    metadata_s = time.perf_counter() - start

    cls = tabsynth.CTGAN if task["model"] == "ctgan" else tabsynth.TVAE
    kwargs = dict(epochs=task["epochs"], batch_size=task["batch_size"], random_state=task["seed"])
    if task["epsilon"] is not None:
        kwargs["epsilon"] = task["epsilon"]
    accepted = inspect.signature(cls).parameters
    for key, value in (("device", task["device"]), ("verbose", False), ("progress", False)):
        if key in accepted:
            kwargs[key] = value
    model = cls(**kwargs)
    start = time.perf_counter()
    model.fit(train, metadata=meta)
    fit_s = time.perf_counter() - start

    timings = dict(getattr(model, "timings_", None) or {})
    history = getattr(model, "history_", None)
    epochs = []
    if history is not None and "seconds" in getattr(history, "columns", ()):
        epochs = [float(s) for s in history["seconds"]]
    train_s = float(timings.get("train_s", sum(epochs) if epochs else float("nan")))
    timing = dict(
        metadata_s=metadata_s,
        encoder_s=float(timings.get("preprocess_s", float("nan"))),
        fit_s=metadata_s + fit_s,
        # everything before epoch 0, as for ctgan: metadata, validation, encoder, model build
        preprocess_s=metadata_s + fit_s - train_s,
        train_s=train_s,
        epoch_seconds=epochs,
        timings=timings,
    )
    if history is not None and len(history):
        last = history.iloc[-1]
        timing["final_loss"] = {
            str(c): float(last[c]) for c in history.columns if "loss" in str(c).lower()
        }
    for attr in ("epsilon_", "epsilon_spent_", "delta_"):
        if getattr(model, attr, None) is not None:
            timing[attr.rstrip("_")] = getattr(model, attr)
    return model, timing


def _work_fit(task: dict) -> dict:
    meter = C.PeakMeter()
    with meter.phase("load"):
        train, test = C.split_adult(C.load_adult(task["adult_missing"]))
    with meter.phase("fit"):
        if task["family"] == "ctgan":
            model, timing = _fit_ctgan(task, train)
        else:
            model, timing = _fit_tabsynth(task, train, test)
    n = len(train)
    draws = []
    with meter.phase("sample"):
        for r in range(task["sample_repeat"]):
            start = time.perf_counter()
            if task["family"] == "ctgan":
                synthetic = model.sample(n)
            else:
                synthetic = model.sample(n, random_state=task["seed"] * 1000 + r)
            draws.append(time.perf_counter() - start)
    out = dict(meter.to_dict(), **timing)
    out["sample_s"] = C.median(draws)
    out["sample_draws_s"] = draws
    out["sample_rows"] = n
    epochs = timing.get("epoch_seconds") or []
    out["epochs_timed"] = len(epochs)
    out["epoch_median_s"] = C.median(epochs)
    out["epoch_min_s"] = min(epochs) if epochs else float("nan")
    out["epoch_max_s"] = max(epochs) if epochs else float("nan")
    if task.get("sample_path"):
        Path(task["sample_path"]).parent.mkdir(parents=True, exist_ok=True)
        synthetic.to_parquet(task["sample_path"], index=False)
    return out


def _work_eval(task: dict) -> dict:
    import pandas as pd

    from tabsynth.metrics import evaluate

    train, test = C.split_adult(C.load_adult(task["adult_missing"]))
    synthetic = pd.read_parquet(task["sample_path"])
    start = time.perf_counter()
    report = evaluate(train, synthetic, holdout=test, target=C.ADULT_TARGET, random_state=0)
    out = {"eval_s": time.perf_counter() - start}
    flat = _flatten(report.to_dict())
    out["report"] = flat
    for key, _, path in QUALITY:
        out[key] = flat.get(path)
    return out


def _work(task: dict) -> dict:
    return _work_eval(task) if task["job"] == "eval" else _work_fit(task)


def _flatten(obj, prefix: str = "") -> dict:
    """Numeric leaves of a nested report as ``a.b.c`` keys."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(obj, int | float) and not isinstance(obj, bool):
        out[prefix.rstrip(".")] = float(obj)
    return out


# -- driver --------------------------------------------------------------------------------
def _contenders(args: argparse.Namespace) -> list[dict]:
    out = []
    for name in args.models:
        if name not in MODELS:
            raise SystemExit(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
        family, model = name.split("-")
        out.append(dict(label=name, family=family, model=model, epsilon=None))
    for eps in args.epsilons:
        for name in args.dp_models:
            family, model = name.split("-")
            out.append(dict(label=f"{name} ε={eps:g}", family=family, model=model, epsilon=eps))
    return out


def _anchor_label(label: str) -> str | None:
    return ANCHOR_OF.get(label.split(" ε=")[0])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return C.worker_main(argv[1:], _work)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    csv_str = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    p.add_argument("--models", type=csv_str, default=list(MODELS), help=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--threads", type=int, default=C.default_threads())
    p.add_argument("--seeds", type=lambda s: [int(x) for x in csv_str(s)], default=[0])
    p.add_argument(
        "--epsilons", type=lambda s: [float(x) for x in csv_str(s)], default=[], help="e.g. 1,3,10"
    )
    p.add_argument(
        "--dp-models", type=csv_str, default=["tabsynth-ctgan"], help="models run with --epsilons"
    )
    p.add_argument("--sample-repeat", type=int, default=3)
    p.add_argument("--no-eval", action="store_true", help="skip tabsynth.metrics.evaluate")
    p.add_argument("--device", default="cpu", help="cpu or cuda (both families)")
    p.add_argument(
        "--adult-missing",
        choices=("nan", "category"),
        default="nan",
        help="'?' as missing value (manifest, default) or as its own category (baselines.md)",
    )
    p.add_argument("--timeout", type=float, default=7200.0, help="seconds per worker")
    p.add_argument("--out", default="results/models", help="folder for JSON/CSV and samples")
    args = p.parse_args(argv)

    contenders = _contenders(args)
    if any(c["family"] == "ctgan" for c in contenders) and not C.has_module("ctgan"):
        print("ctgan is not importable here: anchors skipped (use .venv-bench)", file=sys.stderr)
        contenders = [c for c in contenders if c["family"] != "ctgan"]
    do_eval = not args.no_eval and C.has_module("tabsynth.metrics")
    if not args.no_eval and not do_eval:
        print("tabsynth.metrics is not available: quality skipped", file=sys.stderr)

    out_dir = Path(args.out)
    info = {"environment": C.environment_line(args.threads), "args": vars(args)}
    records = []
    for seed in args.seeds:
        for c in contenders:
            slug = c["label"].replace(" ε=", "-eps").replace(" ", "")
            task = dict(
                c,
                job="fit",
                seed=seed,
                epochs=args.epochs,
                batch_size=args.batch_size,
                sample_repeat=args.sample_repeat,
                device=args.device,
                adult_missing=args.adult_missing,
                sample_path=str((out_dir / "samples" / f"{slug}-s{seed}.parquet").resolve()),
            )
            print(f"fit {c['label']} seed {seed} ...", file=sys.stderr, flush=True)
            rec = dict(c, seed=seed, **C.run_worker(SCRIPT, task, args.threads, args.timeout))
            if "error" not in rec and do_eval:
                print(f"evaluate {c['label']} seed {seed} ...", file=sys.stderr, flush=True)
                ev = C.run_worker(SCRIPT, dict(task, job="eval"), args.threads, args.timeout)
                rec.update({k: v for k, v in ev.items() if k != "error"})
                if "error" in ev:
                    rec["eval_error"] = ev["error"]
                    print(f"  evaluation FAILED: {ev['error']}", file=sys.stderr)
                    print(ev.get("traceback", ev.get("stderr_tail", "")), file=sys.stderr)
            if "error" in rec:
                print(f"  FAILED: {rec['error']}", file=sys.stderr)
                print(rec.get("traceback", rec.get("stderr_tail", "")), file=sys.stderr)
            records.append(rec)
            C.write_results(out_dir, "models", records, info)  # partial results survive a stop

    ok = [r for r in records if "error" not in r]
    print(f"\n## Models on Adult: {info['environment']}\n")
    print(
        f"epochs {args.epochs}, batch {args.batch_size}, train 26,048 rows, sampled rows = train "
        f"rows (median of {args.sample_repeat} draws), Adult '?' read as {args.adult_missing}\n"
    )
    quality_cols = [(k, h, ".3f") for k, h, _ in QUALITY[:7]]
    run_cols = [
        ("label", "contender", "s"),
        ("seed", "seed", "d"),
        ("preprocess_s", "preprocess s", ".3g"),
        ("encoder_s", "of which encoder s", ".3g"),
        ("train_s", "train s", ".4g"),
        ("epoch_median_s", "s/epoch (median)", ".3g"),
        ("sample_s", "sample s", ".3g"),
        ("fit_peak_mib", "fit peak MiB", ".0f"),
        ("process_peak_mib", "process peak MiB", ".0f"),
        *quality_cols,
    ]
    print("### Runs\n")
    print(C.markdown_table(ok, run_cols))

    summary = _summarise(ok)
    print("\n### Medians across seeds, ratios anchor / tabsynth (above 1: tabsynth faster)\n")
    print(
        C.markdown_table(
            summary,
            [
                ("label", "contender", "s"),
                ("runs", "runs", "d"),
                ("preprocess_s", "preprocess s", ".3g"),
                ("epoch_median_s", "s/epoch", ".3g"),
                ("sample_s", "sample s", ".3g"),
                ("process_peak_mib", "peak MiB", ".0f"),
                ("x_preprocess", "× preprocess", ".1fx"),
                ("x_epoch", "× s/epoch", ".2fx"),
                ("x_sample", "× sample", ".2fx"),
                ("x_peak", "× peak", ".2fx"),
                *quality_cols,
                ("epsilon", "ε spent", ".3g"),
                ("dp_overhead", "DP s/epoch ÷ non-DP", ".2fx"),
            ],
        )
    )
    trtr = next((r for r in ok if r.get("q_trtr_auc") is not None), None)
    if trtr:
        print(
            f"\nTRTR (real train → real test): ROC AUC {C.fmt(trtr.get('q_trtr_auc'), '.3f')}, "
            f"macro-F1 {C.fmt(trtr.get('q_trtr_f1'), '.3f')}; DCR median of the real test rows "
            f"{C.fmt(trtr.get('q_dcr_holdout'), '.3f')} (the figure a synthetic DCR is read against)"
        )
    C.write_results(out_dir, "models", records, dict(info, summary=summary))
    print(f"\nresults written to {out_dir}/models.json and .csv, samples in {out_dir}/samples/")
    return 1 if len(ok) < len(records) else 0


def _summarise(records: list[dict]) -> list[dict]:
    keys = ["preprocess_s", "train_s", "epoch_median_s", "sample_s", "fit_peak_mib"]
    keys += ["process_peak_mib", "epsilon", *(k for k, _, _ in QUALITY)]
    rows: dict[str, dict] = {}
    for r in records:
        rows.setdefault(r["label"], {"label": r["label"], "_runs": []})["_runs"].append(r)
    for row in rows.values():
        runs = row.pop("_runs")
        row["runs"] = len(runs)
        for k in keys:
            row[k] = C.median([r.get(k) for r in runs])
    for row in rows.values():
        anchor = rows.get(_anchor_label(row["label"]) or "")
        if anchor:
            row["x_preprocess"] = C.ratio(anchor["preprocess_s"], row["preprocess_s"])
            row["x_epoch"] = C.ratio(anchor["epoch_median_s"], row["epoch_median_s"])
            row["x_sample"] = C.ratio(anchor["sample_s"], row["sample_s"])
            row["x_peak"] = C.ratio(anchor["process_peak_mib"], row["process_peak_mib"])
        base = rows.get(row["label"].split(" ε=")[0]) if " ε=" in row["label"] else None
        if base:  # DP overhead: a DP epoch over a non-DP epoch of the same model and batch
            row["dp_overhead"] = C.ratio(row["epoch_median_s"], base["epoch_median_s"])
    return list(rows.values())


if __name__ == "__main__":
    sys.exit(main())
