"""``evaluate``: checks the inputs, encodes them once and runs every metric family."""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from tabsynth._params import check_int
from tabsynth.errors import DataError, HyperParameterError
from tabsynth.metrics import _data
from tabsynth.metrics.detection import detection
from tabsynth.metrics.fidelity import association_matrix, fidelity
from tabsynth.metrics.privacy import privacy
from tabsynth.metrics.report import FORMAT, FORMAT_VERSION, Report, jsonable, summary_rows
from tabsynth.metrics.utility import TASKS, infer_task, utility

GROUPS = ("fidelity", "detection", "utility", "privacy")
MAX_PLOT_COLUMNS = 30
_TOP_LEVELS = 20
_REGRESSION_KINDS = ("continuous", "integer")
_HOLDOUT_PRIVACY = (
    "dcr_holdout_median",
    "dcr_median_ratio",
    "nndr_holdout_median",
    "holdout_exact_copy_rate",
    "dcr_share_closer_to_train",
    "membership_auc",
)


@dataclass
class _Settings:
    """The checked arguments, in the order the report's ``settings`` lists them."""

    random_state: int | None
    max_rows: int
    max_pairs: int | None
    privacy_queries: int | None
    n_threads: int | None
    target: str | None
    task: str | None
    metrics: list[str]


@dataclass
class _Findings:
    """What the checks and metric groups produce, kept in the order they ran (the report's)."""

    notes: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    results: dict[str, dict] = field(default_factory=dict)
    details: dict[str, list] = field(default_factory=dict)
    plots: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def record(self, group: str, scores: dict, reason: str | None) -> None:
        """A group's scores, or why it could not run: a skipped group reports no half-results."""
        if reason:
            self.skipped[group] = reason
        else:
            self.results[group] = scores


# One metric group: reads the encoded tables, writes its results, skips and notes to _Findings.
_GroupRunner = Callable[[_data.Encoded, np.random.Generator, _Settings, _Findings], None]


def evaluate(
    real: pd.DataFrame,
    synthetic: pd.DataFrame,
    metadata: Any = None,
    holdout: pd.DataFrame | None = None,
    target: str | None = None,
    task: str | None = None,
    random_state: int | None = None,
    *,
    metrics: Iterable[str] = GROUPS,
    max_rows: int = 20_000,
    max_pairs: int | None = 1_000,
    privacy_queries: int | None = 5_000,
    n_threads: int | None = 1,
    model: Any = None,
) -> Report:
    """Compare a synthetic table with the real table it was trained on.

    Parameters
    ----------
    real : the real (training) table the synthesizer saw.
    synthetic : the synthetic table. Columns missing from it, or extra, are reported as warnings
        and the evaluation runs on the common columns.
    metadata : a ``tabsynth.Metadata`` or a dict ``{column: kind}``; inferred from ``real`` when
        None (columns it leaves out are inferred too). ``id`` columns are not evaluated.
    holdout : real rows the synthesizer never saw (same columns as ``real``); needed for ML
        utility and for the holdout-relative privacy metrics.
    target, task : target column for ML utility and its task (``binary``, ``multiclass``,
        ``regression``; inferred from the target when None).
    random_state : seed for every subsample, split and model; None is not reproducible.
    metrics : which families to run, any of ``fidelity``, ``detection``, ``utility``, ``privacy``.
    max_rows : cap on rows per side for detection and on training rows for utility.
    max_pairs : cap on column pairs for pair trends (a seeded sample beyond it); None = all.
    privacy_queries : rows sampled from each query set of the nearest-neighbour searches
        (reference sets are always complete); None = all rows.
    n_threads : threads for the models (OpenMP/BLAS pools, capped with threadpoolctl) and the
        nearest-neighbour search (torch) while ``evaluate`` runs; previous settings are restored
        afterwards. The default 1 is deliberate: these workloads are small (at most ``max_rows``
        rows per model), threads gain little on them, and when other processes keep the cores
        busy, OpenMP spin-waiting makes gradient boosting 5-15x slower (measured in
        docs/metrics.md). None leaves the libraries' own defaults (worth it for
        ``privacy_queries=None`` on a many-core machine).
    model : the fitted tabsynth model that produced ``synthetic`` (optional). Its training
        history (``history_``) is drawn as training curves in the HTML report and, for a
        differentially private fit, its privacy report (epsilon, delta, mechanisms) heads the
        verdict. Nothing else of the model is read.
    """
    started = time.perf_counter()
    settings = _check_args(
        metrics, random_state, max_rows, max_pairs, privacy_queries, n_threads, target, task
    )
    model_info = None if model is None else _model_info(model)
    found = _Findings()
    frames = _check_frames(real, synthetic, holdout)
    common = _common_columns(frames, target, found.notes)
    kinds, formats = _data.resolve_kinds(real, common, metadata, found.notes)
    _check_kinds(kinds, common, target, task, found.notes)
    enc = _data.encode({k: v[common] for k, v in frames.items()}, kinds, formats, found.notes)
    _run_groups(enc, settings, found)
    found.timings["total"] = round(time.perf_counter() - started, 3)
    n_rows = {name: len(df) for name, df in frames.items()}
    columns = {str(c): kinds[c] for c in common}
    return _report(settings, n_rows, columns, found, model_info)


