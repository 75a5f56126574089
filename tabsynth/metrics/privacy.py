"""Privacy-risk diagnostics from distances between records.

These are descriptive: they flag copying and overfitting, they are not evidence of differential
privacy. Records are compared in one mixed-type space: numerics centred on the real median and
divided by a robust scale (IQR, else standard deviation, else 1) of the real training table, with
missing values at 0 plus a missing indicator; categoricals one-hot with weight 1/sqrt(2) so that a
mismatch adds exactly 1 to the squared distance (the 49 commonest levels of a column keep their
own slot, rarer ones share one). Nearest neighbours are found by blocked matrix products, so
memory stays bounded whatever the table sizes.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from tabsynth.metrics._data import Encoded, EncodedFrame

MAX_LEVELS = 50
_BLOCK_BYTES = 128 * 2**20


class _Space:
    """Maps encoded frames into the distance space fitted on the real training frame."""

    def __init__(self, enc: Encoded, train: EncodedFrame, frames: list[EncodedFrame]) -> None:
        x = train.num
        p = x.shape[1]
        center, scale, std = np.zeros(p), np.zeros(p), np.zeros(p)
        if p:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # all-missing columns
                center = np.nanmedian(x, axis=0)
                q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
                scale, std = q75 - q25, np.nanstd(x, axis=0)
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, std)
        self.scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        self.center = np.where(np.isfinite(center), center, 0.0)
        nulls = np.zeros(p, dtype=bool)
        for f in frames:
            nulls |= np.isnan(f.num).any(axis=0)
        self.null_cols = np.flatnonzero(nulls)
        self.n_levels = enc.n_levels
        self.slots = np.minimum(enc.n_levels, MAX_LEVELS - 1) + 1  # kept levels + shared "other"
        self.has_null = np.zeros(len(enc.n_levels), dtype=bool)
        for f in frames:
            self.has_null |= (f.cat == enc.n_levels).any(axis=0)
        self.width = p + self.null_cols.size + int((self.slots + self.has_null).sum())

    def transform(self, f: EncodedFrame, rows: np.ndarray | None = None) -> np.ndarray:
        num = f.num if rows is None else f.num[rows]
        cat = f.cat if rows is None else f.cat[rows]
        out = np.zeros((num.shape[0], self.width), dtype=np.float32)
        p = num.shape[1]
        z = (num - self.center) / self.scale
        nan = np.isnan(z)
        out[:, :p] = np.where(nan, 0.0, z)
        out[:, p : p + self.null_cols.size] = nan[:, self.null_cols]
        start = p + self.null_cols.size
        w = np.float32(1.0 / np.sqrt(2.0))
        rows_idx = np.arange(num.shape[0])
        for j in range(cat.shape[1]):
            k, slots = int(self.n_levels[j]), int(self.slots[j])
            c = cat[:, j]
            slot = np.minimum(c, slots - 1)
            if self.has_null[j]:
                slot = np.where(c == k, slots, slot)
            out[rows_idx, start + slot] = w
            start += slots + int(self.has_null[j])
        return out


def nearest(query: np.ndarray, ref: np.ndarray, k: int = 1) -> np.ndarray:
    """Euclidean distances from each query row to its ``k`` nearest reference rows, ascending.

    Candidates come from blocked float32 matrix products (memory O(block x n_ref)); the chosen
    neighbours' distances are then recomputed exactly so that copies give exactly 0.
    """
    import torch

    k = min(k, ref.shape[0])
    out = np.empty((query.shape[0], k))
    if query.shape[0] == 0:
        return out
    r = torch.from_numpy(np.ascontiguousarray(ref, dtype=np.float32))
    r_sq = (r * r).sum(dim=1)
    block = max(1, min(query.shape[0], _BLOCK_BYTES // (4 * max(1, ref.shape[0]))))
    for start in range(0, query.shape[0], block):
        q = torch.from_numpy(np.ascontiguousarray(query[start : start + block], dtype=np.float32))
        d2 = torch.mm(q, r.T).mul_(-2.0).add_(r_sq)  # squared distance minus |q|^2 (row constant)
        if k == 1:
            idx = torch.argmin(d2, dim=1, keepdim=True).numpy()
        else:
            idx = torch.topk(d2, k, dim=1, largest=False).indices.numpy()
        diff = query[start : start + block, None, :].astype(np.float64) - ref[idx].astype(
            np.float64
        )
        out[start : start + block] = np.sqrt((diff * diff).sum(axis=2))
    out.sort(axis=1)
    return out


def _row_hashes(f: EncodedFrame) -> np.ndarray:
    """One uint64 per row over the encoded values (missing numerics made identical)."""
    num = np.where(np.isnan(f.num), np.inf, f.num + 0.0)  # +0.0 folds -0.0 into 0.0
    frame = pd.DataFrame(np.hstack([num.view(np.int64), f.cat]))
    return pd.util.hash_pandas_object(frame, index=False).to_numpy()


def _sample(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return np.arange(n) if size >= n else np.sort(rng.choice(n, size=size, replace=False))


def _nndr(d: np.ndarray) -> np.ndarray:
    """d1 / d2 per row, with 0/0 counted as 1 (equidistant)."""
    if d.shape[1] < 2:
        return np.full(d.shape[0], np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = d[:, 0] / d[:, 1]
    return np.where(d[:, 1] > 0, ratio, 1.0)


def _histogram(samples: dict[str, np.ndarray], bins: int = 40) -> dict:
    """Shared-bin densities for the report plots (range: 0 to the 99th percentile).

    Distances beyond the range are counted in ``beyond`` (share per sample), not clipped into
    the last bin, which would draw a spike that is in neither distribution.
    """
    pooled = np.concatenate([v for v in samples.values() if v.size])
    hi = float(np.quantile(pooled, 0.99)) if pooled.size else 1.0
    edges = np.linspace(0.0, hi if hi > 0 else 1.0, bins + 1)
    out: dict = {"edges": edges.tolist(), "beyond": {}}
    for name, v in samples.items():
        counts = np.histogram(v, bins=edges)[0]
        out[name] = (counts / max(1, v.size)).tolist()
        out["beyond"][name] = float(np.mean(v > edges[-1])) if v.size else 0.0
    return out


def privacy(
    enc: Encoded, rng: np.random.Generator, max_queries: int | None
) -> tuple[dict, dict, list[str]]:
    """Distance-based risk diagnostics; returns (scores, histogram data, notes).

    Query sets (the rows whose nearest neighbours are searched) are sampled to ``max_queries``
    rows; reference sets are always complete, so copies cannot hide in an unsampled part.
    """
    train, syn = enc.frames["real"], enc.frames["synthetic"]
    holdout = enc.frames.get("holdout")
    frames = [train, syn] + ([holdout] if holdout is not None else [])
    space = _Space(enc, train, frames)
    cap = max_queries if max_queries is not None else max(f.n for f in frames)

    x_train = space.transform(train)
    syn_q = _sample(rng, syn.n, cap)
    x_syn = space.transform(syn, syn_q)
    d_syn = nearest(x_syn, x_train, k=2)

    train_hash = _row_hashes(train)
    out = {
        "n_synthetic_queries": int(syn_q.size),
        "dcr_synthetic_median": float(np.median(d_syn[:, 0])),
        "dcr_synthetic_p05": float(np.quantile(d_syn[:, 0], 0.05)),
        "dcr_synthetic_mean": float(np.mean(d_syn[:, 0])),
        "nndr_synthetic_median": float(np.nanmedian(_nndr(d_syn))),
        "exact_copy_rate": float(np.isin(_row_hashes(syn), train_hash).mean()),
    }
    hist = {"synthetic": d_syn[:, 0]}
    if holdout is None:
        return out, {"dcr": _histogram(hist)}, []

    holdout_hash = _row_hashes(holdout)
    ho_q = _sample(rng, holdout.n, cap)
    d_ho = nearest(space.transform(holdout, ho_q), x_train, k=2)
    hist["holdout"] = d_ho[:, 0]
    out.update(
        {
            "n_holdout_queries": int(ho_q.size),
            "dcr_holdout_median": float(np.median(d_ho[:, 0])),
            "dcr_holdout_p05": float(np.quantile(d_ho[:, 0], 0.05)),
            "nndr_holdout_median": float(np.nanmedian(_nndr(d_ho))),
            "holdout_exact_copy_rate": float(np.isin(holdout_hash, train_hash).mean()),
        }
    )
    med_ho = out["dcr_holdout_median"]
    out["dcr_median_ratio"] = out["dcr_synthetic_median"] / med_ho if med_ho > 0 else float("nan")

    # closer to train than to holdout: for a synthetic sample from the same population the raw
    # share is n_train / (n_train + n_holdout), counting distinct rows (exchangeability of the
    # nearest neighbour), so the odds are rescaled to make 0.5 the ideal whatever the sizes;
    # copies still give 1
    to_ho = nearest(x_syn, space.transform(holdout))[:, 0]
    raw = float(np.mean(d_syn[:, 0] < to_ho) + 0.5 * np.mean(d_syn[:, 0] == to_ho))
    n_tr, n_ho = float(np.unique(train_hash).size), float(np.unique(holdout_hash).size)
    out["dcr_share_closer_to_train_raw"] = raw
    out["dcr_share_expected_raw"] = n_tr / (n_tr + n_ho)
    out["dcr_share_closer_to_train"] = raw * n_ho / (raw * n_ho + (1.0 - raw) * n_tr)
    notes: list[str] = []

    # membership inference: members (train) vs non-members (holdout) by distance to synthetic
    q = min(train.n, holdout.n, cap)
    x_syn_all = space.transform(syn)
    d_mem = nearest(x_train[_sample(rng, train.n, q)], x_syn_all)[:, 0]
    d_non = nearest(space.transform(holdout, _sample(rng, holdout.n, q)), x_syn_all)[:, 0]
    labels = np.repeat([1, 0], q)
    out["membership_auc"] = float(roc_auc_score(labels, -np.concatenate([d_mem, d_non])))
    out["n_membership_queries_per_side"] = int(q)
    histograms = {
        "dcr": _histogram(hist),
        "membership": _histogram({"train": d_mem, "holdout": d_non}),
    }
    return out, histograms, notes
