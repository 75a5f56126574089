"""The differentially private part of ``fit`` shared by both models.

Order of operations (every read of the private table is listed here, see docs/privacy.md):

1. The schema comes from metadata the user declared public; nothing is inferred from data.
2. The row count is public (``metadata.n_rows``) or released with Gaussian noise.
3. The noise of every mechanism is solved at once so the composed (epsilon, delta) meets the
   target: one Gaussian histogram per categorical/boolean column (the only source of the
   condition-vector probabilities), one noisy grid histogram per numeric column (the modes of
   its encoder; no mixture is fit on raw values), and DP-SGD with the exact number of steps.
4. The transformer is built from the schema plus those noisy histograms only.

Each model's ``_train_private`` (in its own file) then reads the encoded rows only through a Poisson loader
and a DPOptimizer whose every step is counted by the ledger's guard.

Secret randomness: every draw the guarantee relies on (metadata noise and thresholds, the
encoding draws of private rows, Poisson masks, DP-SGD noise, per-example draws in the loss)
comes from generators seeded by ``secret_seed`` (OS entropy via ``secrets``), never from
``random_state``; the seeds live only in local variables and are never saved. ``random_state``
still fixes the weight initialisation (data-independent) and the sampling stream.

No data-dependent refusal: before a row is read only the public schema and the column names are
checked (``check_private_input``); afterwards ``private_frame`` maps every schema violation
(null in a non-nullable column, unparsable value, inf, out-of-bounds, unseen category) to a fixed
slot or clips it, and counts it nowhere, so the fit succeeds on D and on D plus any row.
"""

from __future__ import annotations

import math
import numbers
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from opacus.optimizers import DPOptimizer
from torch import nn

from tabsynth import _distributed
from tabsynth.errors import MetadataError, PrivacyError
from tabsynth.metadata import Metadata
from tabsynth.models import _nn
from tabsynth.privacy import (
    Calibration,
    DPSGDPlan,
    GaussianPlan,
    PoissonLoader,
    PrivacyLedger,
    calibrate,
    check_delta,
    domain_counts,
    dp_category_domain,
    dp_grid_histogram,
    dp_histogram,
    dpsgd_steps,
    grid_counts,
    make_dp_optimizer,
    make_poisson_loader,
    noisy_count,
    resolve_delta,
)
from tabsynth.transform import TableTransformer
from tabsynth.transform.categorical import OTHER
from tabsynth.transform.compact import CompactTable, encode_frames
from tabsynth.transform.stream import ParquetSource

#: default delta when the row count is private (well below 1/n for n up to ~10^5)
PRIVATE_N_DELTA = 1e-6
#: share of delta spent on the thresholds of DP-derived category domains (opt-in)
DOMAIN_DELTA_SHARE = 0.1
_MAX_GRID_BINS = 64


@dataclass
class PrivateFit:
    """What the private training loop needs, all of it DP or public."""

    ledger: PrivacyLedger
    calibration: Calibration
    transformer: TableTransformer
    X: CompactTable  # the encoded private rows, compact (on the CPU until a model places it)
    n_estimate: int
    expected_batch: int
    steps_per_epoch: int
    category_probs: dict[str, np.ndarray] = field(default_factory=dict)
    metadata: Metadata | None = None  # the public schema, with any DP-derived domains

    @property
    def steps(self) -> int:
        """The exact number of noisy optimizer steps the budget was calibrated for."""
        return int(self.calibration.dpsgd_plan.steps)  # type: ignore[union-attr]

    @property
    def noise_multiplier(self) -> float:
        return float(self.calibration.noise_multiplier)  # type: ignore[arg-type]

    def loader(self, rows: CompactTable) -> PoissonLoader:
        """Poisson batches of ``rows`` (``self.X``, possibly placed on the device or
        column-reordered): each row joins a batch independently with probability
        ``q = expected_batch / n_estimate``, the batch is ``rows.dense(sampled)`` on the store's
        device; the masks come from a CPU generator seeded from OS entropy, held only by the
        loader."""
        loader = make_poisson_loader(
            rows,
            self.expected_batch,
            generator=_nn.make_generator(secret_seed("poisson"), "cpu"),
            n=self.n_estimate,
        )
        if loader.steps_per_epoch != self.steps_per_epoch:
            raise PrivacyError("internal: the Poisson loader's epoch length changed")
        return loader

    def optimizer(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        max_grad_norm: float,
        clipping: str = "per_sample",
    ) -> DPOptimizer:
        """The DPOptimizer of the calibrated plan, its steps counted by the budget guard.

        Its Gaussian noise comes from a dedicated generator on the parameters' device, seeded
        from OS entropy and held only by the optimizer (nothing that could replay it is kept).
        """
        device = next(module.parameters()).device
        dp_opt = make_dp_optimizer(
            module,
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=self.expected_batch,
            generator=_nn.make_generator(secret_seed("dp-sgd-noise"), device),
            clipping=clipping,
            distributed=_distributed.active() is not None,
        )
        self.calibration.guard(self.ledger).attach(dp_opt)
        return dp_opt


