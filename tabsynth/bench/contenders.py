"""The contenders of the benchmark: one registry entry each.

A contender is a name, the statement that must succeed in the interpreter that runs it (so a
missing optional library gives a "skipped" row, not a crash) and an adapter that fits on the
cell's training frame and returns the synthetic frame. A tabsynth model class is one line in
:data:`CONTENDERS` (``tabsynth_model("argn", "ARGN")`` runs ``tabsynth.ARGN`` by name as soon as
it exists). The anchors (the ``ctgan`` library, SDV's GaussianCopula, ``mostlyai-engine``'s
TabularARGN) run in the anchor interpreter (``.venv-bench``, ``scripts/bench-env.sh``): they
pin pandas < 3. Every library is imported inside its adapter, never here.
"""

from __future__ import annotations

import inspect
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tabsynth import MODELS
from tabsynth.bench.measure import PeakRSS

__all__ = ["CONTENDERS", "CellContext", "Contender", "tabsynth_model"]


@dataclass
class CellContext:
    """What an adapter gets: the cell settings, the prepared frames and where to record."""

    cell: dict
    train: Any
    test: Any
    meta: Any  # tabsynth Metadata of the training frame (manifest kinds declared)
    kinds: dict[str, str]  # the manifest's column kinds (empty for other tables)
    peak: PeakRSS
    row: dict

    @property
    def seed(self) -> int:
        return int(self.cell["seed"])


@dataclass(frozen=True)
class Contender:
    """One benchmark contender.

    ``fit_sample(ctx)`` fits on ``ctx.train`` and returns ``len(ctx.train)`` synthetic rows,
    timing its phases with ``ctx.peak.phase(ctx.row, "fit")`` and ``"sample"``. ``requires`` is
    Python code that must run without error where the contender runs; ``anchor`` contenders run
    in the anchor interpreter; ``dp`` ones are also run at every ``--epsilons`` value.
    """

    name: str
    label: str
    fit_sample: Callable[[CellContext], Any]
    requires: str
    anchor: bool = False
    dp: bool = False
    uses_epochs: bool = True


# -- tabsynth models ----------------------------------------------------------------------------
def _privacy_spent(model: Any) -> tuple[float | None, float | None]:
    """(epsilon, delta) the fitted model's privacy report states."""
    from tabsynth.bench.results import float_or_none

    report = model.privacy_report()
    eps = report.get("epsilon_spent", report.get("epsilon"))
    return float_or_none(eps), float_or_none(report.get("delta"))


def tabsynth_model(name: str, class_name: str) -> Contender:
    """The registry entry of ``tabsynth.<class_name>`` (fit with ``metadata=``, DP-capable)."""

    def fit_sample(ctx: CellContext) -> Any:
        import tabsynth
        from tabsynth.bench.data import public_metadata

        cls = getattr(tabsynth, class_name)
        cell, meta = ctx.cell, ctx.meta
        params: dict[str, Any] = {"random_state": ctx.seed, "verbose": False}
        for key in ("epochs", "batch_size", "device"):
            if cell.get(key) is not None:
                params[key] = cell[key]
        if cell.get("epsilon") is not None:
            params["epsilon"] = cell["epsilon"]
            if cell.get("delta") is not None:
                params["delta"] = cell["delta"]
            public_lists = cell.get("public_schema", True)
            meta = public_metadata(ctx.train, ctx.test, ctx.kinds, category_lists=public_lists)
            if not public_lists:
                params["dp_domains"] = True
        accepted = inspect.signature(cls).parameters
        model = cls(**{k: v for k, v in params.items() if k in accepted})
        with ctx.peak.phase(ctx.row, "fit"):
            model.fit(ctx.train, metadata=meta)
        timings = getattr(model, "timings_", None) or {}
        ctx.row["preprocess_s"] = timings.get("preprocess_s")
        ctx.row["train_s"] = timings.get("train_s")
        history = getattr(model, "history_", None)
        if history is not None and "seconds" in getattr(history, "columns", ()):
            ctx.row["epochs_run"] = len(history)
            ctx.row["epoch_median_s"] = float(history["seconds"].median())
        if cell.get("epsilon") is not None:
            ctx.row["epsilon_spent"], ctx.row["delta"] = _privacy_spent(model)
        return _sample_timed(ctx, lambda seed: model.sample(len(ctx.train), random_state=seed))

    return Contender(
        name,
        f"tabsynth {class_name}",
        fit_sample,
        requires=f"import tabsynth; tabsynth.{class_name}",
        dp=True,
    )


def _sample_timed(ctx: CellContext, draw: Callable[[int], Any]) -> Any:
    """Draw ``sample_repeat`` times (seeds: the cell seed, then seed*1000+r); keep the first.

    ``sample_s`` is the median over the draws; the first draw is the one that gets scored.
    """
    import statistics

    repeat = max(1, int(ctx.cell.get("sample_repeat") or 1))
    draws: list[float] = []
    first = None
    with ctx.peak.phase(ctx.row, "sample"):
        for r in range(repeat):
            start = time.perf_counter()
            out = draw(ctx.seed if r == 0 else ctx.seed * 1000 + r)
            draws.append(time.perf_counter() - start)
            if r == 0:
                first = out
    ctx.row["sample_s"] = statistics.median(draws)
    return first


