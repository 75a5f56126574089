"""Gray-box DP invariants of the privacy layer (docs/privacy.md; dp.md section 4.4, P1)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from opacus.data_loader import DPDataLoader
from scipy.optimize import brentq
from scipy.stats import norm
from torch import nn

from tabsynth.errors import PrivacyError
from tabsynth.privacy import (
    BudgetGuard,
    DPSGDPlan,
    GaussianPlan,
    PrivacyLedger,
    calibrate,
    category_counts,
    compose_epsilon,
    dp_category_domain,
    dp_grid_histogram,
    dp_histogram,
    dp_quantiles,
    dpsgd_steps,
    gradient_penalty,
    grid_counts,
    make_dp_optimizer,
    make_poisson_loader,
    module_state,
    noisy_count,
    per_sample_grads,
    resolve_delta,
    single_example,
    threshold_delta,
    validate_dp_module,
    write_grad_samples,
)

DELTA = 1e-5


def exact_gaussian_epsilon(sigma: float, delta: float) -> float:
    """Exact epsilon of one Gaussian release (Balle & Wang 2018), independent of Opacus."""
    mu = 1.0 / sigma

    def gap(eps: float) -> float:
        return norm.cdf(-eps / mu + mu / 2) - math.exp(eps) * norm.cdf(-eps / mu - mu / 2) - delta

    return brentq(gap, 0.0, 100.0)


def small_ledger() -> PrivacyLedger:
    ledger = PrivacyLedger(delta=DELTA)
    ledger.add_gaussian("histogram:a", 20.0, what="histogram a")
    ledger.add_gaussian("histogram:b", 20.0)
    ledger.add_gaussian("grid:x", 30.0)
    ledger.add_dpsgd("dpsgd", 1.5, 0.05, 100, max_grad_norm=1.0)
    return ledger


# ---------------------------------------------------------------------------------- ledger
def test_prv_handles_plain_gaussian_release():
    for sigma in (1.0, 5.0, 40.0):
        ledger = PrivacyLedger()
        ledger.add_gaussian("g", sigma)
        exact = exact_gaussian_epsilon(sigma, DELTA)
        prv = ledger.epsilon(DELTA)
        assert exact - 1e-9 <= prv <= exact + 0.02  # PRV is an upper bound, error <= 0.01
        assert prv <= ledger.rdp_epsilon(DELTA) + 1e-6


def test_gaussian_releases_fold_exactly():
    # k releases at sigma are worth one release at sigma / sqrt(k)
    many = PrivacyLedger()
    for i in range(4):
        many.add_gaussian(f"h{i}", 10.0)
    one = PrivacyLedger()
    one.add_gaussian("h", 5.0)
    assert many.epsilon(DELTA) == pytest.approx(one.epsilon(DELTA), abs=1e-12)
    raw = RDPAccountant()
    raw.history = [(10.0, 1.0, 4)]
    assert many.rdp_epsilon(DELTA) == pytest.approx(raw.get_epsilon(DELTA), rel=1e-9)


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_report_reproduces_from_its_event_list():
    ledger = small_ledger()
    report = json.loads(json.dumps(ledger.report()))
    events = [(m["noise_multiplier"], m["sample_rate"], m["steps"]) for m in report["mechanisms"]]
    assert compose_epsilon(events, report["delta_accountant"])[0] == report["epsilon"]
    # independent recomputation with raw Opacus accountants over the unfolded events
    rdp = RDPAccountant()
    rdp.history = events
    assert report["rdp_epsilon"] == pytest.approx(rdp.get_epsilon(DELTA), rel=1e-9)
    prv = PRVAccountant()
    prv.history = events
    with np.errstate(all="ignore"):  # q = 1 makes PRV evaluate log(0) on a masked branch
        assert report["epsilon"] == pytest.approx(prv.get_epsilon(DELTA), abs=0.02)
    assert report["accountant"] == "prv"
    assert report["adjacency"] == "add/remove one row" and report["unit"] == "row"
    assert report["epsilon"] <= report["rdp_epsilon"] + 1e-6
    shares = {m["name"]: m["epsilon_alone"] for m in report["mechanisms"]}
    assert all(0 < v < report["epsilon"] for v in shares.values())
    dpsgd = report["mechanisms"][-1]
    assert (dpsgd["noise_multiplier"], dpsgd["sample_rate"], dpsgd["steps"]) == (1.5, 0.05, 100)
    assert dpsgd["noise_std"] == 1.5


def test_ledger_json_round_trip():
    ledger = small_ledger()
    ledger.n_treatment = "noisy"
    restored = PrivacyLedger.from_dict(json.loads(json.dumps(ledger.to_dict())))
    assert restored.to_dict() == ledger.to_dict()
    assert restored.report(per_mechanism=False) == ledger.report(per_mechanism=False)


def test_removing_a_mechanism_lowers_epsilon():
    ledger = small_ledger()
    full = ledger.epsilon()
    for name in ("histogram:a", "grid:x", "dpsgd"):
        assert ledger.without(name).epsilon() < full
    assert PrivacyLedger().epsilon(DELTA) == 0.0


@pytest.mark.parametrize(
    "events",
    [
        [(0.8, 0.01, 200)],
        [(3.0, 1.0, 1), (1.2, 0.1, 50)],
        [(50.0, 1.0, 3), (8.0, 0.02, 200)],
    ],
)
def test_prv_not_above_rdp(events):
    ledger = PrivacyLedger()
    for i, (sigma, q, steps) in enumerate(events):
        if q == 1.0:
            for j in range(steps):
                ledger.add_gaussian(f"g{i}.{j}", sigma)
        else:
            ledger.add_dpsgd(f"d{i}", sigma, q, steps)
    assert ledger.epsilon(DELTA) <= ledger.rdp_epsilon(DELTA) + 1e-6


def test_ledger_refuses_bad_events():
    ledger = PrivacyLedger()
    ledger.add_gaussian("h", 1.0)
    with pytest.raises(PrivacyError, match="already"):
        ledger.add_gaussian("h", 2.0)
    with pytest.raises(PrivacyError, match="positive"):
        ledger.add_gaussian("zero", 0.0)
    with pytest.raises(PrivacyError, match="sample_rate"):
        ledger.add_dpsgd("d", 1.0, 1.5, 10)
    with pytest.raises(PrivacyError, match="not allowed"):
        ledger.epsilon(DELTA, accountant="gdp")
    ledger.add_gaussian("thr", 1.0, extra_delta=2e-5)
    with pytest.raises(PrivacyError, match="extra delta"):
        ledger.epsilon(DELTA)


# ---------------------------------------------------------------------------------- budget
PLAN = [GaussianPlan("cat", weight=2.0, releases=3), GaussianPlan("num", releases=2)]


def test_calibrate_meets_target_step_exactly():
    steps = dpsgd_steps(epochs=2, steps_per_epoch=20, critic_steps=2)
    assert steps == 80
    cal = calibrate(1.0, DELTA, PLAN, DPSGDPlan("dpsgd", 0.05, steps, max_grad_norm=1.0))
    assert 0.98 <= cal.epsilon <= 1.0
    assert cal.epsilon <= cal.rdp_epsilon + 1e-6
    assert cal.metadata_epsilon == pytest.approx(0.1, rel=0.02)

    # run the plan through the real mechanisms and the guard
    rng = np.random.default_rng(0)
    ledger = PrivacyLedger(delta=DELTA)
    values = pd.Series(["a", "b"] * 50)
    for i in range(3):
        dp_histogram(values, ["a", "b"], cal.sigma("cat"), rng=rng, ledger=ledger, name=f"c{i}")
    for i in range(2):
        dp_grid_histogram(
            np.arange(100.0), 0, 100, 10, cal.sigma("num"), rng=rng, ledger=ledger, name=f"g{i}"
        )
    guard = cal.guard(ledger)
    while not guard.exhausted:
        guard.record_step()
    assert ledger["dpsgd"].steps == steps == guard.steps_taken
    cal.verify(ledger)
    assert ledger.epsilon() == pytest.approx(cal.epsilon, abs=1e-9)
    assert ledger.report()["epsilon"] <= 1.0
    with pytest.raises(PrivacyError, match="spent"):
        guard.record_step()
    ledger.add_gaussian("unplanned", 50.0)
    with pytest.raises(PrivacyError, match="more than the plan"):
        cal.verify(ledger)


def test_more_critic_steps_need_more_noise():
    one = calibrate(2.0, DELTA, dpsgd=DPSGDPlan("d", 0.05, dpsgd_steps(2, 20, 1)))
    five = calibrate(2.0, DELTA, dpsgd=DPSGDPlan("d", 0.05, dpsgd_steps(2, 20, 5)))
    assert five.noise_multiplier > one.noise_multiplier * 1.2
    assert one.epsilon <= 2.0 and five.epsilon <= 2.0


def test_calibrate_metadata_only_and_errors():
    cal = calibrate(1.0, DELTA, [GaussianPlan("h", releases=4)])
    assert 0.98 <= cal.epsilon <= 1.0 and cal.noise_multiplier is None
    with pytest.raises(PrivacyError, match="unique"):
        calibrate(1.0, DELTA, [GaussianPlan("d")], DPSGDPlan("d", 0.1, 10))
    with pytest.raises(PrivacyError, match="use up"):
        calibrate(1.0, DELTA, [GaussianPlan("h", threshold_delta=DELTA)])


def tiny_critic() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 8), nn.LeakyReLU(0.2), nn.LayerNorm(8), nn.Linear(8, 1))


def test_guard_stops_optimizer_before_an_extra_step():
    critic = tiny_critic()
    opt = make_dp_optimizer(
        critic,
        torch.optim.SGD(critic.parameters(), lr=0.1),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        expected_batch_size=4,
        generator=torch.Generator().manual_seed(0),
    )
    ledger = PrivacyLedger(delta=DELTA)
    guard = BudgetGuard(
        ledger, "dpsgd", noise_multiplier=1.0, sample_rate=0.1, planned_steps=2, max_grad_norm=1.0
    )
    guard.attach(opt)

    def loss(p, b, x):
        return single_example(critic, p, b, x).squeeze()

    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(2):
        write_grad_samples(critic, per_sample_grads(loss, *module_state(critic), x))
        opt.step()
        opt.zero_grad(set_to_none=True)
    before = [p.detach().clone() for p in critic.parameters()]
    write_grad_samples(critic, per_sample_grads(loss, *module_state(critic), x))
    with pytest.raises(PrivacyError, match="spent"):
        opt.step()
    assert all(torch.equal(a, p) for a, p in zip(before, critic.parameters(), strict=True))
    assert ledger["dpsgd"].steps == 2

    other = BudgetGuard(
        PrivacyLedger(), "d", noise_multiplier=2.0, sample_rate=0.1, planned_steps=5
    )
    other.attach(opt)
    opt.zero_grad(set_to_none=True)
    write_grad_samples(critic, per_sample_grads(loss, *module_state(critic), x))
    with pytest.raises(PrivacyError, match="noise multiplier"):
        opt.step()


def test_empty_poisson_batch_is_a_noisy_counted_step():
    critic = tiny_critic()
    opt = make_dp_optimizer(
        critic,
        torch.optim.SGD(critic.parameters(), lr=1.0),
        noise_multiplier=1.0,
        max_grad_norm=1.0,
        expected_batch_size=4,
        generator=torch.Generator().manual_seed(0),
    )
    ledger = PrivacyLedger(delta=DELTA)
    BudgetGuard(ledger, "d", noise_multiplier=1.0, sample_rate=0.1, planned_steps=3).attach(opt)
    before = torch.cat([p.detach().flatten() for p in critic.parameters()])
    empty = torch.zeros(0, 3)
    grads = per_sample_grads(critic_loss(critic), *module_state(critic), empty, empty, empty[:, :1])
    write_grad_samples(critic, grads)
    opt.step()
    after = torch.cat([p.detach().flatten() for p in critic.parameters()])
    assert ledger["d"].steps == 1 and not torch.equal(before, after)  # noise only, still a step


# ---------------------------------------------------------------------------------- metadata
def test_category_histogram_sensitivity_is_one_count():
    domain = ["a", "b", "c", None]
    base = pd.Series(["a"] * 5 + ["b"] * 3 + [None] * 2 + ["zz"])
    exact = category_counts(base, domain)
    assert exact.tolist() == [5, 3, 0, 2, 1]  # last cell: __other__ ("zz")
    for extra in ("a", "c", None, "ZZ_CANARY"):
        plus = pd.concat([base, pd.Series([extra])], ignore_index=True)
        diff = category_counts(plus, domain) - exact
        assert np.abs(diff).sum() == 1 and diff.max() == 1
    # end to end: same noise, no thresholding -> the released counts differ by one cell
    big = pd.Series(["a"] * 400 + ["b"] * 300 + ["c"] * 300)
    plus = pd.concat([big, pd.Series(["b"])], ignore_index=True)
    r0 = dp_histogram(
        big, domain[:3], 2.0, 0.0, rng=np.random.default_rng(7), ledger=PrivacyLedger(), name="h"
    )
    r1 = dp_histogram(
        plus, domain[:3], 2.0, 0.0, rng=np.random.default_rng(7), ledger=PrivacyLedger(), name="h"
    )
    np.testing.assert_allclose(r1.counts - r0.counts, [0, 1, 0], atol=1e-9)


def test_grid_histogram_sensitivity_is_one_count():
    base = np.array([0.5, 10.0, 55.0, 99.9, np.nan])
    exact = grid_counts(base, 0.0, 100.0, 10)
    assert exact.sum() == 5 and exact[-1] == 1  # last cell counts missing values
    for extra in (-50.0, 250.0, 42.0, np.nan):  # out-of-bounds values are clipped, not dropped
        diff = grid_counts(np.append(base, extra), 0.0, 100.0, 10) - exact
        assert np.abs(diff).sum() == 1 and diff.max() == 1


def test_dp_histogram_merges_rare_categories_and_records_itself():
    values = pd.Series(["x"] * 500 + ["y"] * 300 + ["rare"])
    ledger = PrivacyLedger(delta=DELTA)
    release = dp_histogram(
        values,
        ["x", "y", "rare", "unseen"],
        5.0,
        rng=np.random.default_rng(1),
        ledger=ledger,
        name="hist:col",
    )
    assert release.threshold == 15.0
    assert set(release.merged) == {"rare", "unseen"}
    freq = release.frequencies()
    assert freq.shape == (5,) and freq.sum() == pytest.approx(1.0) and (freq >= 0).all()
    probs = release.probabilities()
    assert probs.sum() == pytest.approx(1.0) and probs[2] == probs[3]
    assert abs(probs[0] - 500 / 801) < 0.05
    mech = ledger["hist:col"]
    assert (mech.noise_multiplier, mech.sample_rate, mech.steps) == (5.0, 1.0, 1)
    with pytest.raises(PrivacyError, match="Generator"):
        dp_histogram(values, ["x"], 5.0, rng=None, ledger=ledger, name="other")


def test_dp_domain_never_keeps_a_singleton():
    values = pd.Series(["common"] * 300 + ["medium"] * 60 + ["singleton"])
    sigma, delta0 = 2.0, 1e-6
    survived_common = 0
    for seed in range(1000):
        ledger = PrivacyLedger()
        release = dp_category_domain(
            values,
            sigma,
            rng=np.random.default_rng(seed),
            ledger=ledger,
            name="domain",
            delta=delta0,
        )
        assert "singleton" not in release.categories
        survived_common += "common" in release.categories
    assert survived_common == 1000
    assert ledger["domain"].extra_delta == pytest.approx(delta0, rel=1e-6)
    assert release.categories == ("common", "medium")


def test_dp_domain_threshold_delta_matches_survival_rate():
    # the charged delta is the survival probability of a count-1 value: check it empirically
    values = pd.Series(["common"] * 100 + ["singleton"])
    sigma, threshold = 1.0, 1.5
    expected = threshold_delta(sigma, threshold)
    hits = sum(
        "singleton"
        in dp_category_domain(
            values, sigma, threshold, rng=np.random.default_rng(s), ledger=PrivacyLedger(), name="d"
        ).categories
        for s in range(600)
    )
    assert abs(hits / 600 - expected) < 4.5 * math.sqrt(expected * (1 - expected) / 600)


def test_dp_quantiles_and_noisy_count():
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 100, 5000)
    ledger = PrivacyLedger(delta=DELTA)
    qs = dp_quantiles(values, 0, 100, [0.1, 0.5, 0.9], 5.0, rng=rng, ledger=ledger, name="q:x")
    np.testing.assert_allclose(qs, [10, 50, 90], atol=3)
    assert np.all(np.diff(qs) > 0)
    n = noisy_count(5000, 10.0, rng=rng, ledger=ledger)
    assert abs(n - 5000) < 60 and isinstance(n, int)
    assert {m.name for m in ledger.mechanisms} == {"q:x", "n"}


# ---------------------------------------------------------------------------------- DP-SGD
def test_poisson_sampler_inclusion_counts():
    n, q, T = 1000, 0.05, 5000
    skewed = torch.zeros(n)
    skewed[123] = 1.0  # the only row of a rare category: must be sampled like any other row
    X = torch.stack([torch.arange(n, dtype=torch.float32), skewed], dim=1)
    pl = make_poisson_loader(X, 50, generator=torch.Generator().manual_seed(0))
    assert isinstance(pl.loader, DPDataLoader)
    assert pl.sample_rate == q and pl.steps_per_epoch == 20
    counts = np.zeros(n)
    sizes = []
    for batch in pl.batches(T):
        counts[batch[:, 0].long().numpy()] += 1
        sizes.append(len(batch))
    half_width = 4.5 * math.sqrt(q * (1 - q) * T)
    assert np.all(np.abs(counts - q * T) <= half_width)
    assert abs(counts[123] - q * T) <= half_width
    sd = math.sqrt(n * q * (1 - q))
    assert abs(np.mean(sizes) - n * q) <= 4 * sd / math.sqrt(T)
    assert np.var(sizes) == pytest.approx(sd**2, rel=0.15)
    for batch in pl.batches(20):  # no row twice in a batch (sampling without replacement)
        assert len(set(batch[:, 0].tolist())) == len(batch)
    small = make_poisson_loader(torch.ones(20, 3), 1, generator=torch.Generator().manual_seed(0))
    shapes = [tuple(b.shape) for b in small.batches(60)]
    assert (0, 3) in shapes


def test_poisson_loader_of_an_empty_shard_yields_empty_batches():
    """A process of a distributed DP fit whose shard holds no row: q comes from the whole
    table's n, every batch is empty, and the epoch has the same int(1/q) steps."""
    pl = make_poisson_loader(torch.ones(0, 3), 10, generator=torch.Generator(), n=40)
    assert (pl.sample_rate, pl.steps_per_epoch) == (0.25, 4)
    batches = list(pl.batches(9))
    assert len(batches) == 9 and all(tuple(b.shape) == (0, 3) for b in batches)
    with pytest.raises(PrivacyError, match="non-empty"):
        make_poisson_loader(torch.ones(0, 3), 10, generator=torch.Generator())