# ---------------------------------------------------------------------- secret randomness
def secret_seed(purpose: str) -> int:
    """A 63-bit seed from OS entropy (``secrets``) for one privacy-relevant stream.

    ``purpose`` only names the stream (the audit's replayable-seed self-test patches this
    function); the value depends on nothing the model stores, and callers keep it only in
    the generator they seed, which is dropped when the fit ends.
    """
    return secrets.randbits(63)


def _secret_rng(purpose: str) -> np.random.Generator:
    """A numpy generator for the metadata noise, seeded with 128 bits of OS entropy."""
    return np.random.default_rng([secret_seed(purpose), secret_seed(purpose)])


# ---------------------------------------------------------------------- public schema
def _derived_dtype(spec: Any) -> str:
    """The output dtype of an undeclared column under DP: a function of public facts only
    (kind, nullability, declared categories / format / timezone), never of the data."""
    if spec.kind == "continuous":
        return "float64"
    if spec.kind == "integer":
        return "Int64" if spec.nullable else "int64"
    if spec.kind == "boolean":
        return "boolean" if spec.nullable else "bool"
    if spec.kind == "categorical":
        cats = spec.categories or []
        return "str" if cats and all(isinstance(c, str) for c in cats) else "object"
    if spec.kind == "datetime":
        if spec.datetime_format is not None:
            return "str"
        return f"datetime64[ns, {spec.timezone}]" if spec.timezone else "datetime64[ns]"
    return "int64"  # id: numbered 1..n


#: facts that reach the output but that the DP path does not need declared: undeclared ones
#: are replaced by a data-free default (``public_schema``)
DERIVED_FACTS = ("datetime_format", "timezone", "ordered", "dtype")


def public_schema(metadata: Metadata) -> Metadata:
    """A copy of ``metadata`` in which every fact that reaches the output is public.

    Facts the DP path needs (kind, nullable, categories, bounds, resolution) must be declared
    (``Metadata.public_problems``). Facts that only shape the output -- dtype, datetime format,
    timezone, ordered -- keep their declared value; an undeclared one (learned from the data,
    e.g. ``int64`` vs ``float64`` depending on whether a null is present) is replaced by a
    default derived from kind + nullability (``_derived_dtype``), so it cannot reveal a row.
    """
    out = Metadata.from_dict(metadata.to_dict())
    for spec in out:
        for fact in DERIVED_FACTS[:-1]:
            if not spec.is_public(fact):
                setattr(spec, fact, False if fact == "ordered" else None)
                spec.origin.pop(fact, None)
        if not spec.is_public("dtype"):
            spec.dtype = _derived_dtype(spec)
            spec.origin["dtype"] = "derived"
    return out


