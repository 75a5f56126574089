"""The differentially private part of ``fit`` shared by both models.

Order of operations (every read of the private table is listed here, see docs/privacy.md):

1. The schema comes from metadata the user declared public; nothing is inferred from data.
2. The row count is public (``metadata.n_rows``) or released with Gaussian noise.
3. The noise of every mechanism is solved at once so the composed (epsilon, delta) meets the
   target: one Gaussian histogram per categorical/boolean column (the only source of the
   condition-vector probabilities), one noisy grid histogram per numeric column (the modes of
   its encoder; no mixture is fit on raw values), and DP-SGD with the exact number of steps.
4. The transformer is built from the schema plus those noisy histograms only.

The model's private training loop then reads the encoded rows only through a Poisson loader
and a DPOptimizer whose every step is counted by the ledger's guard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from opacus.optimizers import DPOptimizer
from torch import nn

from tabsynth.errors import PrivacyError
from tabsynth.metadata import Metadata
from tabsynth.privacy import (
    Calibration,
    DPSGDPlan,
    GaussianPlan,
    PoissonLoader,
    PrivacyLedger,
    calibrate,
    clip_linear_uses,
    dp_category_domain,
    dp_grid_histogram,
    dp_histogram,
    dpsgd_steps,
    make_dp_optimizer,
    make_poisson_loader,
    noisy_count,
    resolve_delta,
)
from tabsynth.transform import TableTransformer

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
    X: np.ndarray
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

    def loader(self, rows: torch.Tensor, generator: torch.Generator) -> PoissonLoader:
        """Poisson batches of ``rows`` (the encoded table, possibly column-permuted)."""
        loader = make_poisson_loader(
            rows, self.expected_batch, generator=generator, n=self.n_estimate
        )
        if loader.steps_per_epoch != self.steps_per_epoch:
            raise PrivacyError("internal: the Poisson loader's epoch length changed")
        return loader

    def optimizer(
        self,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        generator: torch.Generator,
        max_grad_norm: float,
        clipping: str = "per_sample",
    ) -> DPOptimizer:
        """The DPOptimizer of the calibrated plan, its steps counted by the budget guard."""
        dp_opt = make_dp_optimizer(
            module,
            optimizer,
            noise_multiplier=self.noise_multiplier,
            max_grad_norm=max_grad_norm,
            expected_batch_size=self.expected_batch,
            generator=generator,
            clipping=clipping,
        )
        self.calibration.guard(self.ledger).attach(dp_opt)
        return dp_opt


def _grid_bins(lo: float, hi: float, integer: bool) -> int:
    if integer and hi - lo + 1 <= _MAX_GRID_BINS:
        return max(int(hi - lo + 1), 1)
    return _MAX_GRID_BINS


def prepare_private_fit(
    df: pd.DataFrame,
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
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise PrivacyError(f"epsilon must be a positive number or None, got {epsilon!r}")
    if not math.isfinite(epsilon) or epsilon <= 0:
        raise PrivacyError(f"epsilon must be positive and finite, got {epsilon!r}")
    derive: list[str] = []
    if dp_domains:
        derive = [
            s.name
            for s in metadata
            if s.kind == "categorical" and (s.categories is None or not s.is_public("categories"))
        ]
        if derive:  # a private copy: the caller's metadata is not modified
            metadata = Metadata.from_dict(metadata.to_dict())
            for name in derive:  # placeholders, replaced by the DP release below
                metadata[name].categories = []
                metadata[name].origin["categories"] = "dp"
    problems = metadata.public_problems()
    if problems:
        raise PrivacyError(
            "differential privacy needs a public schema: these facts were learned from the "
            "data and would leak it. Declare them with metadata.update_column(...) (or, if "
            "every inferred fact is public knowledge such as a codebook, "
            "metadata.declare_public(); on the command line --declare-public), or let "
            "dp_domains=True derive undeclared category lists with DP: " + "; ".join(problems)
        )
    rng = np.random.default_rng([seed, 7])
    n_public = metadata.n_rows
    cat_cols = metadata.names_of("categorical", "boolean")
    num_cols = metadata.names_of("continuous", "integer", "datetime")
    plans = []
    if cat_cols:
        plans.append(
            GaussianPlan(
                "category-histograms",
                releases=len(cat_cols),
                what="one Gaussian histogram per categorical/boolean column",
            )
        )
    if num_cols:
        plans.append(
            GaussianPlan(
                "numeric-histograms",
                releases=len(num_cols),
                what="one Gaussian grid histogram per numeric/datetime column",
            )
        )
    if n_public is None:
        plans.append(GaussianPlan("row-count", weight=0.25, what="Gaussian noisy row count"))
        delta = PRIVATE_N_DELTA if delta is None else float(delta)
    else:
        delta = resolve_delta(delta, int(n_public))
    if derive:
        plans.append(
            GaussianPlan(
                "category-domains",
                releases=len(derive),
                threshold_delta=DOMAIN_DELTA_SHARE * delta / len(derive),
                what="one thresholded Gaussian histogram per undeclared category list",
            )
        )

    ledger = PrivacyLedger(
        delta=delta,
        n_treatment="public (declared)" if n_public is not None else "noisy count",
        schema_source="declared",
    )

    def solve(sample_rate: float, steps: int) -> Calibration:
        return calibrate(
            epsilon,
            delta,
            plans,
            DPSGDPlan("dp-sgd", sample_rate, steps, max_grad_norm=max_grad_norm),
            metadata_share=metadata_share,
        )

    # the Gaussian sigmas do not depend on the DP-SGD plan (the metadata share is solved on its
    # own), so a provisional plan gives the noise of the releases needed before n and the
    # category lists are known: the row count and the category domains
    early = [p.name for p in plans if p.name in ("row-count", "category-domains")]
    provisional = solve(0.01, 1) if early else None
    if n_public is None:
        n_est = noisy_count(
            len(df), provisional.sigma("row-count"), rng=rng, ledger=ledger, name="row-count"
        )
        if delta >= 1.0 / n_est:
            raise PrivacyError(
                f"delta={delta:g} is not below 1/n for this small table (noisy n={n_est}); "
                "pass a smaller delta"
            )
    else:
        n_est = int(n_public)
    expected_batch = int(min(batch_size, n_est))
    if derive:  # before the probe transformer, which needs every category list
        for name in derive:
            rel = dp_category_domain(
                df[name],
                provisional.sigma("category-domains"),
                rng=rng,
                ledger=ledger,
                name=f"category-domain:{name}",
                delta=DOMAIN_DELTA_SHARE * delta / len(derive),
            )
            if not rel.categories:
                raise PrivacyError(
                    f"column {name!r}: no category is frequent enough to survive the DP "
                    "threshold (every value is rare, as in an identifier); declare its "
                    "category list, or drop the column"
                )
            metadata[name].categories = list(rel.categories)
    probe = TableTransformer(metadata, random_state=seed)

    # numeric histograms are taken in encoder coordinates so they feed the encoder directly
    numeric_values = {c: probe.numeric_values(df, c) for c in num_cols}
    sample_rate = expected_batch / n_est
    steps_per_epoch = int(1 / sample_rate)  # what Opacus' DPDataLoader runs per epoch
    steps = dpsgd_steps(int(epochs), steps_per_epoch, int(critic_steps))
    cal = solve(sample_rate, steps)
    for name in early:
        if not math.isclose(cal.sigma(name), provisional.sigma(name), rel_tol=1e-12):
            raise PrivacyError(f"internal: the {name} noise changed between calibrations")

    histograms = {}
    for col in num_cols:
        values, null = numeric_values[col]
        lo, hi = probe.numeric_bounds(col)
        bins = _grid_bins(lo, hi, metadata[col].kind in ("integer",))
        x = np.where(null, np.nan, values)
        rel = dp_grid_histogram(
            x,
            lo,
            hi,
            bins,
            cal.sigma("numeric-histograms"),
            rng=rng,
            ledger=ledger,
            name=f"numeric-histogram:{col}",
        )
        centres = rel.centers()
        if bins == int(hi - lo + 1) and metadata[col].kind == "integer":
            centres = np.arange(lo, hi + 1, dtype=np.float64)
        histograms[col] = (centres, rel.counts)

    transformer = TableTransformer(metadata, random_state=seed).fit_public(histograms)
    X = transformer.transform(df)
    category_probs = {}
    for col in cat_cols:
        span = transformer.category_span(col)
        positions = np.argmax(X[:, span.start : span.stop], axis=1)
        rel = dp_histogram(
            positions,
            list(range(span.width)),
            cal.sigma("category-histograms"),
            rng=rng,
            ledger=ledger,
            name=f"category-histogram:{col}",
        )
        category_probs[col] = rel.probabilities()
    return PrivateFit(
        ledger,
        cal,
        transformer,
        X,
        n_est,
        expected_batch,
        steps_per_epoch,
        category_probs,
        metadata,
    )


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
    "finish_private_fit",
    "prepare_private_fit",
    "train_ctgan_private",
    "critic_clipped_grads",
    "train_tvae_private",
    "tvae_clipped_grads",
]


# ---------------------------------------------------------------------- training loops
def train_ctgan_private(model: Any, private: PrivateFit) -> None:
    """DP-SGD for the CTGAN critic; the generator sees only noise, DP frequencies and the critic.

    Per Poisson batch of real rows: each row's condition is derived from that row, each fake is
    generated for that condition (paired 1:1, no permutation), and the per-example loss
    ``-D(real_i) + D(fake_i) + lambda * GP_i`` is clipped per example with ghost clipping
    (``critic_clipped_grads``: the gradient penalty included, exactly) and noised by the
    DPOptimizer. The critic runs without dropout under DP. The generator step draws its
    conditions from the DP category frequencies and updates only the generator.
    """
    from tabsynth.models import ctgan as _ctgan  # noqa: PLC0415 - avoid an import cycle

    gen, dev = model._train_generator, model.device_
    G, D = model.generator_, model.discriminator_
    sampler, layout = model._sampler, model._layout
    has_cond = sampler.cond_dim > 0
    if has_cond:
        probs = np.concatenate([private.category_probs[c] for c in sampler.columns])
        sampler.set_counts(torch.as_tensor(probs * private.n_estimate, dtype=torch.float64))
    emb, d_steps = int(model.embedding_dim), int(model.discriminator_steps)
    clip = float(model.max_grad_norm)
    X = torch.as_tensor(private.X, device=dev)
    loader = private.loader(X, _cpu_generator(gen))
    opt_d = private.optimizer(
        D,
        _ctgan._adam(D, model.discriminator_lr, model.discriminator_decay, private=True),
        gen,
        clip,
        clipping="ghost",
    )
    opt_g = _ctgan._adam(G, model.generator_lr, model.generator_decay)
    D.eval()  # no dropout under DP
    lam = float(_ctgan._GP_LAMBDA)

    def condition_of(rows: torch.Tensor) -> torch.Tensor:
        if not has_cond:
            return rows.new_zeros(rows.shape[0], 0)
        return sampler.one_hot(sampler.conditions_of_rows(rows, gen))

    batches = loader.batches(private.steps)
    for _epoch in model._epochs():
        sum_g = 0.0
        for _ in range(private.steps_per_epoch):
            for _k in range(d_steps):
                real = next(batches).to(dev)
                b = real.shape[0]
                cond = condition_of(real)
                # the fakes of a critic step are paired with real rows (their conditions come
                # from those rows): the generator must not mix rows through BatchNorm batch
                # statistics nor update its running statistics from them, so it runs in eval
                G.eval()
                with torch.no_grad():
                    z = torch.randn(b, emb, generator=gen, device=dev)
                    fake = layout.activate(G(z, cond), tau=_ctgan._TAU, generator=gen)
                G.train()
                alpha = torch.rand(b, 1, generator=gen, device=dev)
                critic_clipped_grads(
                    D, torch.cat([real, cond], 1), torch.cat([fake, cond], 1), alpha, lam, clip
                )
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
            # generator step: noise + DP condition frequencies + the (DP) critic only
            B = private.expected_batch
            if has_cond:
                g = sampler.draw_conditions(
                    B, gen, log_frequency=model.log_frequency, training=True
                )
                cond = sampler.one_hot(g)
            else:
                g, cond = None, torch.zeros(B, 0, device=dev)
            z = torch.randn(B, emb, generator=gen, device=dev)
            logits = G(z, cond)
            fake = layout.activate(logits, tau=_ctgan._TAU, generator=gen)
            for p in D.parameters():
                p.requires_grad_(False)
            loss_g = -D(torch.cat([fake, cond], 1)).mean()
            if g is not None:
                loss_g = loss_g + sampler.cond_loss(logits, g)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            for p in D.parameters():
                p.requires_grad_(True)
            sum_g += float(loss_g.detach())
        model._log_epoch(loss_g=sum_g / max(private.steps_per_epoch, 1))


def critic_clipped_grads(
    D: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    lam: float,
    max_grad_norm: float,
) -> torch.Tensor:
    """Clip each example's gradient of ``D(fake_i) - D(real_i) + lam * GP_i`` and write the
    clipped sum into the critic's ``p.grad``; returns the per-example norms before clipping.

    The terms come in closed form from ``_Discriminator.wgan_gp_terms`` (rank one per example
    and layer, the gradient penalty's second-order term included), so ``clip_linear_uses``
    clips the exact per-example gradient without materialising it. One example per critic
    input (pac = 1) and no dropout, else the gradient of one example would mix records or
    the clipped sum would not match the update.
    """
    if getattr(D, "pac", 1) != 1:
        raise PrivacyError("DP critic: pac must be 1 (a pack would mix records in one gradient)")
    if D.training:
        raise PrivacyError("DP critic: run it in eval mode (no dropout under DP)")
    terms = D.wgan_gp_terms(real, fake, alpha, lam)
    return clip_linear_uses(terms.uses, max_grad_norm, module=D)


def train_tvae_private(model: Any, private: PrivateFit) -> None:
    """DP-SGD for the whole VAE (encoder, decoder and log-scales under one DPOptimizer).

    Every trainable parameter is a Linear weight or bias used once per forward, so each
    example's gradient of its ELBO term (reconstruction NLL + weighted KL, un-averaged) is a
    rank-one term per layer, computed in closed form (``_VAE.elbo_terms``, the same pass as
    non-private training). Ghost clipping (``privacy.ghost``) gets the per-example norms from
    ``||g_i|| ||a_i||`` and writes the clipped sum as one matmul per layer -- no per-sample
    gradient is materialised. The reparameterisation noise is drawn from the model's
    generator, one row per example, so every row of the loss depends on one record only.
    """
    gen, dev = model._train_generator, model.device_
    vae = model.vae_
    emb = int(model.embedding_dim)
    clip = float(model.max_grad_norm)
    Xp = torch.as_tensor(private.X, device=dev)[:, model._perm].contiguous()
    loader = private.loader(Xp, _cpu_generator(gen))
    opt = private.optimizer(vae, model._optimizer(private=True), gen, clip, clipping="ghost")
    batches = loader.batches(private.steps)
    for _epoch in model._epochs():
        for _ in range(private.steps_per_epoch):
            xb = next(batches).to(dev)
            noise = torch.randn(xb.shape[0], emb, generator=gen, device=dev)
            tvae_clipped_grads(model, xb, noise, clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            vae.log_scale.clamp_()
        model._log_epoch()  # no real-data loss is logged under DP


def tvae_clipped_grads(
    model: Any, xb: torch.Tensor, noise: torch.Tensor, max_grad_norm: float
) -> torch.Tensor:
    """Write the clipped sum of the per-example ELBO gradients into ``p.grad`` of the VAE and
    return the per-example norms before clipping (an empty batch writes zeros)."""
    terms = model._elbo_terms(xb, noise)
    return clip_linear_uses(terms.uses, max_grad_norm, module=model.vae_)


def _cpu_generator(device_generator: torch.Generator) -> torch.Generator:
    """Poisson sampling runs on the CPU: a CPU generator seeded from the model's generator."""
    seed = int(
        torch.randint(2**62, (1,), generator=device_generator, device=device_generator.device)
    )
    g = torch.Generator(device="cpu")
    g.manual_seed(seed)
    return g
