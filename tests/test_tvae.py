"""TVAE: network and loss on hand-made layouts, then fit/sample/conditions/persistence on tiny data."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import naive_nll

import tabsynth
from tabsynth.errors import DataError, HyperParameterError, SamplingError
from tabsynth.models.tvae import (
    TVAE,
    _Layout,
    _nets,
    _pad,
    _reconstruction,
    _reparameterise,
    _reparameterise_grad,
)
from tabsynth.privacy import write_linear_grads
from tabsynth.transform import Span


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny networks run fastest on one thread (and the test machine's cores are shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A layout like the transformer's: scalars and one-hot groups of several widths, interleaved.
SPANS = [
    Span("a", "value", 0, 1, "tanh"),
    Span("a", "mode", 1, 3, "softmax"),
    Span("a", "null", 4, 2, "softmax"),
    Span("b", "category", 6, 4, "softmax"),
    Span("c", "value", 10, 1, "tanh"),
    Span("c", "mode", 11, 3, "softmax"),
    Span("d", "category", 14, 2, "softmax"),
    Span("e", "value", 16, 1, "tanh"),
]
DIM = 17


def random_encoded(n: int, seed: int = 0) -> torch.Tensor:
    """A batch in transformer order: values in (-1, 1), exact one-hot groups."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, DIM)
    for s in SPANS:
        if s.activation == "tanh":
            x[:, s.start] = torch.rand(n, generator=g) * 2 - 1
        else:
            pick = torch.randint(0, s.width, (n,), generator=g)
            x[torch.arange(n), s.start + pick] = 1.0
    return x


# -- layout, loss and network --------------------------------------------------------------------
def test_layout_scalars_first_then_padded_groups():
    layout = _Layout(SPANS, DIM)
    assert layout.n_scalar == 3 and layout.n_segments == 5
    assert sorted(layout.perm.tolist()) == list(range(DIM))
    assert layout.perm[:3].tolist() == [0, 10, 16]
    # one-hot spans sorted by width; every position appears once, in a non-padded slot
    n_soft = DIM - 3
    seen = np.concatenate([idx[~pad] for idx, pad in layout.groups])
    assert sorted(seen.tolist()) == list(range(n_soft))
    for idx, pad in layout.groups:  # padding reads the -inf column after the one-hot block
        assert np.all(idx[pad] == n_soft)
    padded = np.concatenate([np.where(pad, -1, idx).reshape(-1) for idx, pad in layout.groups])
    assert np.array_equal(padded[layout.inverse], np.arange(n_soft))
    for _, pad in layout.groups:
        assert np.all((~pad).sum(1) >= 1)
        assert np.array_equal(pad, np.cumsum(pad, axis=1) > 0)  # padding only at the right


def test_layout_groups_split_only_when_padding_is_expensive():
    spans, start = [], 0
    for w in [2] * 6 + [3, 5, 200]:
        spans.append(Span(f"c{start}", "category", start, w, "softmax"))
        start += w
    layout = _Layout(spans, start)
    shapes = [idx.shape for idx, _ in layout.groups]
    # the wide column gets its own group; padding the narrow ones to 5 is cheaper than 3 groups
    assert shapes == [(8, 5), (1, 200)]


def test_layout_rejects_spans_that_do_not_tile():
    with pytest.raises(DataError, match="tile"):
        _Layout(SPANS[:-1], DIM)
    bad = [*SPANS[:-1], Span("e", "value", 16, 1, "sigmoid")]
    with pytest.raises(DataError, match="'e'.*sigmoid"):
        _Layout(bad, DIM)