# -- anchors: shared frame conversion ----------------------------------------------------------
def anchor_frame(train: Any, meta: Any) -> tuple[Any, list[str], dict[str, str]]:
    """The training table in the plain types the anchor libraries take.

    id columns are left out (they are not modelled), datetimes become float seconds, nullable
    numeric extension types become float, discrete columns become object with NaN for missing.
    Returns ``(frame, discrete column names, {column: kind})``.
    """
    import numpy as np
    import pandas as pd

    out = {}
    discrete: list[str] = []
    kinds: dict[str, str] = {}
    for spec in meta:
        name, kind = spec.name, spec.kind
        if kind == "id":
            continue
        s = train[name]
        kinds[name] = kind
        if kind == "datetime":
            values = pd.to_datetime(s)
            if getattr(values.dt, "tz", None) is not None:
                values = values.dt.tz_convert("UTC").dt.tz_localize(None)
            secs = values.astype("datetime64[ns]").to_numpy().astype("int64") / 1e9
            secs[values.isna().to_numpy()] = np.nan
            out[name] = secs
        elif kind in ("categorical", "boolean"):
            out[name] = s.astype(object).where(s.notna(), np.nan).to_numpy(dtype=object)
            discrete.append(name)
        else:
            out[name] = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()
    return pd.DataFrame(out), discrete, kinds


def from_anchor(syn: Any, kinds: dict[str, str]) -> Any:
    """Undo :func:`anchor_frame` where evaluation needs it (datetimes, integer rounding)."""
    import numpy as np
    import pandas as pd

    syn = syn.copy()
    for name, kind in kinds.items():
        if name not in syn.columns:
            continue
        if kind == "datetime":
            secs = pd.to_numeric(syn[name], errors="coerce").to_numpy(dtype="float64")
            syn[name] = pd.to_datetime(secs * 1e9, unit="ns", errors="coerce")
        elif kind == "integer":
            values = pd.to_numeric(syn[name], errors="coerce").to_numpy(dtype="float64")
            syn[name] = np.round(values)
    return syn


# -- the ctgan library ---------------------------------------------------------------------------
def _impute_for_ctgan(frame: Any, discrete: list[str]) -> tuple[Any, list[str], dict[str, str]]:
    """ctgan refuses missing values in continuous columns: fill them with the median and add a
    discrete ``<col>__missing`` indicator, which ``_restore_missing`` turns back into NaN.
    Missing values in discrete columns stay NaN (ctgan encodes them as a category)."""
    import numpy as np

    frame = frame.copy()
    indicators: dict[str, str] = {}
    for name in [c for c in frame.columns if c not in discrete]:
        missing = frame[name].isna().to_numpy()
        if missing.any():
            flag = f"{name}__missing"
            fill = float(np.nanmedian(frame[name].to_numpy())) if (~missing).any() else 0.0
            frame[name] = frame[name].fillna(fill)
            frame[flag] = np.where(missing, "yes", "no").astype(object)
            indicators[name] = flag
    return frame, [*discrete, *indicators.values()], indicators


def _restore_missing(syn: Any, indicators: dict[str, str]) -> Any:
    for name, flag in indicators.items():
        if name in syn.columns and flag in syn.columns:
            syn.loc[syn[flag].astype(str) == "yes", name] = float("nan")
    return syn.drop(columns=[f for f in indicators.values() if f in syn.columns])