def check_private_input(df: Any, metadata: Any) -> Any:
    """What a DP fit checks before reading a row: the public schema and the column names.

    Everything here is a function of the declared schema and the frame's columns (public), so
    a refusal reveals nothing about the rows. Row-level problems are handled by
    ``private_frame`` without refusing. ``df`` may be the path of a Parquet file or folder
    (an out-of-core fit): its column names come from the Parquet schema (the file's footer),
    no row is read; the :class:`~tabsynth.transform.stream.ParquetSource` is returned to be
    streamed by the fit (the frame itself otherwise).
    """
    from tabsynth.transform.stream import ParquetSource, is_table_path

    streamed = is_table_path(df)
    if not streamed and not isinstance(df, pd.DataFrame):
        raise PrivacyError(f"expected a pandas DataFrame, got {type(df).__name__}")
    if metadata is None:
        raise PrivacyError(
            "differential privacy needs a public schema: pass metadata declared from a "
            "codebook (Metadata.from_dict / update_column); metadata=None would infer every "
            "fact from the private rows"
        )
    if not isinstance(metadata, Metadata):
        raise PrivacyError(f"metadata must be a tabsynth Metadata, got {type(metadata).__name__}")
    for spec in metadata:  # declared facts may have been edited in place since
        spec.check()
    if streamed:  # the footer only: column names, and the row count (0 refused, as below)
        df = ParquetSource(df)
    names = list(df.columns)
    if any(not isinstance(c, str) for c in names) or len(set(names)) != len(names):
        raise PrivacyError("the frame's column names must be unique strings")
    missing = [n for n in metadata.names if n not in names]
    extra = [n for n in names if n not in metadata]
    if missing or extra:
        raise MetadataError(
            f"frame columns differ from the metadata; missing from the frame: {missing}; "
            f"not in the metadata: {extra}"
        )
    if not streamed and df.shape[0] == 0:  # ParquetSource refuses a file without rows
        raise PrivacyError("the frame is empty (0 rows)")
    return df


class _Outside:
    """The value every null of a non-nullable categorical column is mapped to: it is in no
    domain, so the encoder puts it in the ``other`` slot."""

    def __repr__(self) -> str:
        return OTHER


_OUTSIDE = _Outside()


def private_frame(df: pd.DataFrame, metadata: Metadata) -> pd.DataFrame:
    """The private table made to fit the public schema, row by row, without refusing.

    Each cell is mapped by a rule that depends on that cell and the public schema only:
    numbers are parsed (unparsable -> null), clipped to the declared bounds (inf included);
    dates are parsed with the declared format (ISO 8601 when none is declared; unparsable ->
    null); a null in a non-nullable column becomes the lower bound (numeric, datetime) or the
    ``other`` slot (categorical, boolean); values outside a category domain go to ``other``.
    Nothing is counted or reported, so neither the success of the fit nor any output depends
    on whether such a row exists. Id columns are not read.
    """
    n = len(df)
    cols: dict[str, pd.Series] = {}
    for spec in metadata:
        s = df[spec.name]
        if spec.kind in ("continuous", "integer"):
            if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
                s = pd.to_numeric(s.astype(object), errors="coerce")
            x = s.to_numpy(dtype=np.float64, na_value=np.nan)
            null = np.isnan(x)
            x = np.clip(x, float(spec.lower), float(spec.upper))
            if not spec.nullable:
                x = np.where(null, float(spec.lower), x)
            cols[spec.name] = pd.Series(x, index=s.index, dtype=np.float64)
        elif spec.kind == "datetime":
            if pd.api.types.is_datetime64_any_dtype(s.dtype):
                t = pd.to_datetime(s, utc=True)
            else:
                fmt = spec.datetime_format or "ISO8601"
                t = pd.to_datetime(s.astype(object), format=fmt, errors="coerce", utc=True)
            t = t.dt.tz_localize(None)
            if not spec.nullable:
                lower = pd.Timestamp(spec.lower)
                if lower.tzinfo is not None:
                    lower = lower.tz_convert("UTC").tz_localize(None)
                t = t.where(t.notna(), lower)
            cols[spec.name] = t
        elif spec.kind in ("categorical", "boolean"):
            values = s.astype(object).to_numpy(dtype=object, na_value=None).copy()
            if not spec.nullable:
                values[pd.isna(values)] = _OUTSIDE
            cols[spec.name] = pd.Series(values, index=s.index, dtype=object)
        else:  # id: regenerated, never read
            cols[spec.name] = pd.Series(np.zeros(n), index=s.index)
    return pd.DataFrame(cols, index=df.index)


def _domain_values(s: pd.Series) -> pd.Series:
    """Observed values for a DP domain release: hashable scalars only (anything else, like
    a null, is not a candidate category and goes to ``other`` when encoded)."""
    values = s.astype(object).to_numpy(dtype=object, na_value=None)
    keep = np.fromiter(
        (v is not None and isinstance(v, (str, int, float, bool, np.generic)) for v in values),
        dtype=bool,
        count=len(values),
    )
    return pd.Series(values[keep], dtype=object).map(
        lambda v: v.item() if isinstance(v, np.generic) else v
    )


