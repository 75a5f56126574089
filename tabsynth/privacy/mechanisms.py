"""DP metadata mechanisms: what the models may know about the private table besides DP-SGD.

Every mechanism here adds Gaussian noise to a statistic whose L2 sensitivity under add/remove of
one row is 1 (a row falls in exactly one cell of a histogram, or changes a count by one), so
``sigma`` is both the noise standard deviation in counts and the noise multiplier. Every call
records itself on the ``ledger`` it is given and draws its noise from the explicit ``rng``.
Everything computed from a returned release (frequencies, quantiles, modes) is
post-processing and costs nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

from tabsynth.errors import DataError, MetadataError, PrivacyError
from tabsynth.privacy.ledger import PrivacyLedger

__all__ = [
    "OTHER",
    "GridRelease",
    "HistogramRelease",
    "category_counts",
    "dp_category_domain",
    "dp_grid_histogram",
    "dp_histogram",
    "dp_quantiles",
    "domain_counts",
    "grid_counts",
    "noisy_count",
    "quantiles_from_histogram",
    "threshold_delta",
    "threshold_for_delta",
]

#: the slot that collects out-of-domain values and categories merged by thresholding
OTHER = "__other__"
#: default threshold of ``dp_histogram`` in units of sigma (as MST's ``compress_domain``)
DEFAULT_THRESHOLD_SIGMAS = 3.0


def _check_sigma(sigma: Any, name: str) -> float:
    try:
        out = float(sigma)
    except (TypeError, ValueError):
        raise PrivacyError(f"mechanism {name!r}: sigma must be a number, got {sigma!r}") from None
    if not math.isfinite(out) or out <= 0:
        raise PrivacyError(f"mechanism {name!r}: sigma must be positive and finite, got {sigma!r}")
    return out


def _check_rng(rng: Any, name: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise PrivacyError(
            f"mechanism {name!r}: rng must be a numpy Generator (np.random.default_rng(seed))"
        )
    return rng


def _series(values: Any) -> pd.Series:
    return values if isinstance(values, pd.Series) else pd.Series(values)


# ---------------------------------------------------------------------- exact statistics
def category_counts(values: Any, domain: Sequence) -> np.ndarray:
    """Exact counts of ``values`` over ``domain`` plus one last ``__other__`` cell.

    Values outside the domain (and missing values, unless the domain lists a missing value)
    land in the last cell, so every row adds exactly 1 to exactly one cell: L2 sensitivity 1.
    """
    domain = list(domain)
    is_na = [bool(pd.isna(v)) if np.ndim(v) == 0 else False for v in domain]
    if sum(is_na) > 1:
        raise MetadataError("a category domain may list the missing value at most once")
    present = [v for v, na in zip(domain, is_na, strict=True) if not na]
    positions = np.array([i for i, na in enumerate(is_na) if not na], dtype=np.int64)
    index = pd.Index(present, dtype=object)
    if not index.is_unique:
        raise MetadataError(f"category domain has duplicate values: {domain!r}")
    s = _series(values)
    codes = index.get_indexer(s.astype(object)) if len(index) else np.full(len(s), -1)
    cells = np.full(len(s), len(domain), dtype=np.int64)
    found = codes >= 0
    cells[found] = positions[codes[found]]
    if any(is_na):
        cells[s.isna().to_numpy()] = is_na.index(True)
    return np.bincount(cells, minlength=len(domain) + 1).astype(np.float64)


def _numeric(values: Any, name: str) -> np.ndarray:
    s = _series(values)
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        raise DataError(f"mechanism {name!r}: convert datetimes to numbers before binning")
    try:
        return s.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"mechanism {name!r}: values must be numeric") from None


def _check_grid(lower: float, upper: float, bins: int, name: str) -> tuple[float, float, int]:
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise MetadataError(
            f"mechanism {name!r}: public bounds must be finite with lower < upper, "
            f"got ({lower!r}, {upper!r})"
        )
    if int(bins) != bins or bins < 1:
        raise PrivacyError(f"mechanism {name!r}: bins must be a positive integer, got {bins!r}")
    return lo, hi, int(bins)


def grid_counts(values: Any, lower: float, upper: float, bins: int) -> np.ndarray:
    """Exact counts on ``bins`` equal-width cells of the public ``[lower, upper]`` plus one
    last cell for missing values; values are clipped to the bounds first (sensitivity 1)."""
    lo, hi, bins = _check_grid(lower, upper, bins, "grid")
    x = _numeric(values, "grid")
    na = np.isnan(x)
    counts, _ = np.histogram(np.clip(x[~na], lo, hi), bins=bins, range=(lo, hi))
    return np.append(counts, na.sum()).astype(np.float64)


def domain_counts(values: Any) -> pd.Series:
    """Exact count of each observed (non-missing) value: what ``dp_category_domain`` noises.
    Counts of consecutive parts of a table add up (``a.add(b, fill_value=0)``)."""
    return _series(values).dropna().value_counts(sort=False)


def _exact_counts(values: Any, counts: Any, cells: int, name: str) -> np.ndarray:
    """Exact counts given to a release instead of values: the right number of non-negative
    whole cells (the sum of the same counts over the parts of a table)."""
    if values is not None:
        raise PrivacyError(f"mechanism {name!r}: give values or counts, not both")
    exact = np.asarray(counts, dtype=np.float64)
    if (
        exact.shape != (cells,)
        or not np.all(np.isfinite(exact))
        or np.any(exact < 0)
        or np.any(exact != np.round(exact))
    ):
        raise PrivacyError(f"mechanism {name!r}: counts must be {cells} non-negative integers")
    return exact


# ---------------------------------------------------------------------- releases
@dataclass(frozen=True)
class HistogramRelease:
    """A noisy one-way histogram; the only source of category probabilities under DP.

    ``counts`` are the noisy counts of ``categories`` (0 for categories merged into
    ``__other__``), ``other_count`` the noisy count of the ``__other__`` slot, all >= 0.
    """

    name: str
    categories: tuple
    counts: np.ndarray
    other_count: float
    kept: np.ndarray
    sigma: float
    threshold: float

    @property
    def merged(self) -> list:
        """Categories whose noisy count fell below the threshold."""
        return [c for c, k in zip(self.categories, self.kept, strict=True) if not k]

    def frequencies(self) -> np.ndarray:
        """Normalised frequencies over ``categories + [__other__]`` (uniform if all zero)."""
        cells = np.append(self.counts, self.other_count)
        total = cells.sum()
        return cells / total if total > 0 else np.full(len(cells), 1.0 / len(cells))

    def probabilities(self) -> np.ndarray:
        """Probabilities over ``categories`` only: the ``__other__`` mass is spread uniformly
        over the merged categories (MST's ``reverse_data``), or dropped if none was merged."""
        p = self.counts.astype(np.float64).copy()
        merged = ~self.kept
        if merged.any():
            p[merged] = self.other_count / merged.sum()
        total = p.sum()
        if len(p) == 0:
            return p
        return p / total if total > 0 else np.full(len(p), 1.0 / len(p))


@dataclass(frozen=True)
class GridRelease:
    """A noisy histogram on an equal-width grid of public bounds (counts >= 0)."""

    name: str
    edges: np.ndarray
    counts: np.ndarray
    null_count: float
    sigma: float

    def quantiles(self, qs: Sequence[float] | float) -> np.ndarray:
        return quantiles_from_histogram(self, qs)

    def centers(self) -> np.ndarray:
        return (self.edges[:-1] + self.edges[1:]) / 2


def _noisy(counts: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return counts + rng.normal(0.0, sigma, size=counts.shape)


def dp_histogram(
    values: Any,
    domain: Sequence,
    sigma: float,
    threshold: float | None = None,
    *,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    name: str,
    counts: Any = None,
) -> HistogramRelease:
    """Gaussian one-way histogram over a PUBLIC category domain.

    One row changes one cell by one (L2 sensitivity 1; k columns released this way compose to
    sensitivity sqrt(k) in the ledger). Categories whose noisy count is below ``threshold``
    (default 3 sigma) are merged into ``__other__``, so a rare category is not modelled on its
    own; thresholding is post-processing of the noisy counts and costs nothing.

    ``counts`` (instead of ``values``): the exact ``category_counts`` already summed, e.g.
    over the batches of a streamed table; the release is the same function of them.
    """
    sigma = _check_sigma(sigma, name)
    rng = _check_rng(rng, name)
    thr = DEFAULT_THRESHOLD_SIGMAS * sigma if threshold is None else float(threshold)
    if not math.isfinite(thr) or thr < 0:
        raise PrivacyError(f"mechanism {name!r}: threshold must be >= 0, got {threshold!r}")
    exact = (
        category_counts(values, domain)
        if counts is None
        else _exact_counts(values, counts, len(domain) + 1, name)
    )
    k = len(exact) - 1
    ledger.add_gaussian(
        name,
        sigma,
        1.0,
        what=f"Gaussian one-way histogram over a public domain of {k} values (+{OTHER})",
    )
    noisy = _noisy(exact, sigma, rng)
    kept = noisy[:k] >= thr
    other = max(float(noisy[k] + noisy[:k][~kept].sum()), 0.0)
    counts = np.where(kept, np.maximum(noisy[:k], 0.0), 0.0)
    return HistogramRelease(name, tuple(domain), counts, other, kept, sigma, thr)


def threshold_for_delta(sigma: float, delta: float) -> float:
    """Threshold tau with P[1 + N(0, sigma^2) >= tau] = delta (a count-1 value survives)."""
    if not 0 < delta < 1:
        raise PrivacyError(f"threshold delta must be in (0, 1), got {delta!r}")
    return 1.0 + float(sigma) * float(-ndtri(delta))  # -ndtri(d) = isf(d), exact in the tail


def threshold_delta(sigma: float, threshold: float) -> float:
    """The extra delta of a threshold release: P[1 + N(0, sigma^2) >= threshold]."""
    return float(ndtr(-(float(threshold) - 1.0) / float(sigma)))


def _sort_key(value: Any) -> tuple:
    return (type(value).__name__, value)


def dp_category_domain(
    values: Any,
    sigma: float,
    threshold: float | None = None,
    *,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    name: str,
    delta: float | None = None,
    counts: Any = None,
) -> HistogramRelease:
    """Derive a category domain from private data with DP (Gaussian thresholding).

    Noisy counts of the OBSERVED distinct values; a value is released only if its noisy count
    reaches ``threshold``. This is not a Gaussian over a public domain: adding a row with a new
    value creates a key that is absent otherwise. Proof sketch (add/remove, one value per row):
    if the value already occurs, the two outputs differ by a sensitivity-1 Gaussian count;
    if it is new, the outputs are identical unless its count 1 + N(0, sigma^2) reaches the
    threshold, which has probability ``delta0 = P[N(0, 1) >= (threshold - 1) / sigma]``. So the
    release is (eps, delta_G(eps) + delta0)-DP; the ledger records the Gaussian part and
    charges ``delta0`` as extra delta. Give ``delta`` (the delta0 you accept, the threshold is
    then ``1 + sigma * z_{1-delta0}``) or an explicit ``threshold`` (its delta0 is charged).
    Missing values are not part of a domain (nullability is declared) and are ignored.
    Returned ``counts`` are the noisy counts of the released values (post-processing may use
    them as frequencies; there is no ``__other__`` count).

    ``counts`` (instead of ``values``): the exact count of each observed value, a
    ``pd.Series`` indexed by value (``domain_counts``, summed over a streamed table's batches).
    """
    sigma = _check_sigma(sigma, name)
    rng = _check_rng(rng, name)
    if threshold is None:
        if delta is None:
            raise PrivacyError(
                f"mechanism {name!r}: give the extra delta you accept (delta=) or a threshold"
            )
        thr = threshold_for_delta(sigma, delta)
    else:
        thr = float(threshold)
        if not math.isfinite(thr) or thr <= 1:
            raise PrivacyError(f"mechanism {name!r}: threshold must exceed 1, got {threshold!r}")
    delta0 = threshold_delta(sigma, thr)
    if delta is not None and delta0 > float(delta) * (1 + 1e-9):
        raise PrivacyError(
            f"mechanism {name!r}: threshold {thr:g} costs delta {delta0:.3g} > allowed {delta:g}"
        )
    if counts is None:
        observed = domain_counts(values)
    else:
        if values is not None or not isinstance(counts, pd.Series):
            raise PrivacyError(f"mechanism {name!r}: give values or a Series of counts, not both")
        observed = counts[counts > 0]
    ledger.add_gaussian(
        name,
        sigma,
        1.0,
        extra_delta=delta0,
        what=(
            "DP category-domain derivation (Gaussian thresholding over observed values, "
            f"threshold {thr:.4g}, extra delta {delta0:.3g})"
        ),
    )
    noisy = _noisy(observed.to_numpy(dtype=np.float64), sigma, rng)
    keep = noisy >= thr
    pairs = sorted(
        zip(observed.index[keep].tolist(), noisy[keep].tolist(), strict=True),
        key=lambda p: _sort_key(p[0]),
    )
    cats = tuple(v for v, _ in pairs)
    counts = np.array([c for _, c in pairs], dtype=np.float64)
    return HistogramRelease(name, cats, counts, 0.0, np.ones(len(cats), dtype=bool), sigma, thr)


def dp_grid_histogram(
    values: Any,
    lower: float,
    upper: float,
    bins: int,
    sigma: float,
    *,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    name: str,
    counts: Any = None,
) -> GridRelease:
    """Noisy counts on an equal-width grid of PUBLIC bounds (values clipped to them first).

    One extra cell counts missing values, so the null share comes for free; every row is in
    exactly one cell (L2 sensitivity 1). Modes and quantiles for continuous columns are then
    read from this release instead of fitting a mixture on raw values.

    ``counts`` (instead of ``values``): the exact ``grid_counts`` already summed, e.g. over
    the batches of a streamed table; the release is the same function of them.
    """
    sigma = _check_sigma(sigma, name)
    rng = _check_rng(rng, name)
    lo, hi, bins = _check_grid(lower, upper, bins, name)
    exact = (
        grid_counts(values, lo, hi, bins)
        if counts is None
        else _exact_counts(values, counts, bins + 1, name)
    )
    ledger.add_gaussian(
        name,
        sigma,
        1.0,
        what=f"Gaussian histogram on {bins} equal-width bins of public bounds [{lo:g}, {hi:g}]",
    )
    noisy = np.maximum(_noisy(exact, sigma, rng), 0.0)
    edges = np.linspace(lo, hi, bins + 1)
    return GridRelease(name, edges, noisy[:bins], float(noisy[bins]), sigma)


def quantiles_from_histogram(release: GridRelease, qs: Sequence[float] | float) -> np.ndarray:
    """Quantiles of a noisy grid histogram by linear interpolation of its CDF (post-processing;
    uniform over the bounds if every noisy count is zero)."""
    q = np.atleast_1d(np.asarray(qs, dtype=np.float64))
    if np.any((q < 0) | (q > 1)) or np.any(np.isnan(q)):
        raise PrivacyError(f"quantile levels must be in [0, 1], got {qs!r}")
    counts = np.asarray(release.counts, dtype=np.float64)
    if counts.sum() <= 0:
        counts = np.ones_like(counts)
    cdf = np.concatenate([[0.0], np.cumsum(counts) / counts.sum()])
    edges = release.edges
    idx = np.clip(np.searchsorted(cdf, q, side="left"), 1, len(counts))
    lo_c, hi_c = cdf[idx - 1], cdf[idx]
    span = hi_c - lo_c
    frac = np.divide(q - lo_c, span, out=np.zeros_like(q), where=span > 0)
    return edges[idx - 1] + np.clip(frac, 0.0, 1.0) * (edges[idx] - edges[idx - 1])


def dp_quantiles(
    values: Any,
    lower: float,
    upper: float,
    qs: Sequence[float] | float,
    sigma: float,
    *,
    rng: np.random.Generator,
    ledger: PrivacyLedger,
    name: str,
    bins: int = 64,
) -> np.ndarray:
    """DP quantiles: one ``dp_grid_histogram`` release, then its CDF (post-processing)."""
    release = dp_grid_histogram(
        values, lower, upper, bins, sigma, rng=rng, ledger=ledger, name=name
    )
    return quantiles_from_histogram(release, qs)


def noisy_count(
    n: int, sigma: float, *, rng: np.random.Generator, ledger: PrivacyLedger, name: str = "n"
) -> int:
    """Noisy row count (sensitivity 1), rounded and floored at 1 (post-processing)."""
    sigma = _check_sigma(sigma, name)
    rng = _check_rng(rng, name)
    if int(n) != n or n < 0:
        raise DataError(f"mechanism {name!r}: n must be a non-negative integer, got {n!r}")
    ledger.add_gaussian(name, sigma, 1.0, what="Gaussian noisy row count")
    return max(1, round(float(n) + float(rng.normal(0.0, sigma))))