def _check_args(
    metrics: Iterable[str],
    random_state: int | None,
    max_rows: int,
    max_pairs: int | None,
    privacy_queries: int | None,
    n_threads: int | None,
    target: str | None,
    task: str | None,
) -> _Settings:
    """Refuse bad settings before any table is read, naming the argument and its value."""
    groups = {metrics} if isinstance(metrics, str) else set(metrics)
    unknown = groups - set(GROUPS)
    if unknown:
        raise HyperParameterError(
            f"unknown metric families {sorted(unknown)}; choose from {GROUPS}"
        )
    check_int("max_rows", max_rows, low=100)
    check_int("max_pairs", max_pairs, optional=True)
    check_int("privacy_queries", privacy_queries, low=10, optional=True)
    check_int("n_threads", n_threads, optional=True)
    if task is not None and task not in TASKS:
        raise HyperParameterError(f"task must be one of {TASKS}, got {task!r}")
    chosen = [g for g in GROUPS if g in groups]
    return _Settings(
        random_state, max_rows, max_pairs, privacy_queries, n_threads, target, task, chosen
    )


def _check_frames(
    real: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None
) -> dict[str, pd.DataFrame]:
    """The tables by name; a holdout must have the real table's columns to be comparable."""
    _data.check_frame(real, "real")
    _data.check_frame(synthetic, "synthetic")
    frames = {"real": real, "synthetic": synthetic}
    if holdout is not None:
        _data.check_frame(holdout, "holdout")
        missing = [c for c in real.columns if c not in holdout.columns]
        extra = [c for c in holdout.columns if c not in real.columns]
        if missing or extra:
            raise DataError(
                f"holdout columns differ from the real table: missing {missing}, extra {extra}"
            )
        frames["holdout"] = holdout
    return frames


def _common_columns(frames: dict[str, pd.DataFrame], target: str | None, notes: list[str]) -> list:
    """The real columns the synthetic table also has (the rest is a warning, not an error).

    The target must be in every table: utility trains and tests on it.
    """
    real, synthetic = frames["real"], frames["synthetic"]
    common = [c for c in real.columns if c in synthetic.columns]
    if not common:
        raise DataError("the real and synthetic tables have no column in common")
    absent = [c for c in real.columns if c not in synthetic.columns]
    extra = [c for c in synthetic.columns if c not in real.columns]
    if absent:
        notes.append(f"synthetic table lacks real columns {absent}; evaluated the common columns")
    if extra:
        notes.append(f"synthetic table has columns not in the real table {extra}; ignored")
    if target is not None:
        for name, df in frames.items():
            if target not in df.columns:
                raise DataError(f"target column {target!r} is missing from the {name} table")
    return common