def _grid_bins(lo: float, hi: float, integer: bool) -> int:
    if integer and hi - lo + 1 <= _MAX_GRID_BINS:
        return max(int(hi - lo + 1), 1)
    return _MAX_GRID_BINS


#: what ``calibrate`` solves (the rest of a Calibration is the public plan)
_SOLVED = ("gaussian_sigma", "noise_multiplier", "epsilon", "rdp_epsilon", "metadata_epsilon")


@dataclass
class _Plan:
    """The public half of a DP fit, fixed before any row is read: the schema (with placeholders
    for DP-derived category lists), the planned Gaussian releases and delta."""

    epsilon: float
    delta: float
    metadata: Metadata
    gaussians: list[GaussianPlan]
    derive: list[str]
    cat_cols: list[str]
    num_cols: list[str]
    max_grad_norm: float
    metadata_share: float

    @property
    def early(self) -> list[str]:
        """Releases needed before n and the category lists are known (noise from a provisional
        calibration: the Gaussian sigmas do not depend on the DP-SGD plan)."""
        return [p.name for p in self.gaussians if p.name in ("row-count", "category-domains")]

    def _dpsgd(self, sample_rate: float, steps: int) -> DPSGDPlan:
        return DPSGDPlan("dp-sgd", sample_rate, steps, max_grad_norm=self.max_grad_norm)

    def solved(self, sample_rate: float, steps: int, noise: dict[str, Any]) -> Calibration:
        """The calibration ``solve(sample_rate, steps)`` gave another process (rank 0),
        from its noise levels and epsilons (``_SOLVED``): no second, slower solve."""
        return Calibration(
            self.epsilon,
            self.delta,
            tuple(self.gaussians),
            self._dpsgd(sample_rate, steps),
            **{k: noise[k] for k in _SOLVED},
        )

    def solve(self, sample_rate: float, steps: int) -> Calibration:
        """Every noise level for a DP-SGD run of ``steps`` at ``sample_rate``."""
        try:
            return calibrate(
                self.epsilon,
                self.delta,
                self.gaussians,
                self._dpsgd(sample_rate, steps),
                metadata_share=self.metadata_share,
            )
        except PrivacyError as exc:  # it quotes an internal share: say it with the user's epsilon
            if "cannot be met" not in str(exc):
                raise
            raise PrivacyError(
                f"epsilon={self.epsilon:g} is too small for this fit: no allowed noise level "
                "meets it for every release the fit makes. Raise epsilon, or train fewer epochs "
                "(fewer noisy steps)"
            ) from None


def plan_private_fit(
    metadata: Metadata,
    *,
    epsilon: float,
    delta: float | None,
    max_grad_norm: float,
    metadata_share: float = 0.1,
    dp_domains: bool = False,
) -> _Plan:
    """Step 1 above, from the settings and the declared schema alone (no row is read, so every
    refusal here is data-free)."""
    if isinstance(epsilon, (bool, np.bool_)) or not isinstance(epsilon, numbers.Real):
        raise PrivacyError(f"epsilon must be a positive number or None, got {epsilon!r}")
    epsilon = float(epsilon)  # any real number type (np.float32 included)
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise PrivacyError(f"epsilon must be positive and finite, got {epsilon!r}")
    if delta is not None:  # before any calibration: see check_delta
        delta = check_delta(delta)
    metadata = public_schema(metadata)  # a copy: the caller's metadata is not modified
    derive: list[str] = []
    if dp_domains:
        derive = [
            s.name
            for s in metadata
            if s.kind == "categorical" and (s.categories is None or not s.is_public("categories"))
        ]
        for name in derive:  # placeholders, replaced by the DP release
            metadata[name].categories = []
            metadata[name].origin["categories"] = "dp"
    problems = metadata.public_problems()
    if problems:
        raise PrivacyError(
            "differential privacy needs a public schema: these facts were learned from the "
            "data and would leak it. Declare them from a codebook with "
            "metadata.update_column(...) or Metadata.from_dict(...).declare_public() (do not "
            "call declare_public() on inferred metadata: it publishes the data's own min/max "
            "and category lists; on the command line --declare-public does the same), or let "
            "dp_domains=True derive undeclared category lists with DP: " + "; ".join(problems)
        )
    cat_cols = metadata.names_of("categorical", "boolean")
    num_cols = metadata.names_of("continuous", "integer", "datetime")
    gaussians = []
    if cat_cols:
        gaussians.append(
            GaussianPlan(
                "category-histograms",
                releases=len(cat_cols),
                what="one Gaussian histogram per categorical/boolean column",
            )
        )
    if num_cols:
        gaussians.append(
            GaussianPlan(
                "numeric-histograms",
                releases=len(num_cols),
                what="one Gaussian grid histogram per numeric/datetime column",
            )
        )
    if metadata.n_rows is None:
        gaussians.append(GaussianPlan("row-count", weight=0.25, what="Gaussian noisy row count"))
        delta = PRIVATE_N_DELTA if delta is None else delta
    else:
        delta = resolve_delta(delta, int(metadata.n_rows))
    if derive:
        gaussians.append(
            GaussianPlan(
                "category-domains",
                releases=len(derive),
                threshold_delta=DOMAIN_DELTA_SHARE * delta / len(derive),
                what="one thresholded Gaussian histogram per undeclared category list",
            )
        )
    return _Plan(
        epsilon,
        float(delta),
        metadata,
        gaussians,
        derive,
        cat_cols,
        num_cols,
        float(max_grad_norm),
        metadata_share,
    )


