"""Fidelity: per-column shapes and per-pair trends, defined to agree with SDMetrics' QualityReport.

Column shapes: KS complement (1 - two-sample KS statistic) for continuous/integer/datetime columns
and total-variation complement for categorical/boolean columns, both on non-missing values.
Column pair trends: Pearson correlation similarity ``1 - |r_real - r_syn| / 2`` for two numeric
columns (pairwise-complete rows), contingency similarity ``1 - TVD`` of the joint table otherwise
(missing is a level). A numeric column paired with a categorical one is cut into 10 equal-width
bins of the *real* data (as SDMetrics' ``np.histogram_bin_edges``), with extra levels for values
below/above the real range and for missing values. SDMetrics cuts the synthetic column with its
own edges instead, which hides range shifts; the two agree when the synthetic data stay in range.

The headline pair score averages the pairs that show a trend in the real data (|r| > 0.5, or
Cramér's V > 0.3), as SDMetrics' QualityReport has done since its association thresholds were
introduced; pairs of independent columns would otherwise dilute it towards 1. The plain mean over
every pair is reported as ``column_pair_trends_all``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp
from scipy.stats.contingency import association

from tabsynth.metrics._data import Encoded

N_BINS = 10
#: a pair "has a trend" in the real data above these (SDMetrics' QualityReport defaults)
CORRELATION_THRESHOLD = 0.5
ASSOCIATION_THRESHOLD = 0.3
_DENSE_TABLE_LIMIT = 2_000_000


def column_scores(enc: Encoded, real: str = "real", synthetic: str = "synthetic") -> pd.DataFrame:
    """One row per column: shape score, missing-rate similarity, coverage and adherence."""
    r, s = enc.frames[real], enc.frames[synthetic]
    rows = []
    for j, col in enumerate(enc.num_cols):
        rv, sv = r.num[:, j], s.num[:, j]
        rn, sn = rv[~np.isnan(rv)], sv[~np.isnan(sv)]
        row = _base_row(col, enc.kinds[col], "KSComplement", np.isnan(rv), np.isnan(sv))
        if rn.size == 0 or sn.size == 0:
            row["note"] = "no non-missing values in " + ("real" if rn.size == 0 else "synthetic")
        else:
            row["shape"] = 1.0 - float(ks_2samp(rn, sn, method="asymp").statistic)
            lo, hi = float(rn.min()), float(rn.max())
            if hi > lo:
                gap = max(0.0, float(sn.min()) - lo) + max(0.0, hi - float(sn.max()))
                row["coverage"] = float(np.clip(1.0 - gap / (hi - lo), 0.0, 1.0))
            else:
                row["coverage"] = float(np.any(sn == lo))
            row["adherence"] = float(np.mean((sn >= lo) & (sn <= hi)))
        rows.append(row)
    for j, col in enumerate(enc.cat_cols):
        k = int(enc.n_levels[j])
        rc, sc = r.cat[:, j], s.cat[:, j]
        row = _base_row(col, enc.kinds[col], "TVComplement", rc == k, sc == k)
        pr = np.bincount(rc[rc < k], minlength=k).astype(float)
        ps = np.bincount(sc[sc < k], minlength=k).astype(float)
        if pr.sum() == 0 or ps.sum() == 0:
            row["note"] = "no non-missing values in " + ("real" if pr.sum() == 0 else "synthetic")
        else:
            pr, ps = pr / pr.sum(), ps / ps.sum()
            row["shape"] = 1.0 - 0.5 * float(np.abs(pr - ps).sum())
            seen = pr > 0
            row["coverage"] = float(np.mean(ps[seen] > 0))
            row["adherence"] = float(ps[seen].sum())
        rows.append(row)
    order = {c: i for i, c in enumerate(enc.columns)}
    rows.sort(key=lambda d: order[d["column"]])
    return pd.DataFrame(
        rows,
        columns=[
            "column",
            "kind",
            "metric",
            "shape",
            "missing_similarity",
            "coverage",
            "adherence",
            "note",
        ],
    )


def _base_row(col: Any, kind: str, metric: str, null_r: np.ndarray, null_s: np.ndarray) -> dict:
    return {
        "column": col,
        "kind": kind,
        "metric": metric,
        "shape": np.nan,
        "missing_similarity": 1.0 - abs(float(null_r.mean()) - float(null_s.mean())),
        "coverage": np.nan,
        "adherence": np.nan,
        "note": None,
    }


def _bin_codes(real_col: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Codes 0..N_BINS-1 inside the real range, N_BINS below, N_BINS+1 above, N_BINS+2 missing."""
    finite = real_col[~np.isnan(real_col)]
    codes = np.full(other.shape, N_BINS + 2, dtype=np.int64)
    present = ~np.isnan(other)
    if finite.size == 0:
        codes[present] = N_BINS + 1
        return codes
    edges = np.histogram_bin_edges(finite, bins=N_BINS)
    x = other[present]
    c = np.searchsorted(edges[1:-1], x, side="right")
    c[x < edges[0]] = N_BINS
    c[x > edges[-1]] = N_BINS + 1
    codes[present] = c
    return codes