@pytest.mark.parametrize("shared_scale", [False, True])
def test_fused_loss_and_gradients_match_per_span_reference(shared_scale):
    layout = _Layout(SPANS, DIM)
    perm = torch.as_tensor(layout.perm)
    x_t = random_encoded(64).double()
    g = torch.Generator().manual_seed(1)
    logits_t = (torch.randn(64, DIM, generator=g, dtype=torch.float64) * 3).requires_grad_()
    rows = 1 if shared_scale else 64  # the training step passes one row of scales for all
    log_sigma = torch.randn(rows, layout.n_scalar, generator=g, dtype=torch.float64) * 0.3
    log_sigma.requires_grad_()
    weights = torch.rand(64, generator=g, dtype=torch.float64)  # a non-uniform upstream gradient
    with torch.no_grad():
        got, grad_logits, grad_log_sigma = _reconstruction(
            _pad(logits_t[:, perm]), x_t[:, perm], log_sigma, layout.tensors("cpu"), weight=0.7
        )
    grad_logits, grad_log_sigma = grad_logits / 0.7, grad_log_sigma / 0.7  # weighted gradients
    want = naive_nll(SPANS, logits_t, x_t, log_sigma.expand(64, -1))
    want_logits, want_log_sigma = torch.autograd.grad((want * weights).sum(), (logits_t, log_sigma))
    torch.testing.assert_close(got, want)
    got_logits = torch.empty_like(grad_logits)
    got_logits[:, perm] = grad_logits * weights[:, None]  # back to transformer order
    torch.testing.assert_close(got_logits, want_logits)
    got_log_sigma = grad_log_sigma * weights[:, None]
    torch.testing.assert_close(
        got_log_sigma.sum(0, keepdim=True) if shared_scale else got_log_sigma, want_log_sigma
    )


def test_kl_is_zero_at_prior_and_positive_elsewhere():
    mu, logvar, noise = torch.zeros(3, 4), torch.zeros(3, 4), torch.zeros(3, 4)
    kl = _reparameterise(torch.cat([mu, logvar], 1), noise)[1]
    torch.testing.assert_close(kl, torch.zeros(3))
    assert torch.all(_reparameterise(torch.cat([mu + 0.5, logvar - 1.0], 1), noise)[1] > 0)


def test_reparameterisation_gradient_matches_autograd():
    g = torch.Generator().manual_seed(3)
    h = torch.randn(16, 10, generator=g, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(16, 5, generator=g, dtype=torch.float64)
    wz, wk = torch.randn(16, 5, generator=g, dtype=torch.float64), 0.7
    z, kl, noise_std, var_m1 = _reparameterise(h, noise)
    want = torch.autograd.grad((z * wz).sum() + wk * kl.sum(), h)[0]
    mu, logvar = h.chunk(2, dim=1)
    torch.testing.assert_close(z, mu + noise * torch.exp(0.5 * logvar))
    torch.testing.assert_close(kl, 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(1))
    with torch.no_grad():
        got = _reparameterise_grad(h, noise_std, var_m1, wz, wk)
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("dims", [((8,), (8,)), ((), ()), ((8, 6), (5,))])
def test_closed_form_step_matches_autograd(dims):
    """``elbo_terms`` (no autograd) gives the losses and, summed, the gradients of autograd."""
    layout = _Layout(SPANS, DIM)
    lt = layout.tensors("cpu")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = _nets().VAE(DIM, layout.n_scalar, 4, *dims)
        vae.log_scale.linear.weight.data.uniform_(-1.0, 0.0)
    n = 12
    perm = torch.as_tensor(layout.perm)
    x_t = random_encoded(n)
    noise = torch.randn(n, 4, generator=torch.Generator().manual_seed(2))
    rf, kw = 2.0, 0.3
    terms = vae.elbo_terms(x_t[:, perm], noise, lt, rf, kw)
    write_linear_grads(terms.uses, 1.0 / n)
    got = {k: p.grad.clone() for k, p in vae.named_parameters()}
    vae.zero_grad(set_to_none=True)
    logits, log_sigma, kl = vae(x_t[:, perm], noise)
    inverse = torch.argsort(perm)
    rec = naive_nll(SPANS, logits[:, inverse], x_t, log_sigma)
    (rf * rec + kw * kl).mean().backward()
    torch.testing.assert_close(terms.reconstruction, rec.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(terms.kl, kl.detach())
    for k, p in vae.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-4, atol=1e-6, msg=k)
    assert got["log_scale.linear.weight"].abs().sum() > 0


def test_loss_decreases_on_a_fixed_batch():
    layout = _Layout(SPANS, DIM)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        vae = _nets().VAE(DIM, layout.n_scalar, 8, (32,), (32,))
    x = random_encoded(128)[:, torch.as_tensor(layout.perm)]
    lt = layout.tensors("cpu")
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):
        terms = vae.elbo_terms(x, torch.randn(128, 8, generator=g), lt, 1.0, 0.01)
        write_linear_grads(terms.uses, 1.0 / 128)
        opt.step()
        losses.append(float(terms.reconstruction.mean() + 0.01 * terms.kl.mean()))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