class _EpochClock:
    """Stand-in for ``tqdm`` in ctgan's modules: iterates unchanged and timestamps each epoch,
    so ctgan's epochs are timed without changing its code."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def __call__(self, iterable: Any, *args: Any, **kwargs: Any) -> _EpochClock:
        self.stamps = []
        self._iterable = iterable
        return self

    def __iter__(self) -> Any:
        for item in self._iterable:
            self.stamps.append(time.perf_counter())
            yield item
        self.stamps.append(time.perf_counter())

    def set_description(self, *args: Any, **kwargs: Any) -> None:
        pass

    set_postfix = update = close = refresh = set_description


def _ctgan_library(class_name: str) -> Callable[[CellContext], Any]:
    def fit_sample(ctx: CellContext) -> Any:
        import statistics

        import ctgan
        import ctgan.synthesizers.ctgan as ctgan_mod
        import ctgan.synthesizers.tvae as tvae_mod

        frame, discrete, kinds = anchor_frame(ctx.train, ctx.meta)
        frame, discrete_all, indicators = _impute_for_ctgan(frame, discrete)
        cls = getattr(ctgan, class_name)
        extra: dict[str, Any] = {"enable_gpu": ctx.cell.get("device") == "cuda"}
        if "verbose" in inspect.signature(cls).parameters:
            extra["verbose"] = False
        params = {k: ctx.cell[k] for k in ("epochs", "batch_size") if ctx.cell.get(k) is not None}
        model = cls(**params, **extra)
        model.set_random_state(ctx.seed)
        clock = _EpochClock()
        ctgan_mod.tqdm = tvae_mod.tqdm = clock
        with ctx.peak.phase(ctx.row, "fit"):
            start = time.perf_counter()
            model.fit(frame, discrete_columns=discrete_all)
        stamps = clock.stamps
        if len(stamps) > 1:
            epochs = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
            ctx.row["preprocess_s"] = stamps[0] - start
            ctx.row["train_s"] = stamps[-1] - stamps[0]
            ctx.row["epochs_run"] = len(epochs)
            ctx.row["epoch_median_s"] = statistics.median(epochs)
        syn = _sample_timed(ctx, lambda _seed: model.sample(len(ctx.train)))
        return from_anchor(_restore_missing(syn, indicators), kinds)

    return fit_sample


# -- SDV GaussianCopula --------------------------------------------------------------------------
def _gaussian_copula(ctx: CellContext) -> Any:
    import sdv
    from sdv.metadata import Metadata as SDVMetadata
    from sdv.single_table import GaussianCopulaSynthesizer

    frame, discrete, kinds = anchor_frame(ctx.train, ctx.meta)
    columns = {
        name: {"sdtype": "categorical" if name in discrete else "numerical"}
        for name in frame.columns
    }
    sdv_meta = SDVMetadata.load_from_dict({"tables": {"table": {"columns": columns}}})
    model = GaussianCopulaSynthesizer(sdv_meta)
    sdv2 = int(sdv.__version__.split(".")[0]) >= 2  # SDV 2 takes and returns {table: frame}
    with ctx.peak.phase(ctx.row, "fit"):
        model.fit({"table": frame} if sdv2 else frame)

    def draw(_seed: int) -> Any:
        syn = model.sample(num_rows=len(ctx.train))
        return next(iter(syn.values())) if isinstance(syn, dict) else syn

    return from_anchor(_sample_timed(ctx, draw), kinds)


# -- mostlyai-engine TabularARGN ------------------------------------------------------------------
def _mostlyai_argn(ctx: CellContext) -> Any:
    """``mostlyai.engine.TabularARGN`` at its defaults (it stops early on its own validation
    split; ``epochs`` caps ``max_epochs``). It gets the training frame as tabsynth does, id
    columns left out; its workspace lives in a temporary folder."""
    from mostlyai.engine import TabularARGN

    frame = ctx.train[[s.name for s in ctx.meta if s.kind != "id"]]
    kinds = {s.name: s.kind for s in ctx.meta if s.kind != "id"}
    params: dict[str, Any] = {"random_state": ctx.seed, "verbose": 0}
    if ctx.cell.get("epochs") is not None:
        params["max_epochs"] = ctx.cell["epochs"]
    if ctx.cell.get("device") in ("cpu", "cuda"):
        params["device"] = ctx.cell["device"]
    with tempfile.TemporaryDirectory(prefix="tabsynth-bench-argn-") as workspace:
        model = TabularARGN(workspace_dir=workspace, **params)
        with ctx.peak.phase(ctx.row, "fit"):
            model.fit(frame)
        syn = _sample_timed(ctx, lambda _seed: model.sample(n_samples=len(ctx.train)))
    return _like_train(syn, ctx.train, kinds)


def _like_train(syn: Any, train: Any, kinds: dict[str, str]) -> Any:
    """Numbers and datetimes of a sample in the training frame's types (a library may return
    them as text or without the time zone); categories are left as they come."""
    import numpy as np
    import pandas as pd

    syn = syn.copy()
    for name, kind in kinds.items():
        if name not in syn.columns:
            continue
        if kind == "datetime":
            values = pd.to_datetime(syn[name], errors="coerce")
            zone = getattr(pd.to_datetime(train[name]).dt, "tz", None)
            if zone is not None and values.dt.tz is None:
                values = values.dt.tz_localize(zone)
            syn[name] = values
        elif kind in ("integer", "continuous"):
            values = pd.to_numeric(syn[name], errors="coerce").astype("float64")
            syn[name] = np.round(values) if kind == "integer" else values
    return syn


#: name -> contender; the CLI's ``--models`` and ``benchmarks/*.py`` choose from these names
CONTENDERS: dict[str, Contender] = {
    c.name: c
    for c in (
        *(tabsynth_model(name.lower(), name) for name in MODELS),
        Contender("anchor-ctgan", "ctgan.CTGAN", _ctgan_library("CTGAN"), "import ctgan", True),
        Contender("anchor-tvae", "ctgan.TVAE", _ctgan_library("TVAE"), "import ctgan", True),
        Contender(
            "gaussiancopula",
            "SDV GaussianCopula",
            _gaussian_copula,
            "import sdv",
            True,
            False,
            False,
        ),
        Contender(
            "mostlyai-argn",
            "mostlyai-engine TabularARGN",
            _mostlyai_argn,
            "from mostlyai.engine import TabularARGN",
            anchor=True,
        ),
    )
}