def _contingency(ra: np.ndarray, rb: np.ndarray, sa: np.ndarray, sb: np.ndarray, nb: int):
    """(1 - total variation distance between the joint tables, Cramér's V of the real table)."""
    kr, ks = ra * nb + rb, sa * nb + sb
    size = int(max(kr.max(initial=0), ks.max(initial=0))) + 1
    if size <= _DENSE_TABLE_LIMIT:
        cr = np.bincount(kr, minlength=size)
        cs = np.bincount(ks, minlength=size)
        keys = np.arange(size)
    else:
        keys, inv = np.unique(np.concatenate([kr, ks]), return_inverse=True)
        cr = np.bincount(inv[: kr.size], minlength=keys.size)
        cs = np.bincount(inv[kr.size :], minlength=keys.size)
    score = 1.0 - 0.5 * float(np.abs(cr / kr.size - cs / ks.size).sum())
    # real two-way table over the levels that occur, for the association strength
    seen = cr > 0
    rows, row_idx = np.unique(keys[seen] // nb, return_inverse=True)
    cols, col_idx = np.unique(keys[seen] % nb, return_inverse=True)
    if rows.size < 2 or cols.size < 2:
        return score, float("nan")
    table = np.zeros((rows.size, cols.size), dtype=np.int64)
    table[row_idx, col_idx] = cr[seen]
    return score, float(association(table, method="cramer"))


def _correlations(x: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix on pairwise-complete rows (NaN where undefined)."""
    if x.shape[1] == 0:
        return np.empty((0, 0))
    if not np.isnan(x).any():
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            c = np.corrcoef(x, rowvar=False)
        return np.atleast_2d(c)
    return pd.DataFrame(x).corr(method="pearson", min_periods=3).to_numpy()


def pair_scores(
    enc: Encoded,
    rng: np.random.Generator,
    max_pairs: int | None,
    real: str = "real",
    synthetic: str = "synthetic",
) -> tuple[pd.DataFrame, int]:
    """One row per evaluated column pair; returns (details, total number of pairs)."""
    cols = enc.columns
    n = len(cols)
    ii, jj = np.triu_indices(n, k=1)
    total = int(ii.size)
    if max_pairs is not None and total > max_pairs:
        keep = np.sort(rng.choice(total, size=max_pairs, replace=False))
        ii, jj = ii[keep], jj[keep]

    r, s = enc.frames[real], enc.frames[synthetic]
    corr_r, corr_s = _correlations(r.num), _correlations(s.num)
    binned: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def codes(col: Any) -> tuple[np.ndarray, np.ndarray, int]:
        kind, j = enc.position(col)
        if kind == "cat":
            return r.cat[:, j], s.cat[:, j], int(enc.n_levels[j]) + 1
        if j not in binned:
            binned[j] = (_bin_codes(r.num[:, j], r.num[:, j]), _bin_codes(r.num[:, j], s.num[:, j]))
        return binned[j][0], binned[j][1], N_BINS + 3

    rows = []
    for a, b in zip(ii.tolist(), jj.tolist(), strict=True):
        ca, cb = cols[a], cols[b]
        (ka, ja), (kb, jb) = enc.position(ca), enc.position(cb)
        row = {
            "column_1": ca,
            "column_2": cb,
            "metric": "ContingencySimilarity",
            "score": np.nan,
            "real_correlation": np.nan,
            "synthetic_correlation": np.nan,
            "real_association": np.nan,
            "has_trend": False,
            "note": None,
        }
        if ka == "num" and kb == "num":
            row["metric"] = "CorrelationSimilarity"
            rr, rs = float(corr_r[ja, jb]), float(corr_s[ja, jb])
            row["real_correlation"], row["synthetic_correlation"] = rr, rs
            row["real_association"] = abs(rr)
            row["has_trend"] = bool(abs(rr) > CORRELATION_THRESHOLD)
            if np.isnan(rr):
                row["note"] = "real correlation undefined (constant column or < 3 complete rows)"
            else:
                if np.isnan(rs):
                    row["note"] = "synthetic correlation undefined; counted as 0"
                    rs = 0.0
                row["score"] = 1.0 - abs(rr - rs) / 2.0
        else:
            ra, sa, _ = codes(ca)
            rb, sb, nb = codes(cb)
            row["score"], v = _contingency(ra, rb, sa, sb, nb)
            row["real_association"] = v
            row["has_trend"] = bool(v > ASSOCIATION_THRESHOLD)
        rows.append(row)
    return pd.DataFrame(
        rows,
        columns=[
            "column_1",
            "column_2",
            "metric",
            "score",
            "real_correlation",
            "synthetic_correlation",
            "real_association",
            "has_trend",
            "note",
        ],
    ), total


def association_matrix(
    enc: Encoded, columns: list, real: str = "real", synthetic: str = "synthetic"
) -> tuple[np.ndarray, np.ndarray]:
    """Association matrices of the real and the synthetic table over ``columns`` (for plots).

    Pearson r (signed, pairwise-complete rows) for two numeric columns, Cramér's V of the joint
    table otherwise, with numeric columns cut on the *real* bin edges and missing as a level,
    exactly as in :func:`pair_scores`. NaN where undefined (a constant column); 1 on the diagonal.
    """
    n = len(columns)
    out = {name: np.eye(n) for name in (real, synthetic)}
    corr = {name: _correlations(enc.frames[name].num) for name in (real, synthetic)}
    binned: dict[tuple[int, str], np.ndarray] = {}

    def codes(col: Any, name: str) -> tuple[np.ndarray, int]:
        kind, j = enc.position(col)
        frame = enc.frames[name]
        if kind == "cat":
            return frame.cat[:, j], int(enc.n_levels[j]) + 1
        key = (j, name)
        if key not in binned:
            binned[key] = _bin_codes(enc.frames[real].num[:, j], frame.num[:, j])
        return binned[key], N_BINS + 3

    for a in range(n):
        for b in range(a + 1, n):
            (ka, ja), (kb, jb) = enc.position(columns[a]), enc.position(columns[b])
            for name in (real, synthetic):
                if ka == "num" and kb == "num":
                    v = float(corr[name][ja, jb])
                else:
                    (xa, na), (xb, nb) = codes(columns[a], name), codes(columns[b], name)
                    v = _cramers_v(xa, xb, na, nb)
                out[name][a, b] = out[name][b, a] = v
    return out[real], out[synthetic]


def _cramers_v(a: np.ndarray, b: np.ndarray, na: int, nb: int) -> float:
    """Cramér's V of two code vectors (levels that never occur are dropped); NaN if degenerate."""
    counts = np.bincount(a * nb + b, minlength=na * nb).reshape(na, nb)
    counts = counts[counts.sum(axis=1) > 0][:, counts.sum(axis=0) > 0]
    if counts.shape[0] < 2 or counts.shape[1] < 2:
        return float("nan")
    return float(association(counts, method="cramer"))


def fidelity(
    enc: Encoded, rng: np.random.Generator, max_pairs: int | None
) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Aggregate scores plus the per-column and per-pair detail tables."""
    cols = column_scores(enc)
    pairs, total = pair_scores(enc, rng, max_pairs)
    num = cols["kind"].isin(["continuous", "integer", "datetime"])

    def mean(values: pd.Series) -> float:
        v = values.to_numpy(dtype=float)
        return float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")

    trend = pairs["has_trend"].to_numpy(dtype=bool)
    scores = {
        "column_shapes": mean(cols["shape"]),
        # like SDMetrics' QualityReport: average over pairs that show a trend in the real data
        "column_pair_trends": mean(pairs.loc[trend, "score"] if trend.any() else pairs["score"]),
        "column_pair_trends_all": mean(pairs["score"]),
        "missing_similarity": mean(cols["missing_similarity"]),
        "range_coverage": mean(cols.loc[num, "coverage"]),
        "boundary_adherence": mean(cols.loc[num, "adherence"]),
        "category_coverage": mean(cols.loc[~num, "coverage"]),
        "category_adherence": mean(cols.loc[~num, "adherence"]),
        "n_pairs_with_trend": int(trend.sum()),
        "n_pairs_evaluated": len(pairs),
        "n_pairs_total": total,
    }
    return scores, cols, pairs