def _release_row_count(
    n_rows: int,
    plan: _Plan,
    provisional: Calibration | None,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
) -> int:
    """The declared n, or a noisy count; delta must be below 1/n either way."""
    if plan.metadata.n_rows is not None:
        return int(plan.metadata.n_rows)
    n_est = noisy_count(
        n_rows, provisional.sigma("row-count"), rng=rng, ledger=ledger, name="row-count"
    )
    if plan.delta >= 1.0 / n_est:
        raise PrivacyError(
            f"delta={plan.delta:g} is not below 1/n for this small table (noisy n={n_est}); "
            "pass a smaller delta"
        )
    return n_est


def _release_domains(
    raw: pd.DataFrame | None,
    plan: _Plan,
    provisional: Calibration | None,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    counts: StreamedCounts | None = None,
) -> None:
    """Replace each placeholder category list with its thresholded DP release (dp_domains):
    from the rows ``raw``, or from the exact counts ``counts`` summed over a streamed table."""
    metadata = plan.metadata
    for name in plan.derive:
        rel = dp_category_domain(
            None if counts is not None else _domain_values(raw[name]),
            provisional.sigma("category-domains"),
            rng=rng,
            ledger=ledger,
            name=f"category-domain:{name}",
            delta=DOMAIN_DELTA_SHARE * plan.delta / len(plan.derive),
            counts=None if counts is None else counts.domains[name],
        )
        if not rel.categories:
            raise PrivacyError(
                f"column {name!r}: no category is frequent enough to survive the DP "
                "threshold (every value is rare, as in an identifier); declare its "
                "category list, or drop the column"
            )
        metadata[name].categories = list(rel.categories)
        if metadata[name].origin.get("dtype") == "derived":
            metadata[name].dtype = _derived_dtype(metadata[name])


def _grid_of(probe: TableTransformer, plan: _Plan, col: str) -> tuple[float, float, int]:
    """The public grid of a numeric column's histogram: encoder bounds and bin count."""
    lo, hi = probe.numeric_bounds(col)
    return lo, hi, _grid_bins(lo, hi, plan.metadata[col].kind == "integer")


def _grid_values(df: pd.DataFrame, probe: TableTransformer, col: str) -> np.ndarray:
    """A numeric column of ``private_frame`` rows in encoder coordinates (NaN: null)."""
    values, null = probe.numeric_values(df, col)
    return np.where(null, np.nan, values)


