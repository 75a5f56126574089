"""Shared fixtures: a small mixed-type frame and the location of ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
DATASETS = SHARED / "datasets"


def shared_manifest() -> dict:
    path = DATASETS / "manifest.json"
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def load_shared_table(name: str) -> tuple[pd.DataFrame, dict]:
    manifest = shared_manifest()
    if name not in manifest:
        pytest.skip(f"../shared/datasets has no {name!r} (shared data absent)")
    info = manifest[name]
    df = pd.read_csv(DATASETS / info["path"], **info.get("read_csv_kwargs", {}))
    return df, info


@pytest.fixture
def mixed_frame() -> pd.DataFrame:
    """Every supported dtype, with missing values where the dtype allows them."""
    rng = np.random.default_rng(0)
    n = 400
    df = pd.DataFrame(
        {
            "row_id": [f"R{i:05d}" for i in range(n)],
            "age": rng.integers(18, 90, n),
            "income": np.round(rng.lognormal(10, 0.5, n), 2),
            "visits": pd.array(rng.poisson(3, n), dtype="Int64"),
            "score": pd.array(rng.normal(0, 1, n), dtype="Float64"),
            "grade": pd.Categorical(rng.choice(list("ABCD"), n), categories=list("ABCDE")),
            "city": pd.Series(rng.choice(["Oslo", "Lima", "Pune"], n), dtype=object),
            "smoker": rng.random(n) < 0.3,
            "flag": pd.array(rng.choice([True, False], n), dtype="boolean"),
            "seen_at": pd.to_datetime("2020-01-01")
            + pd.to_timedelta(rng.integers(0, 10**8, n), unit="s"),
            "born": pd.to_datetime("1950-01-01")
            + pd.to_timedelta(rng.integers(0, 20000, n), unit="D"),
            "stamp_tz": (
                pd.to_datetime("2021-06-01") + pd.to_timedelta(rng.integers(0, 10**6, n), unit="s")
            ).tz_localize("Europe/Paris"),
        }
    )
    df.loc[::7, "income"] = np.nan
    df.loc[::5, "visits"] = pd.NA
    df.loc[::11, "score"] = pd.NA
    df.loc[::9, "grade"] = np.nan
    df.loc[::13, "city"] = np.nan
    df.loc[::6, "flag"] = pd.NA
    df.loc[::8, "seen_at"] = pd.NaT
    return df


# -- autograd references for the closed-form TVAE step ------------------------------------------
def naive_nll(spans, logits_t, x_t, log_sigma):
    """Reconstruction NLL with one plain autograd step per span, in transformer order.

    ``log_sigma`` holds one column per scalar (tanh) span, in span order."""
    import torch
    from torch.nn import functional as F

    out = torch.zeros(x_t.shape[0], dtype=logits_t.dtype)
    j = 0
    for s in spans:
        cols = slice(s.start, s.start + s.width)
        if s.activation == "tanh":
            mu = torch.tanh(logits_t[:, s.start])
            sig = log_sigma[:, j]
            out = out + 0.5 * ((x_t[:, s.start] - mu) / torch.exp(sig)) ** 2 + sig
            j += 1
        else:
            target = x_t[:, cols].argmax(1)
            out = out + F.cross_entropy(logits_t[:, cols], target, reduction="none")
    return out


def reference_elbo_rows(model, x, noise):
    """Per-row ``loss_factor * NLL + kl_weight * KL`` of a fitted TVAE by plain autograd;
    ``x`` in decoder order (as the training loop holds it)."""
    import torch

    logits, log_sigma, kl = model.vae_(x, noise)
    inverse = torch.argsort(model._perm)
    rec = naive_nll(model.transformer_.spans_, logits[:, inverse], x[:, inverse], log_sigma)
    return float(model.loss_factor) * rec + float(model.kl_weight) * kl