# -- the model on tiny tables ----------------------------------------------------------------------
@pytest.fixture
def small_frame() -> pd.DataFrame:
    """A value depends on a category, plus a float missing only for category 'z'."""
    rng = np.random.default_rng(0)
    n = 300
    cat = rng.choice(["x", "y", "z"], n, p=[0.5, 0.3, 0.2])
    num = np.where(cat == "x", rng.normal(0, 1, n), rng.normal(10, 1, n))
    miss = np.where(cat == "z", np.nan, rng.normal(5, 2, n))
    return pd.DataFrame(
        {
            "cat": pd.Series(cat, dtype="category"),
            "num": num,
            "count": rng.integers(0, 20, n),
            "maybe": miss,
            "flag": rng.random(n) < 0.4,
        }
    )


def fast(**kw) -> TVAE:
    params = dict(
        epochs=5,
        batch_size=100,
        embedding_dim=16,
        compress_dims=(32,),
        decompress_dims=(32,),
        verbose=False,
        random_state=0,
        device="cpu",
    )
    params.update(kw)
    return TVAE(**params)


def test_defaults_match_the_reference_tvae():
    p = TVAE().get_params()
    assert p["embedding_dim"] == 128 and p["compress_dims"] == (128, 128)
    assert p["decompress_dims"] == (128, 128) and p["l2scale"] == 1e-5
    # one deliberate difference: epochs=None (stop on the validation ELBO) instead of 300
    assert p["batch_size"] == 500 and p["epochs"] is None and p["loss_factor"] == 2
    assert p["kl_weight"] == 1.0 and p["device"] == "auto" and p["max_fit_samples"] == 20_000
    assert p["epsilon"] is None and p["accountant"] == "prv" and p["max_grad_norm"] == 1.0
    assert "kl_weight=0.5" in repr(TVAE(kl_weight=0.5))


def test_fit_sample_dtypes_history_timings(mixed_frame):
    model = fast(epochs=3)
    assert model.fit(mixed_frame) is model
    out = model.sample(150)
    assert len(out) == 150
    assert list(out.columns) == list(mixed_frame.columns)
    assert out.dtypes.equals(mixed_frame.dtypes)
    assert list(model.history_["epoch"]) == [0, 1, 2]
    for col in ("loss", "reconstruction_loss", "kl_loss", "seconds"):
        assert np.isfinite(model.history_[col]).all(), col
    assert set(model.timings_) >= {"preprocess_s", "train_s"}
    assert out["row_id"].is_unique