def _release_numeric_histograms(
    df: pd.DataFrame | None,
    probe: TableTransformer,
    plan: _Plan,
    cal: Calibration,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    counts: StreamedCounts | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One noisy grid histogram per numeric column, in encoder coordinates (they feed the
    encoders' modes directly): ``{column: (bin centres, noisy counts)}``. From the rows
    ``df``, or from the exact grid counts ``counts`` summed over a streamed table."""
    histograms = {}
    for col in plan.num_cols:
        lo, hi, bins = _grid_of(probe, plan, col)
        integer = plan.metadata[col].kind == "integer"
        rel = dp_grid_histogram(
            None if counts is not None else _grid_values(df, probe, col),
            lo,
            hi,
            bins,
            cal.sigma("numeric-histograms"),
            rng=rng,
            ledger=ledger,
            name=f"numeric-histogram:{col}",
            counts=None if counts is None else counts.grids[col],
        )
        centres = rel.centers()
        if integer and bins == int(hi - lo + 1):
            centres = np.arange(lo, hi + 1, dtype=np.float64)
        histograms[col] = (centres, rel.counts)
    return histograms


@dataclass
class StreamedCounts:
    """The exact statistics behind a streamed DP fit's releases, summed over the batches:
    the row count, each DP-derived domain's value counts (``domain_counts``) and each numeric
    column's grid counts (``grid_counts``). Private: only their noisy releases leave
    ``_release``."""

    n_rows: int
    domains: dict[str, pd.Series]
    grids: dict[str, np.ndarray]


def stream_counts(frames: Any, plan: _Plan, probe: TableTransformer) -> StreamedCounts:
    """One pass over ``frames`` (consecutive raw batches of the private table) summing the
    exact counts every metadata release needs; each count is a sum over rows, so the total
    equals the count over the whole table at once (what the in-memory fit noises)."""
    numeric = [plan.metadata[c] for c in plan.num_cols]  # private_frame of these columns only
    grids = {c: np.zeros(_grid_of(probe, plan, c)[2] + 1) for c in plan.num_cols}
    domains = {c: pd.Series(dtype=np.float64) for c in plan.derive}
    n = 0
    for raw in frames:
        n += len(raw)
        for c in plan.derive:
            part = domain_counts(_domain_values(raw[c])).astype(np.float64)
            domains[c] = domains[c].add(part, fill_value=0.0)
        if numeric:
            frame = private_frame(raw[plan.num_cols], numeric)  # type: ignore[arg-type]
            for c in plan.num_cols:
                grids[c] += grid_counts(_grid_values(frame, probe, c), *_grid_of(probe, plan, c))
    return StreamedCounts(n, domains, grids)


def category_slot_counts(X: CompactTable, transformer: TableTransformer, col: str) -> np.ndarray:
    """Exact rows per slot of a categorical column's one-hot span in the compact store (plus
    the empty ``__other__`` cell of ``category_counts``; an all-zero span counts in slot 0,
    as the argmax of the dense span did)."""
    span = transformer.category_span(col)
    counts = np.zeros(span.width + 1, dtype=np.float64)
    for lo in range(0, len(X), _COUNT_ROWS):  # bounded int64 buffers on a large store
        codes = X.codes[lo : lo + _COUNT_ROWS, X._code_index[span.start]].long().clamp_(min=0)
        counts[: span.width] += torch.bincount(codes, minlength=span.width).cpu().numpy()
    return counts


#: rows counted at once when summing a compact store's slots
_COUNT_ROWS = 1 << 20


def _release_category_probs(
    X: CompactTable,
    transformer: TableTransformer,
    plan: _Plan,
    cal: Calibration,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
) -> dict[str, np.ndarray]:
    """One noisy histogram per categorical/boolean column, over its one-hot span of ``X``."""
    probs = {}
    for col in plan.cat_cols:
        span = transformer.category_span(col)
        rel = dp_histogram(
            None,
            list(range(span.width)),
            cal.sigma("category-histograms"),
            rng=rng,
            ledger=ledger,
            name=f"category-histogram:{col}",
            counts=category_slot_counts(X, transformer, col),
        )
        probs[col] = rel.probabilities()
    return probs


def prepare_private_fit(
    df: pd.DataFrame | ParquetSource,
    metadata: Metadata,
    *,
    epsilon: float,
    delta: float | None,
    max_grad_norm: float,
    batch_size: int,
    epochs: int,
    critic_steps: int,
    seed: int,
    metadata_share: float = 0.1,
    dp_domains: bool = False,
) -> PrivateFit:
    """Run steps 1-4 above and return the plan, the public transformer and the encoded rows.

    ``dp_domains=True`` (opt-in): a categorical column whose category list is not declared
    gets one from ``dp_category_domain`` (Gaussian thresholding of the observed values: a value
    seen once survives with probability at most its share of delta), charged to the budget;
    values outside the released domain go to the ``other`` slot.
    """
    plan = plan_private_fit(
        metadata,
        epsilon=epsilon,
        delta=delta,
        max_grad_norm=max_grad_norm,
        metadata_share=metadata_share,
        dp_domains=dp_domains,
    )
    settings = (batch_size, epochs, critic_steps, seed)
    if _distributed.active() is None:
        return _release(df, plan, *settings)
    return _release_distributed(df, plan, *settings)


def _ledger(plan: _Plan) -> PrivacyLedger:
    return PrivacyLedger(
        delta=plan.delta,
        n_treatment="public (declared)" if plan.metadata.n_rows is not None else "noisy count",
        schema_source="declared",
    )


def _dpsgd_schedule(n_est: int, batch_size: int) -> tuple[int, float, int]:
    """``(expected batch, q, steps per epoch)`` from the DP (or declared) row count."""
    expected_batch = int(min(batch_size, n_est))
    sample_rate = expected_batch / n_est
    return expected_batch, sample_rate, int(1 / sample_rate)  # what Opacus' loader runs


def _release_distributed(
    df: pd.DataFrame | ParquetSource,
    plan: _Plan,
    batch_size: int,
    epochs: int,
    critic_steps: int,
    seed: int,
) -> PrivateFit:
    """The DP preparation of one process of a distributed fit.

    Rank 0 makes every release exactly as a one-process fit does (same code, same ledger,
    noise from its own OS entropy) and sends the results -- the public schema with any DP
    domains, the transformer, the noisy count and the DP category frequencies, all DP or
    public -- to the others as JSON. Every process then keeps its shard of the rows (rows
    ``rank::world``, none repeated) for Poisson sampling at the same rate ``q``; the
    others encode their shard with their own secret seed and take rank 0's calibration of
    the same public plan.
    """
    mine: list[PrivateFit] = []

    def release() -> dict[str, Any]:
        private = _release(df, plan, batch_size, epochs, critic_steps, seed)
        mine.append(private)
        return {
            "metadata": private.metadata.to_dict(),
            "transformer": private.transformer.to_dict(),
            "n_estimate": private.n_estimate,
            "category_probs": {k: v.tolist() for k, v in private.category_probs.items()},
            "calibration": {k: getattr(private.calibration, k) for k in _SOLVED},
            "steps": private.steps,
        }

    shared = _distributed.on_main(release)
    if mine:  # rank 0
        private = mine[0]
        private.X = private.X.take(torch.as_tensor(_distributed.shard(len(private.X), pad=False)))
        return private
    metadata = Metadata.from_dict(shared["metadata"])
    transformer = TableTransformer.from_dict(shared["transformer"])
    n_est = int(shared["n_estimate"])
    expected_batch, sample_rate, steps_per_epoch = _dpsgd_schedule(n_est, batch_size)
    steps = dpsgd_steps(int(epochs), steps_per_epoch, int(critic_steps))
    if steps != shared["steps"]:
        raise PrivacyError("internal: the processes planned different numbers of DP-SGD steps")
    cal = plan.solved(sample_rate, steps, shared["calibration"])
    if isinstance(df, pd.DataFrame):
        rows = df.iloc[_distributed.shard(len(df), pad=False)]
        X = _encode(transformer, [private_frame(rows, metadata)], len(rows))
    else:  # streamed: every row encoded (compactly), this process's shard kept
        X = _encode(transformer, _private_frames(df, metadata), df.n_rows)
        X = X.take(torch.as_tensor(_distributed.shard(len(X), pad=False)))
    probs = {k: np.asarray(v, dtype=np.float64) for k, v in shared["category_probs"].items()}
    return PrivateFit(
        _ledger(plan),  # counts this process's DP-SGD steps; rank 0's ledger is the report
        cal,
        transformer,
        X,
        n_est,
        expected_batch,
        steps_per_epoch,
        probs,
        metadata,
    )


def _release(
    df: pd.DataFrame | ParquetSource,
    plan: _Plan,
    batch_size: int,
    epochs: int,
    critic_steps: int,
    seed: int,
) -> PrivateFit:
    """Every release of a one-process fit (and of rank 0 in a distributed one).

    ``df`` may be a :class:`ParquetSource` (out-of-core): one streamed pass sums the exact
    counts of the row-count, domain and numeric releases (``stream_counts``), each noised once
    as the in-memory fit noises the same counts; a second pass encodes the rows batch by
    batch into the compact store, from which the category frequencies are counted.
    """
    ledger = _ledger(plan)

    def calibrate_for(n: int) -> tuple[Calibration, tuple[int, float, int]]:
        schedule = _dpsgd_schedule(n, batch_size)
        steps = dpsgd_steps(int(epochs), schedule[2], int(critic_steps))
        return plan.solve(schedule[1], steps), schedule

    # data-free calibrations first: with a declared n, "epsilon is too small" is refused
    # before a row is read (a streamed table is then never opened)
    provisional = plan.solve(0.01, 1) if plan.early else None
    declared = plan.metadata.n_rows
    solved = calibrate_for(int(declared)) if declared is not None else None
    # from here on the rows are read, and nothing below refuses because of what they hold
    counts = frame = None
    if isinstance(df, pd.DataFrame):
        frame = private_frame(df, plan.metadata)
        n_rows = len(frame)
    else:  # the numeric encoders' coordinates need only the public numeric specs
        counts = stream_counts(df.frames(), plan, TableTransformer(plan.metadata))
        n_rows = counts.n_rows
    rng = _secret_rng("metadata-noise")  # never from random_state, never saved
    n_est = _release_row_count(n_rows, plan, provisional, rng, ledger)
    # before the probe: it needs them
    _release_domains(df if counts is None else None, plan, provisional, rng, ledger, counts)
    probe = TableTransformer(plan.metadata, random_state=seed)

    cal, (expected_batch, _q, steps_per_epoch) = solved or calibrate_for(n_est)
    for name in plan.early:
        if not math.isclose(cal.sigma(name), provisional.sigma(name), rel_tol=1e-12):
            raise PrivacyError(f"internal: the {name} noise changed between calibrations")

    histograms = _release_numeric_histograms(frame, probe, plan, cal, rng, ledger, counts)
    # ``seed`` (from random_state) only names the transformer's public decoding stream; the
    # encoding draws of the private rows (mixture modes) come from a secret seed
    transformer = TableTransformer(plan.metadata, random_state=seed).fit_public(histograms)
    X = _encode(transformer, _private_frames(df, plan.metadata, frame), n_rows)
    return PrivateFit(
        ledger,
        cal,
        transformer,
        X,
        n_est,
        expected_batch,
        steps_per_epoch,
        _release_category_probs(X, transformer, plan, cal, rng, ledger),
        plan.metadata,
    )


def _private_frames(data: Any, metadata: Metadata, frame: pd.DataFrame | None = None) -> Any:
    """The private rows made to fit the schema: ``[frame]`` in memory, batch by batch from a
    streamed source (``private_frame`` is a function of each row alone)."""
    if frame is not None:
        return [frame]
    if isinstance(data, pd.DataFrame):
        return [private_frame(data, metadata)]
    return (private_frame(raw, metadata) for raw in data.frames())


def _encode(transformer: TableTransformer, frames: Any, n_rows: int) -> CompactTable:
    """The private rows (frames already made to fit the schema by ``private_frame``) encoded
    into a compact store chunk by chunk; the encoding draws (mixture modes) come from a secret
    seed, never from ``random_state``."""
    return encode_frames(transformer, frames, n_rows, random_state=secret_seed("encoding"))


def finish_private_fit(private: PrivateFit) -> dict:
    """Check the executed ledger against the plan and build the privacy report."""
    private.calibration.verify(private.ledger)
    report = private.ledger.report()
    report["target_epsilon"] = private.calibration.target_epsilon
    report["noise_multiplier"] = private.calibration.noise_multiplier
    report["n_estimate"] = private.n_estimate
    return report


__all__ = [
    "PRIVATE_N_DELTA",
    "PrivateFit",
    "check_private_input",
    "private_frame",
    "public_schema",
    "secret_seed",
    "stream_counts",
    "finish_private_fit",
    "prepare_private_fit",
]