def _check_kinds(
    kinds: dict, common: list, target: str | None, task: str | None, notes: list[str]
) -> None:
    """Id columns are left out, so something else must remain, and the target must be learnable."""
    ids = [c for c in common if kinds[c] == "id"]
    if ids:
        notes.append(f"id columns are not evaluated: {ids}")
    if len(ids) == len(common):
        raise DataError("every common column is an id column; nothing to compare")
    if target is None:
        return
    if kinds[target] not in _data.NUMERIC_KINDS | _data.DISCRETE_KINDS:
        raise DataError(f"target {target!r} is an id column; choose a column to predict")
    if kinds[target] == "datetime":
        raise DataError(f"target {target!r} is a datetime column; utility needs another target")
    if task == "regression" and kinds[target] not in _REGRESSION_KINDS:
        raise DataError(
            f"target {target!r} is {kinds[target]}; task 'regression' needs a numeric target"
        )


def _run_groups(enc: _data.Encoded, settings: _Settings, found: _Findings) -> None:
    """Run the requested groups in GROUPS order, timing each.

    Every group draws from its own child of ``random_state``'s seed sequence, so a group's values
    do not depend on which other groups were requested.
    """
    seeds = np.random.SeedSequence(settings.random_state).spawn(len(GROUPS))
    with _thread_limit(settings.n_threads, torch_too="privacy" in settings.metrics):
        for group, seed in zip(GROUPS, seeds, strict=True):
            if group not in settings.metrics:
                found.skipped[group] = "not requested"
                continue
            t0 = time.perf_counter()
            _GROUP_RUNNERS[group](enc, np.random.default_rng(seed), settings, found)
            found.timings[group] = round(time.perf_counter() - t0, 3)


def _run_fidelity(
    enc: _data.Encoded, rng: np.random.Generator, settings: _Settings, found: _Findings
) -> None:
    """Column and pair scores, plus the plot data the HTML report draws them from."""
    scores, cols, pairs = fidelity(enc, rng, settings.max_pairs)
    if scores["n_pairs_evaluated"] < scores["n_pairs_total"]:
        found.notes.append(
            f"pair trends computed on a seeded sample of {scores['n_pairs_evaluated']} "
            f"of {scores['n_pairs_total']} column pairs"
        )
    found.results["fidelity"] = scores
    found.details["columns"] = cols.to_dict(orient="records")
    found.details["pairs"] = pairs.to_dict(orient="records")
    found.plots["marginals"] = _marginal_plots(enc)
    found.plots["n_marginal_columns"] = len(enc.columns)
    found.plots["pairs"] = _pair_plot(enc, pairs)
    found.skipped.update(_not_applicable(enc))


def _run_detection(
    enc: _data.Encoded, rng: np.random.Generator, settings: _Settings, found: _Findings
) -> None:
    """How well a classifier tells real from synthetic rows (skipped when it cannot be trained)."""
    found.record("detection", *detection(enc, rng, settings.max_rows))


def _run_utility(
    enc: _data.Encoded, rng: np.random.Generator, settings: _Settings, found: _Findings
) -> None:
    """ML utility (train on synthetic, test on holdout) and augmentation utility.

    Both need a target and real rows never trained on, so either one missing skips the group.
    """
    target = settings.target
    if target is None:
        found.skipped["utility"] = "no target column given"
        return
    if "holdout" not in enc.frames:
        found.skipped["utility"] = (
            "no holdout given (utility is tested on real rows never trained on)"
        )
        return
    task = settings.task if settings.task is not None else infer_task(enc, target)
    scores, notes, reason = utility(enc, target, task, rng, settings.max_rows)
    found.notes.extend(f"utility: {n}" for n in notes)
    found.record("utility", scores, reason)