def test_poisson_loader_is_reproducible():
    X = torch.arange(100.0).unsqueeze(1)

    def draw(seed):
        pl = make_poisson_loader(X, 10, generator=torch.Generator().manual_seed(seed))
        return [b[:, 0].tolist() for b in pl.batches(15)]

    assert draw(5) == draw(5) and draw(5) != draw(6)


def critic_loss(critic: nn.Module, lam: float = 10.0):
    """Per-example WGAN-GP critic loss: real term, paired fake term and the example's GP."""

    def loss(params, buffers, real, fake, alpha):
        def f(x):
            return single_example(critic, params, buffers, x).squeeze()

        x_hat = alpha * real + (1 - alpha) * fake
        return f(fake) - f(real) + lam * gradient_penalty(f, x_hat)

    return loss


def loop_critic_grads(critic, real, fake, alpha, lam=10.0):
    """Reference: one example at a time with plain autograd (create_graph for the GP)."""
    out = []
    for i in range(len(real)):
        critic.zero_grad()
        x_hat = (alpha[i] * real[i] + (1 - alpha[i]) * fake[i]).unsqueeze(0).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
        loss = critic(fake[i : i + 1]).sum() - critic(real[i : i + 1]).sum()
        (loss + lam * (g.norm() - 1) ** 2).backward()
        out.append({k: p.grad.detach().clone() for k, p in critic.named_parameters()})
    return out