def test_reconstruction_loss_decreases(small_frame):
    hist = fast(epochs=25).fit(small_frame).history_
    assert (
        hist["reconstruction_loss"].iloc[-3:].mean() < hist["reconstruction_loss"].iloc[:3].mean()
    )
    assert (hist["kl_loss"] >= 0).all()


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"embedding_dim": 0}, "embedding_dim"),
        ({"compress_dims": (16, -1)}, "compress_dims"),
        ({"decompress_dims": "64"}, "decompress_dims"),
        ({"loss_factor": 0}, "loss_factor"),
        ({"kl_weight": -1.0}, "kl_weight"),
        ({"l2scale": float("nan")}, "l2scale"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_hyper_parameters_raise(small_frame, kw, match):
    with pytest.raises(HyperParameterError, match=match):
        fast(**kw).fit(small_frame)


def test_kl_weight_zero_is_a_plain_autoencoder(small_frame):
    hist = fast(epochs=3, kl_weight=0.0).fit(small_frame).history_
    np.testing.assert_allclose(hist["loss"], 2.0 * hist["reconstruction_loss"], rtol=1e-6)


def test_reproducible_and_global_rng_untouched(small_frame):
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()
    a = fast(random_state=3).fit(small_frame)
    b = fast(random_state=3).fit(small_frame)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state[1])
    pd.testing.assert_frame_equal(
        a.history_.drop(columns="seconds"), b.history_.drop(columns="seconds")
    )
    for (k, v), (_, w) in zip(
        a.vae_.state_dict().items(), b.vae_.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k
    pd.testing.assert_frame_equal(a.sample(200, random_state=1), b.sample(200, random_state=1))
    pd.testing.assert_frame_equal(a.sample(50), b.sample(50))
    assert not a.sample(50).equals(a.sample(50))  # the model's own stream moves on
    c = fast(random_state=4).fit(small_frame)
    assert not c.sample(200, random_state=1).equals(a.sample(200, random_state=1))
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_learned_scales_stay_in_range(small_frame):
    model = fast(epochs=10).fit(small_frame)
    sigma = torch.exp(model.vae_.log_scale.linear.weight)
    assert sigma.shape == (model._layout.n_scalar, 1)
    assert torch.all(sigma >= 0.01 - 1e-6) and torch.all(sigma <= 1.0 + 1e-6)


def test_conditions_hold_for_every_row(small_frame):
    model = fast(epochs=10).fit(small_frame)
    out = model.sample(120, conditions={"cat": "z"})
    assert len(out) == 120 and (out["cat"] == "z").all()
    out = model.sample(80, conditions={"flag": True, "cat": "y"})
    assert len(out) == 80 and out["flag"].all() and (out["cat"] == "y").all()
    per_row = pd.DataFrame({"cat": ["x", "y", "z", "x"]})
    out = model.sample(None, conditions=per_row)
    assert out["cat"].tolist() == ["x", "y", "z", "x"]


def test_impossible_condition_raises_with_counts(small_frame):
    model = fast(epochs=3).fit(small_frame)
    # inside the column's domain, but a continuous value never lands in a 1e-9 wide window
    with pytest.raises(SamplingError, match=r"produce \d+ of 50 rows.*after generating \d+ rows"):
        model.sample(50, conditions={"num": (5.0, 5.0 + 1e-9)})
    assert model.last_sample_stats_["requested"] == 50
    assert model.last_sample_stats_["produced"] < 50


def test_save_load_round_trip(small_frame, tmp_path):
    model = fast(epochs=3).fit(small_frame)
    path = tmp_path / "model.tsyn"
    model.save(path)
    loaded = tabsynth.load(path)
    assert isinstance(loaded, TVAE)
    assert loaded.get_params() == model.get_params()
    for (k, v), (_, w) in zip(
        model.vae_.state_dict().items(), loaded.vae_.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k
    pd.testing.assert_frame_equal(
        model.sample(100, random_state=5), loaded.sample(100, random_state=5)
    )
    pd.testing.assert_frame_equal(model.history_, loaded.history_)


# -- missing-value structure -------------------------------------------------------------------------
def missing_share_by(real: pd.DataFrame, syn: pd.DataFrame, by: str, col: str, min_rows: int):
    counts = real[by].value_counts()
    keep = counts[counts >= min_rows].index
    r = real[real[by].isin(keep)].groupby(by, observed=True)[col].apply(lambda s: s.isna().mean())
    s = syn[syn[by].isin(keep)].groupby(by, observed=True)[col].apply(lambda s: s.isna().mean())
    return pd.concat({"real": r, "synthetic": s}, axis=1)


def test_missingness_follows_the_category_fast():
    """Fast variant: 'lab' is missing exactly for group 'c'. After a short fit the synthetic
    missing share is already far higher in 'c' than elsewhere (the +-5 points check is slow)."""
    rng = np.random.default_rng(0)
    n = 2000
    grp = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    df = pd.DataFrame(
        {
            "group": grp,
            "unit": np.select([grp == "a", grp == "b"], ["north", "east"], "south"),
            "level": np.select(
                [grp == "a", grp == "b"], [rng.normal(0, 1, n), rng.normal(10, 1, n)], 20.0
            ),
            "lab": np.where(grp == "c", np.nan, rng.normal(5, 2, n).round(1)),
        }
    )
    model = fast(epochs=40, embedding_dim=64, compress_dims=(64, 64), decompress_dims=(64, 64))
    shares = missing_share_by(df, model.fit(df).sample(4000, random_state=0), "group", "lab", 100)
    assert shares["real"].tolist() == [0.0, 0.0, 1.0]
    syn = shares["synthetic"]
    assert syn["c"] - max(syn["a"], syn["b"]) >= 0.35, shares
    assert max(syn["a"], syn["b"]) <= 0.2, shares


@pytest.mark.slow
def test_missingness_depends_on_diagnosis_patients():
    """make_patients: hba1c is measured only for diabetes diagnoses. The share of missing hba1c
    per diagnosis (diagnoses with >= 150 rows) stays within 5 points of the real one."""
    from tabsynth.datasets import make_patients

    df = make_patients(3000, random_state=0)[["diagnosis", "hba1c", "age", "sex", "ward"]]
    model = TVAE(epochs=300, batch_size=100, verbose=False, random_state=0, device="cpu")
    shares = missing_share_by(
        df, model.fit(df).sample(6000, random_state=0), "diagnosis", "hba1c", 150
    )
    assert len(shares) >= 4 and set(shares["real"].round(6)) == {0.0, 1.0}
    assert (shares["real"] - shares["synthetic"]).abs().max() <= 0.05, shares


def test_dp_refuses_a_schema_learned_from_data(small_frame):
    with pytest.raises(tabsynth.errors.PrivacyError, match="public schema"):
        fast(epsilon=1.0).fit(small_frame)


def test_span_order_permutation_inverts(small_frame):
    """``_generate`` returns transformer order: one-hot groups are exact, scalars finite."""
    model = fast(epochs=2).fit(small_frame)
    with torch.no_grad():
        out = model._generate(64, None, torch.Generator().manual_seed(0))
    assert out.shape == (64, model.transformer_.output_dim_)
    for s in model.transformer_.spans_:
        block = out[:, s.start : s.start + s.width]
        if s.activation == "softmax":
            assert torch.equal(block.sum(1), torch.ones(64)), s
            assert set(block.unique().tolist()) <= {0.0, 1.0}
        else:
            assert torch.isfinite(block).all()
    assert math.isfinite(float(out.abs().max()))


def test_generate_matches_per_span_reference(small_frame):
    """The vectorised sampler equals a per-span loop drawing the same random numbers:
    z ~ N(0, I); scalar = tanh(logit) + sigma * N(0, 1); one-hot by inverse CDF of the softmax."""
    model = fast(epochs=2).fit(small_frame)
    layout, n, ns = model._layout, 9, model._layout.n_scalar
    with torch.no_grad():
        got = model._generate(n, None, torch.Generator().manual_seed(5))
        g = torch.Generator().manual_seed(5)
        logits, log_sigma = model.vae_.decode(torch.randn(n, model.embedding_dim, generator=g))
        noise = torch.randn(n, ns, generator=g)
        want = torch.zeros(n, layout.dim)
        for j in range(ns):
            want[:, layout.perm[j]] = torch.tanh(logits[:, j]) + noise[:, j] * log_sigma[:, j].exp()
        for idx, pad in layout.groups:
            u = torch.rand(n, idx.shape[0], 1, generator=g)
            for r in range(idx.shape[0]):
                cols = [ns + int(c) for c in idx[r][~pad[r]]]
                cdf = torch.softmax(logits[:, cols], 1).cumsum(1)
                for i in range(n):
                    k = min(int((cdf[i] < u[i, r, 0]).sum()), len(cols) - 1)
                    want[i, layout.perm[cols[k]]] = 1.0
    torch.testing.assert_close(got, want, rtol=0, atol=0)


# ---------------------------------------------------------------------- epochs=None (#18)
def test_epochs_none_holds_out_rows_and_stops_within_the_budget(small_frame):
    model = fast(epochs=None, max_steps=600, patience=2).fit(small_frame)
    hist = model.history_
    val = hist["val_loss"].dropna()
    assert len(val) >= 2 and np.isfinite(val).all()
    # 270 training rows after the 10 % holdout: batch capped for ~10 steps per epoch
    assert model.batch_size_ == 32
    per_epoch = math.ceil(270 / 32)
    assert len(hist) * per_epoch < 600 + per_epoch  # the step budget bounds the fit
    # the learning rate only ever halves, once per validation stall
    lr = hist["lr"].to_numpy()
    assert (np.diff(lr) <= 0).all() and set(np.round(lr[0] / lr).astype(int)) <= {
        2**k for k in range(10)
    }


def test_epochs_none_restores_the_best_validation_weights(small_frame, monkeypatch):
    from tabsynth.models import _stopping

    restored = []
    real = _stopping.EarlyStopping.restore

    def spy(self):
        restored.append((self.best, self.stall))
        real(self)

    monkeypatch.setattr(_stopping.EarlyStopping, "restore", spy)
    model = fast(epochs=None, max_steps=400, patience=1).fit(small_frame)
    ((best, _stall),) = restored
    assert best == pytest.approx(model.history_["val_loss"].min())


def test_epochs_number_is_exact_and_uses_no_holdout(small_frame):
    model = fast(epochs=3).fit(small_frame)
    assert len(model.history_) == 3 and "val_loss" not in model.history_
    assert model.batch_size_ == 100


def test_epochs_none_is_reproducible(small_frame):
    a = fast(epochs=None, max_steps=200, random_state=4).fit(small_frame)
    b = fast(epochs=None, max_steps=200, random_state=4).fit(small_frame)
    pd.testing.assert_frame_equal(a.sample(50, random_state=1), b.sample(50, random_state=1))