def _run_privacy(
    enc: _data.Encoded, rng: np.random.Generator, settings: _Settings, found: _Findings
) -> None:
    """Distance-based privacy risks; the holdout-relative ones are skipped, with why, if absent."""
    scores, hists, notes = privacy(enc, rng, settings.privacy_queries)
    found.notes.extend(f"privacy: {n}" for n in notes)
    found.results["privacy"] = scores
    found.plots["privacy"] = hists
    if "holdout" not in enc.frames:
        for name in _HOLDOUT_PRIVACY:
            found.skipped[f"privacy.{name}"] = "needs a holdout table"
    elif not scores["dcr_holdout_median"] > 0:
        found.skipped["privacy.dcr_median_ratio"] = (
            "median holdout distance is 0: holdout rows also occur in the real table"
        )


_GROUP_RUNNERS: dict[str, _GroupRunner] = {
    "fidelity": _run_fidelity,
    "detection": _run_detection,
    "utility": _run_utility,
    "privacy": _run_privacy,
}


def _report(
    settings: _Settings,
    n_rows: dict[str, int],
    columns: dict[str, str],
    found: _Findings,
    model_info: dict | None,
) -> Report:
    """The report's JSON document: provenance, settings, inputs, results and plot data."""
    from tabsynth import __version__

    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tabsynth_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "settings": asdict(settings),
        "n_rows": n_rows,
        "columns": columns,
        "warnings": found.notes,
        "skipped": found.skipped,
        "metrics": found.results,
        "summary": summary_rows(found.results, found.skipped),
        "details": found.details,
        "plots": found.plots,
        "timings_s": found.timings,
    }
    if model_info is not None:
        data["model"] = model_info
    return Report(jsonable(data))