def test_per_sample_grads_with_gradient_penalty_match_autograd():
    gen = torch.Generator().manual_seed(0)
    torch_seeded = torch.Generator().manual_seed(1)
    critic = tiny_critic()
    with torch.no_grad():
        for p in critic.parameters():
            p.copy_(torch.randn(p.shape, generator=torch_seeded) * 0.5)
    real, fake = torch.randn(8, 3, generator=gen), torch.randn(8, 3, generator=gen)
    alpha = torch.rand(8, 1, generator=gen)
    grads = per_sample_grads(critic_loss(critic), *module_state(critic), real, fake, alpha)
    for i, ref in enumerate(loop_critic_grads(critic, real, fake, alpha)):
        for k, g in ref.items():
            torch.testing.assert_close(grads[k][i], g, atol=1e-5, rtol=1e-5)
    empty = per_sample_grads(
        critic_loss(critic), *module_state(critic), real[:0], fake[:0], alpha[:0]
    )
    assert all(v.shape[0] == 0 for v in empty.values())


class TinyVAE(nn.Module):
    """Encoder/decoder with a free output-scale parameter (the TVAE ``sigma`` case)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 4)  # -> mu (2), logvar (2)
        self.dec = nn.Linear(2, 4)
        self.log_scale = nn.Parameter(torch.full((4,), -1.0))

    def elbo_loss(self, params, buffers, x, eps):
        h = torch.func.functional_call(self, (params, buffers), (x.unsqueeze(0),), strict=False)
        mu, logvar = h[0, :2], h[0, 2:]
        z = mu + eps * torch.exp(0.5 * logvar)
        rec = torch.func.functional_call(
            self.dec, {k[4:]: v for k, v in params.items() if k.startswith("dec.")}, (z,)
        )
        scale = torch.exp(params["log_scale"])
        nll = (((x - rec) / scale) ** 2 / 2 + params["log_scale"]).sum()
        kld = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum()
        return nll + kld

    def forward(self, x):
        return self.enc(x)


def test_per_sample_grads_elbo_with_free_scale_match_autograd():
    gen = torch.Generator().manual_seed(2)
    vae = TinyVAE()
    x, eps = torch.randn(6, 4, generator=gen), torch.randn(6, 2, generator=gen)
    params, buffers = module_state(vae)
    grads = per_sample_grads(vae.elbo_loss, params, buffers, x, eps)
    for i in range(6):
        vae.zero_grad()
        live = dict(vae.named_parameters())
        vae.elbo_loss(live, {}, x[i], eps[i]).backward()
        for k, p in vae.named_parameters():
            torch.testing.assert_close(grads[k][i], p.grad, atol=1e-5, rtol=1e-5)
    assert grads["log_scale"].abs().sum() > 0


def test_clipping_bounds_every_per_sample_norm():
    critic = tiny_critic()
    gen = torch.Generator().manual_seed(3)
    real, fake = torch.randn(8, 3, generator=gen) * 50, torch.randn(8, 3, generator=gen) * 50
    alpha = torch.rand(8, 1, generator=gen)
    grads = per_sample_grads(
        critic_loss(critic, lam=100.0), *module_state(critic), real, fake, alpha
    )
    C = 0.5
    opt = make_dp_optimizer(
        critic,
        torch.optim.SGD(critic.parameters(), lr=0.0),
        noise_multiplier=0.0,
        max_grad_norm=C,
        expected_batch_size=8,
        generator=torch.Generator(),
    )
    raw_norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads.values()], 1).norm(dim=1)
    assert (raw_norms > C).all()  # clipping is active for every example
    for i in range(8):
        write_grad_samples(critic, {k: g[i : i + 1] for k, g in grads.items()})
        opt.clip_and_accumulate()
        clipped = torch.cat([p.summed_grad.flatten() for p in critic.parameters()]).norm()
        assert clipped <= C * (1 + 1e-6)
        opt.zero_grad(set_to_none=True)


def test_one_step_sensitivity_replay():
    """One DP step on D and on D plus a forced extra record differ by at most C (noise 0)."""
    gen = torch.Generator().manual_seed(4)
    critic = tiny_critic()
    real, fake = torch.randn(10, 3, generator=gen), torch.randn(10, 3, generator=gen)
    alpha = torch.rand(10, 1, generator=gen)
    x_star, fake_star = torch.full((1, 3), 40.0), torch.randn(1, 3, generator=gen)
    C, B = 1.0, 10
    summed = []
    for r, f, a in (
        (real, fake, alpha),
        (torch.cat([real, x_star]), torch.cat([fake, fake_star]), torch.cat([alpha, alpha[:1]])),
    ):
        opt = make_dp_optimizer(
            critic,
            torch.optim.SGD(critic.parameters(), lr=0.0),
            noise_multiplier=0.0,
            max_grad_norm=C,
            expected_batch_size=B,
            generator=torch.Generator(),
        )
        write_grad_samples(
            critic, per_sample_grads(critic_loss(critic), *module_state(critic), r, f, a)
        )
        opt.step()
        summed.append(torch.cat([p.grad.flatten() for p in critic.parameters()]) * B)
        opt.zero_grad(set_to_none=True)
    gap = (summed[1] - summed[0]).norm()
    assert 0 < gap <= C + 1e-6


def test_seeded_noise_is_reproducible():
    def one_step(seed):
        critic = tiny_critic()
        with torch.no_grad():
            for p in critic.parameters():
                p.zero_()
        opt = make_dp_optimizer(
            critic,
            torch.optim.SGD(critic.parameters(), lr=1.0),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            expected_batch_size=4,
            generator=torch.Generator().manual_seed(seed),
        )
        x = torch.ones(4, 3)
        loss = critic_loss(critic)
        write_grad_samples(critic, per_sample_grads(loss, *module_state(critic), x, x, x[:, :1]))
        opt.step()
        return torch.cat([p.detach().flatten() for p in critic.parameters()])

    assert torch.equal(one_step(11), one_step(11))
    assert not torch.equal(one_step(11), one_step(12))


def test_module_validation_names_the_offending_layer():
    validate_dp_module(tiny_critic())  # LayerNorm is fine
    bn = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
    with pytest.raises(PrivacyError, match=r"1 \(BatchNorm1d\)"):
        validate_dp_module(bn)
    no_affine = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, affine=False))
    with pytest.raises(PrivacyError, match="BatchNorm1d"):
        validate_dp_module(no_affine)  # Opacus alone misses this one (no trainable params)
    with pytest.raises(PrivacyError, match="eval mode"):
        validate_dp_module(tiny_critic().eval())
    with pytest.raises(PrivacyError, match="BatchNorm1d"):
        make_dp_optimizer(
            bn,
            torch.optim.SGD(bn.parameters(), lr=0.1),
            noise_multiplier=1.0,
            max_grad_norm=1.0,
            expected_batch_size=4,
            generator=torch.Generator(),
        )


def test_dp_optimizer_setup_is_checked():
    critic = tiny_critic()
    partial = torch.optim.SGD(list(critic.parameters())[:2], lr=0.1)
    kwargs = dict(noise_multiplier=1.0, max_grad_norm=1.0, expected_batch_size=4)
    with pytest.raises(PrivacyError, match="exactly the module"):
        make_dp_optimizer(critic, partial, generator=torch.Generator(), **kwargs)
    full = torch.optim.SGD(critic.parameters(), lr=0.1)
    with pytest.raises(PrivacyError, match="Generator"):
        make_dp_optimizer(critic, full, **kwargs)
    try:
        import torchcsprng  # noqa: F401
    except ImportError:
        with pytest.raises(PrivacyError, match="torchcsprng"):
            make_dp_optimizer(critic, full, secure_mode=True, **kwargs)
    with pytest.raises(PrivacyError, match="no per-sample gradient"):
        write_grad_samples(critic, {"0.weight": torch.zeros(2, 8, 3)})


def test_resolve_delta():
    assert resolve_delta(None, 1000) == 1e-5
    assert resolve_delta(None, 1_000_000) == pytest.approx(1e-7)
    assert resolve_delta(1e-6, 1000) == 1e-6
    with pytest.raises(PrivacyError, match="1/n"):
        resolve_delta(1e-3, 1000)
    with pytest.raises(PrivacyError, match="1/n"):
        resolve_delta(0.02, 50)
    with pytest.warns(UserWarning, match="1/\\(10 n\\)"):
        resolve_delta(5e-4, 1000)
