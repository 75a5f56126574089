"""Continuous, integer and datetime columns: mode-specific normalisation and its alternatives.

Every numeric column is split into *modes*. Frequent exact values (``spikes``, e.g. the 91 % of
zeros in a capital-gain column or 40 in hours-per-week) are modes of their own and come back
exactly. The remaining values are described by one of three encoders:

- ``gmm`` (default): a Gaussian mixture of at most ``max_modes`` components with a sparse prior
  that prunes weak ones. It is fit by EM on the *distinct values with their counts* of a bounded
  random subsample, which is exact for the subsample and far cheaper than a per-row fit; mode
  assignment samples from the posterior, vectorised over all rows.
- ``quantile``: the empirical CDF (quantiles of the subsample), mapped to [-1, 1].
- ``minmax``: a linear map of [lower, upper] to [-1, 1].

The output is a tanh scalar (position inside the mode), a softmax over modes when there is more
than one, and a 2-way softmax null indicator for nullable columns.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from tabsynth.errors import DataError
from tabsynth.metadata import ColumnSpec, datetime_to_int
from tabsynth.metadata.dtypes import DECIMAL, is_text_dtype
from tabsynth.metadata.metadata import object_datetimes
from tabsynth.transform.base import SOFTMAX, TANH, ColumnEncoder, argmax_rows
from tabsynth.transform.restore import restore_datetime, restore_numeric

_LOG_2PI = float(np.log(2 * np.pi))


#: largest magnitude a numeric column may hold: its squares stay finite in float64
MAX_MAGNITUDE = 1e150


def fit_mixture(
    values: np.ndarray,
    counts: np.ndarray,
    max_modes: int = 10,
    n_iter: int = 150,
    tol: float = 1e-6,
    min_weight: float = 0.005,
    max_points: int = 2048,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weighted EM for a 1-D Gaussian mixture; returns (means, stds, weights) of kept modes.

    ``values`` must be sorted and distinct. Components are seeded at weighted quantiles; a
    component whose weight falls below ``min_weight`` is pruned, as a Dirichlet-process prior
    would, so simple columns end up with few modes. More than ``max_points`` distinct values are
    first merged into ``max_points`` runs of equal mass (their weighted means), which changes the
    fit by far less than the subsampling already does and bounds the cost per iteration.
    """
    w = counts.astype(np.float64) / counts.sum()
    x = values.astype(np.float64)
    if len(x) > max_points:
        group = np.minimum((np.cumsum(w) - w / 2) * max_points, max_points - 1).astype(np.int64)
        gw = np.bincount(group, weights=w, minlength=max_points)
        gx = np.bincount(group, weights=w * x, minlength=max_points)
        used = gw > 0
        x, w = gx[used] / gw[used], gw[used]
    if len(x) == 1:
        return x.copy(), np.ones(1), np.ones(1)
    mean_all = float(w @ x)
    std_all = float(np.sqrt(w @ (x - mean_all) ** 2)) or 1.0
    k = int(min(max_modes, len(x)))
    cdf = np.cumsum(w)
    qs = (np.arange(k) + 0.5) / k
    mu = x[np.minimum(np.searchsorted(cdf, qs), len(x) - 1)]
    var = np.full(k, (std_all / k) ** 2)
    floor = (1e-3 * std_all) ** 2
    pi = np.full(k, 1.0 / k)
    last = -np.inf
    for _ in range(n_iter):
        logp = np.log(pi)[None, :] - 0.5 * (_LOG_2PI + np.log(var))[None, :]
        logp = logp - 0.5 * (x[:, None] - mu[None, :]) ** 2 / var[None, :]
        lse = logsumexp(logp, axis=1)
        ll = float(w @ lse)
        r = np.exp(logp - lse[:, None])
        nk = w @ r
        keep = nk > 1e-3
        if not keep.all():
            r, nk, mu = r[:, keep], nk[keep], mu[keep]
        wr = w[:, None] * r
        mu = (wr * x[:, None]).sum(axis=0) / nk
        var = (wr * (x[:, None] - mu[None, :]) ** 2).sum(axis=0) / nk + floor
        pi = nk / nk.sum()
        if abs(ll - last) < tol * max(1.0, abs(ll)):
            break
        last = ll
    keep = pi >= min_weight
    order = np.argsort(-pi[keep], kind="stable")
    mu, std, pi = mu[keep][order], np.sqrt(var[keep])[order], pi[keep][order]
    return mu, std, pi / pi.sum()