@contextmanager
def _thread_limit(n_threads: int | None, torch_too: bool) -> Iterator[None]:
    """Temporarily cap library thread pools; restores the previous settings on exit."""
    if n_threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=n_threads):
        if not torch_too:
            yield
            return
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(n_threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def _not_applicable(enc: _data.Encoded) -> dict[str, str]:
    """Fidelity aggregates that have nothing to average, with the reason."""
    out = {}
    if not enc.num_cols:
        for name in ("range_coverage", "boundary_adherence"):
            out[f"fidelity.{name}"] = "no numeric or datetime columns"
    if not enc.cat_cols:
        for name in ("category_coverage", "category_adherence"):
            out[f"fidelity.{name}"] = "no categorical or boolean columns"
    if len(enc.columns) < 2:
        for name in ("column_pair_trends", "column_pair_trends_all"):
            out[f"fidelity.{name}"] = "fewer than two evaluated columns"
    return out


def _marginal_plots(enc: _data.Encoded) -> list[dict]:
    """Histogram / bar data for the first MAX_PLOT_COLUMNS columns (JSON-able)."""
    out = []
    for col in enc.columns[:MAX_PLOT_COLUMNS]:
        kind, j = enc.position(col)
        entry: dict[str, Any] = {"column": str(col), "kind": enc.kinds[col]}
        if kind == "num":
            entry.update(
                _histogram(enc.frames["real"].num[:, j], enc.frames["synthetic"].num[:, j])
            )
        else:
            entry.update(_category_bars(enc, j))
        out.append(entry)
    return out


def _plot_range(rn: np.ndarray, sn: np.ndarray) -> tuple[float, float]:
    """The real 0.5-99.5 % range, widened to the synthetic central 90 %.

    A shifted synthetic column still shows, and a few far outliers do not squash the real shape.
    """
    bounds = []
    if rn.size:
        bounds.append(np.quantile(rn, [0.005, 0.995]))
    if sn.size:
        bounds.append(np.quantile(sn, [0.05, 0.95] if rn.size else [0.005, 0.995]))
    if bounds:
        lo = min(float(b[0]) for b in bounds)
        hi = max(float(b[1]) for b in bounds)
    else:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return lo, hi


def _histogram(r: np.ndarray, s: np.ndarray) -> dict[str, Any]:
    """Real and synthetic shares in 30 bins of one numeric column, with missing shares.

    Values beyond the plotted range are counted, not clipped into the edge bins: clipping
    draws a spike at the range's ends that is in neither table.
    """
    rn, sn = r[~np.isnan(r)], s[~np.isnan(s)]
    lo, hi = _plot_range(rn, sn)
    edges = np.linspace(lo, hi, 31)
    return {
        "type": "numeric",
        "edges": edges,
        "real": np.histogram(rn, bins=edges)[0] / max(1, rn.size),
        "synthetic": np.histogram(sn, bins=edges)[0] / max(1, sn.size),
        "outside": {
            "real": float(np.mean((rn < lo) | (rn > hi))) if rn.size else 0.0,
            "synthetic": float(np.mean((sn < lo) | (sn > hi))) if sn.size else 0.0,
        },
        "missing": {"real": float(np.isnan(r).mean()), "synthetic": float(np.isnan(s).mean())},
    }


def _category_bars(enc: _data.Encoded, j: int) -> dict[str, Any]:
    """Real and synthetic shares of the _TOP_LEVELS first levels of categorical column ``j``.

    The remaining levels are pooled as "(other)"; bars empty on both sides are left out.
    """
    k = int(enc.n_levels[j])
    top = min(k, _TOP_LEVELS)
    labels = [str(v) for v in enc.levels[j][:top]] + ["(other)", "(missing)"]
    shares = []
    for f in (enc.frames["real"], enc.frames["synthetic"]):
        counts = np.bincount(f.cat[:, j], minlength=k + 1) / f.n
        shares.append([*counts[:top], counts[top:k].sum(), counts[k]])
    keep = [i for i in range(len(labels)) if shares[0][i] > 0 or shares[1][i] > 0]
    return {
        "type": "categorical",
        "labels": [labels[i] for i in keep],
        "real": [shares[0][i] for i in keep],
        "synthetic": [shares[1][i] for i in keep],
    }


def _pair_plot(enc: _data.Encoded, pairs: pd.DataFrame) -> dict:
    """Real and synthetic association matrices and 1 - pair score, first MAX_PLOT_COLUMNS columns.

    Associations: Pearson r for two numeric columns (signed), Cramér's V otherwise (numeric
    columns binned on the real edges, as in the pair scores), see :func:`association_matrix`.
    """
    cols = [str(c) for c in enc.columns[:MAX_PLOT_COLUMNS]]
    index = {c: i for i, c in enumerate(cols)}
    m = np.full((len(cols), len(cols)), np.nan)
    np.fill_diagonal(m, 0.0)
    for a, b, score in zip(pairs["column_1"], pairs["column_2"], pairs["score"], strict=True):
        ia, ib = index.get(str(a)), index.get(str(b))
        if ia is not None and ib is not None:
            m[ia, ib] = m[ib, ia] = 1.0 - score
    chosen = enc.columns[:MAX_PLOT_COLUMNS]
    real, synthetic = association_matrix(enc, chosen)
    return {"columns": cols, "difference": m, "real": real, "synthetic": synthetic}


def _model_info(model: Any) -> dict:
    """Training history and DP ledger of a fitted model, as JSON-able data for the report."""
    history = getattr(model, "history_", None)
    if not isinstance(history, pd.DataFrame):
        raise DataError(
            f"model must be a fitted tabsynth model (with a history_ table), got "
            f"{type(model).__name__}; fit it first or leave model=None"
        )
    params = model.get_params() if hasattr(model, "get_params") else {}
    keep = ("epochs", "batch_size", "epsilon", "delta")
    return {
        "name": type(model).__name__,
        "params": {k: params[k] for k in keep if params.get(k) is not None},
        "history": {str(c): history[c].tolist() for c in history.columns},
        "privacy": getattr(model, "privacy_report_", None),
    }