class NumericEncoder(ColumnEncoder):
    """Encoder for ``continuous``, ``integer`` and ``datetime`` columns."""

    def __init__(
        self,
        spec: ColumnSpec,
        method: str = "gmm",
        max_modes: int = 10,
        max_fit_samples: int = 20_000,
        spike_share: float = 0.05,
        max_spikes: int = 8,
    ) -> None:
        super().__init__(spec)
        self.method = spec.encoder or method
        self.max_modes = max_modes
        self.max_fit_samples = max_fit_samples
        self.spike_share = spike_share
        self.max_spikes = max_spikes

    # values <-> floats ------------------------------------------------------------------
    def _values(self, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Float values (nulls filled with 0) and the null mask."""
        spec = self.spec
        null = self._null_mask(s)
        if spec.kind == "datetime":
            if spec.datetime_format is not None:
                parsed = pd.to_datetime(s, format=spec.datetime_format, errors="coerce")
                bad = parsed.isna().to_numpy() & ~null
                if bad.any():
                    example = s[bad].iloc[0]
                    raise DataError(
                        f"column {spec.name!r}: {int(bad.sum())} value(s) do not match the "
                        f"datetime format {spec.datetime_format!r}, e.g. {example!r}"
                    )
                s = parsed
            elif is_text_dtype(s.dtype) and pd.api.types.infer_dtype(s, skipna=True) in (
                "date",
                "datetime",
                "datetime64",
            ):  # an object column of datetime/date values
                s = object_datetimes(s)
            if not pd.api.types.is_datetime64_any_dtype(s.dtype):
                raise DataError(
                    f"column {spec.name!r} is declared datetime but has dtype {s.dtype}"
                )
            ints = datetime_to_int(s, spec.resolution or "ns")
            return (ints - self._offset).astype(np.float64), null
        if spec.dtype == DECIMAL and pd.api.types.is_object_dtype(s.dtype):
            pass  # decimal.Decimal values: converted to float64 below
        elif not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
            raise DataError(
                f"column {spec.name!r} is declared {spec.kind} but holds non-numeric values "
                f"(dtype {s.dtype})"
            )
        try:
            values = s.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"column {spec.name!r} is declared {spec.kind} but holds values that are not "
                f"numbers ({exc}); convert it with pd.to_numeric"
            ) from None
        if np.isinf(values).any():
            raise DataError(f"column {spec.name!r} has infinite values")
        return np.where(null, 0.0, values), null

    def _bounds(self) -> tuple[float | None, float | None]:
        spec = self.spec
        if spec.kind == "datetime":
            conv = [
                None if b is None else self._to_units(b) - self._offset
                for b in (spec.lower, spec.upper)
            ]
            return conv[0], conv[1]
        lo = None if spec.lower is None else float(spec.lower)
        hi = None if spec.upper is None else float(spec.upper)
        return lo, hi

    def _to_units(self, stamp: Any) -> int:
        """A bound (ISO string or timestamp) in resolution units; works outside 1677-2262."""
        ts = pd.Timestamp(stamp)
        if ts.tzinfo is not None:
            ts = ts.tz_convert("UTC").tz_localize(None)
        unit = self.spec.resolution or "ns"
        return int(ts.to_datetime64().astype(f"datetime64[{unit}]").astype(np.int64))

    # contract ---------------------------------------------------------------------------
    def fit(self, s: pd.Series, rng: np.random.Generator) -> NumericEncoder:
        spec = self.spec
        self._offset = 0
        if spec.kind == "datetime" and spec.lower is not None:
            self._offset = self._to_units(spec.lower)
        values, null = self._values(s)
        observed = values[~null]
        if len(observed) == 0:
            raise DataError(f"column {spec.name!r} has only missing values")
        big = float(np.abs(observed).max())
        if big > MAX_MAGNITUDE:  # squares and differences would overflow float64
            raise DataError(
                f"column {spec.name!r} holds values as large as {big:.3g}, beyond what the "
                f"encoder can represent (|value| <= {MAX_MAGNITUDE:.0e}); rescale the column"
            )
        if len(observed) > self.max_fit_samples:
            observed = rng.choice(observed, self.max_fit_samples, replace=False)
        uniq, counts = np.unique(observed, return_counts=True)
        return self._fit_counts(uniq, counts, spikes=True)

    def fit_public(self, histogram: tuple[np.ndarray, np.ndarray] | None = None) -> NumericEncoder:
        """Fit from public bounds and, optionally, a DP histogram ``(bin centres, noisy counts)``.

        Reads no data: with a histogram (centres in encoder coordinates, see
        :meth:`prepare_public`) the mixture or quantiles are fit to the noisy counts; without one
        the column is encoded by ``minmax`` over its declared bounds.
        """
        self.prepare_public()
        self.clip_ = True
        if histogram is None:
            self.method = "minmax"
            lo, hi = self._bounds()
            return self._fit_counts(np.array([lo, hi]), np.array([1.0, 1.0]), spikes=False)
        centres, counts = (np.asarray(a, dtype=np.float64) for a in histogram)
        keep = counts > 0
        if not keep.any():
            self.method = "minmax"
            lo, hi = self._bounds()
            return self._fit_counts(np.array([lo, hi]), np.array([1.0, 1.0]), spikes=False)
        return self._fit_counts(centres[keep], counts[keep], spikes=False)

    def prepare_public(self) -> tuple[float, float]:
        """Set the datetime offset from the declared lower bound; return the bounds in encoder
        coordinates, the space in which a DP histogram for :meth:`fit_public` is taken."""
        spec = self.spec
        if spec.lower is None or spec.upper is None:
            raise DataError(f"column {spec.name!r}: declare its lower and upper bounds")
        self._offset = self._to_units(spec.lower) if spec.kind == "datetime" else 0
        lo, hi = self._bounds()
        return float(lo), float(hi)  # type: ignore[arg-type]

    def encoded_values(self, s: pd.Series) -> tuple[np.ndarray, np.ndarray]:
        """Values in encoder coordinates (datetimes as offset units) and the null mask."""
        return self._values(s)

    def _fit_counts(self, uniq: np.ndarray, counts: np.ndarray, spikes: bool) -> NumericEncoder:
        """Fit from sorted distinct values and their (possibly noisy) counts."""
        share = counts / counts.sum()
        spike_idx = np.argsort(-share, kind="stable")[: self.max_spikes]
        spike_idx = spike_idx[share[spike_idx] >= self.spike_share] if spikes else spike_idx[:0]
        if len(spike_idx) == len(uniq):  # all values are frequent: no continuous part
            spike_idx = spike_idx[: self.max_spikes]
        self.spikes_ = uniq[spike_idx]
        self.spike_weights_ = share[spike_idx]
        rest = np.ones(len(uniq), dtype=bool)
        rest[spike_idx] = False
        r_vals, r_counts = uniq[rest], counts[rest]
        self.means_ = np.zeros(0)
        self.stds_ = np.zeros(0)
        self.weights_ = np.zeros(0)
        self.quantiles_ = np.zeros(0)
        self.refs_ = np.zeros(0)
        self.range_ = (0.0, 1.0)
        if len(r_vals):
            if self.method == "gmm":
                self.means_, self.stds_, self.weights_ = fit_mixture(
                    r_vals, r_counts, max_modes=self.max_modes
                )
            elif self.method == "quantile":
                cdf = np.cumsum(r_counts) / r_counts.sum()
                refs = np.linspace(0, 1, min(1000, len(r_vals)))
                q = r_vals[np.minimum(np.searchsorted(cdf, refs), len(r_vals) - 1)]
                q[0], q[-1] = r_vals[0], r_vals[-1]
                self.quantiles_, first = np.unique(q, return_index=True)
                self.refs_ = refs[first]
                self.weights_ = np.ones(1)
            elif self.method == "minmax":
                lo, hi = self._bounds()
                lo = float(r_vals.min()) if lo is None else lo
                hi = float(r_vals.max()) if hi is None else hi
                self.range_ = (lo, hi if hi > lo else lo + 1.0)
                self.weights_ = np.ones(1)
            else:
                raise DataError(f"column {self.spec.name!r}: unknown encoder {self.method!r}")
            self.weights_ = self.weights_ * (1.0 - self.spike_weights_.sum())
        self.fitted_ = True
        return self

    @property
    def n_modes(self) -> int:
        return len(self.spikes_) + len(self.weights_)

    def layout(self) -> list[tuple[str, int, str]]:
        self._check_fitted()
        out = [("value", 1, TANH)]
        if self.n_modes > 1:
            out.append(("mode", self.n_modes, SOFTMAX))
        if self.spec.nullable:
            out.append(("null", 2, SOFTMAX))
        return out

    def transform(self, s: pd.Series, out: np.ndarray, rng: np.random.Generator) -> None:
        """Write into ``out``, which must be zero-filled (the table allocates it so)."""
        self._check_fitted()
        x, null = self._values(s)
        if getattr(self, "clip_", False):  # public bounds: clip before any computation
            lo, hi = self._bounds()
            x = np.clip(x, lo, hi)
        n = len(x)
        n_spk = len(self.spikes_)
        mode = np.full(n, -1, dtype=np.int64)
        scalar = np.zeros(n, dtype=np.float64)
        if n_spk:
            pos = np.searchsorted(self.spikes_sorted_, x)
            pos = np.minimum(pos, n_spk - 1)
            hit = (self.spikes_sorted_[pos] == x) & ~null
            mode[hit] = self.spike_order_[pos[hit]]
        rest = (mode < 0) & ~null
        if rest.any():
            xr = x[rest]
            if self.method == "gmm":
                logp = np.log(self.weights_)[None, :] - np.log(self.stds_)[None, :]
                logp = logp - 0.5 * ((xr[:, None] - self.means_[None, :]) / self.stds_) ** 2
                logp -= logp.max(axis=1, keepdims=True)
                prob = np.exp(logp)
                cum = np.cumsum(prob, axis=1)
                u = rng.random(len(xr)) * cum[:, -1]
                comp = np.minimum((cum < u[:, None]).sum(axis=1), len(self.means_) - 1)
                scalar[rest] = (xr - self.means_[comp]) / (4 * self.stds_[comp])
                mode[rest] = n_spk + comp
            elif self.method == "quantile":
                scalar[rest] = 2 * np.interp(xr, self.quantiles_, self.refs_) - 1
                mode[rest] = n_spk
            else:
                lo, hi = self.range_
                scalar[rest] = 2 * (xr - lo) / (hi - lo) - 1
                mode[rest] = n_spk
        mode[null] = 0
        col = 0
        out[:, 0] = scalar
        col = 1
        if self.n_modes > 1:
            out[np.arange(n), col + mode] = 1
            col += self.n_modes
        if self.spec.nullable:
            out[:, col] = ~null
            out[:, col + 1] = null

    def inverse_transform(self, x: np.ndarray, rng: np.random.Generator) -> pd.Series:
        self._check_fitted()
        n = len(x)
        scalar = x[:, 0].astype(np.float64)
        col = 1
        if self.n_modes > 1:
            mode = argmax_rows(x[:, col : col + self.n_modes])
            col += self.n_modes
        else:
            mode = np.zeros(n, dtype=np.int64)
        null = np.zeros(n, dtype=bool)
        if self.spec.nullable:
            null = x[:, col + 1] > x[:, col]
        n_spk = len(self.spikes_)
        values = np.zeros(n, dtype=np.float64)
        is_spike = mode < n_spk
        if n_spk:
            values[is_spike] = self.spikes_[mode[is_spike]]
        rest = ~is_spike
        if rest.any() and len(self.weights_):
            comp = mode[rest] - n_spk
            sr = scalar[rest]
            if self.method == "gmm":
                values[rest] = sr * 4 * self.stds_[comp] + self.means_[comp]
            elif self.method == "quantile":
                values[rest] = np.interp((sr + 1) / 2, self.refs_, self.quantiles_)
            else:
                lo, hi = self.range_
                values[rest] = (sr + 1) / 2 * (hi - lo) + lo
        lo, hi = self._bounds()
        if lo is not None or hi is not None:
            values = np.clip(values, lo, hi)
        if self.spec.kind in ("integer", "datetime"):
            values = np.round(values)
        if self.spec.kind == "datetime":
            return restore_datetime(values.astype(np.int64) + self._offset, null, self.spec)
        return restore_numeric(values, null, self.spec)

    # state ------------------------------------------------------------------------------
    @property
    def spikes_sorted_(self) -> np.ndarray:
        return self.spikes_[self.spike_order_]

    @property
    def spike_order_(self) -> np.ndarray:
        return np.argsort(self.spikes_, kind="stable")

    def get_state(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "method": self.method,
            "offset": int(self._offset),
            "spikes": self.spikes_.tolist(),
            "spike_weights": self.spike_weights_.tolist(),
            "means": self.means_.tolist(),
            "stds": self.stds_.tolist(),
            "weights": self.weights_.tolist(),
            "quantiles": self.quantiles_.tolist(),
            "refs": self.refs_.tolist(),
            "range": list(self.range_),
            "clip": bool(getattr(self, "clip_", False)),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        self.method = state["method"]
        self._offset = int(state["offset"])
        self.spikes_ = np.asarray(state["spikes"], dtype=np.float64)
        self.spike_weights_ = np.asarray(state["spike_weights"], dtype=np.float64)
        self.means_ = np.asarray(state["means"], dtype=np.float64)
        self.stds_ = np.asarray(state["stds"], dtype=np.float64)
        self.weights_ = np.asarray(state["weights"], dtype=np.float64)
        self.quantiles_ = np.asarray(state["quantiles"], dtype=np.float64)
        self.refs_ = np.asarray(state["refs"], dtype=np.float64)
        self.range_ = tuple(state["range"])
        self.clip_ = bool(state.get("clip", False))
        self.fitted_ = True
