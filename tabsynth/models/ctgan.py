"""CTGAN-family model: conditional WGAN-GP with PacGAN packing and training-by-sampling."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from tabsynth import _distributed
from tabsynth._lazy import F, nn, torch
from tabsynth._params import check_dims, check_int, check_number
from tabsynth.errors import PrivacyError
from tabsynth.models import _nn
from tabsynth.models._stopping import auto_batch, step_budget
from tabsynth.models.base import BaseSynthesizer
from tabsynth.privacy.ghost import LinearUse, clip_linear_uses, write_linear_grads

if TYPE_CHECKING:  # the DP fit's plan; importing it at run time would load Opacus
    from tabsynth.models._private import PrivateFit
    from tabsynth.transform.compact import CompactTable

_GP_LAMBDA = 10.0
_TAU = 0.2


class CriticTerms(NamedTuple):
    """Per-pack scores and penalty of one critic step, and the rank-one gradient terms."""

    real: torch.Tensor  # (n,) D(real)
    fake: torch.Tensor  # (n,) D(fake)
    penalty: torch.Tensor  # (n,) (||dD/dx at the interpolate|| - 1)^2
    uses: list[LinearUse]  # the gradient of fake - real + lam * penalty, per pack


@functools.cache
def _nets() -> SimpleNamespace:
    """CTGAN's networks, defined on first use so that importing this file does not import torch
    (``tabsynth._lazy``): ``_nets().Generator``, ``.Discriminator``, ``.LeakyReLU``."""

    class _Residual(nn.Module):
        """Linear → BatchNorm → ReLU, concatenated with the block input (CTGAN's generator
        block)."""

        def __init__(self, in_dim: int, out_dim: int) -> None:
            super().__init__()
            self.fc = nn.Linear(in_dim, out_dim)
            self.bn = nn.BatchNorm1d(out_dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([F.relu(self.bn(self.fc(x))), x], dim=1)

    class _Generator(nn.Module):
        """CTGAN's residual generator on ``[z, condition]``: blocks ``x -> [relu(bn(fc(x))), x]``,
        then a Linear. (Splitting the weights by input block to skip the concatenations and the
        one-hot matmul was measured slower on CPU: three small matmuls cost more than one.)"""

        def __init__(self, in_dim: int, dims: Sequence[int], out_dim: int) -> None:
            super().__init__()
            blocks: list[nn.Module] = []
            width = in_dim
            for d in dims:
                blocks.append(_Residual(width, int(d)))
                width += int(d)
            blocks.append(nn.Linear(width, out_dim))
            self.seq = nn.Sequential(*blocks)

        def forward(self, z: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            """Logits for noise ``z`` and the condition vectors ``cond`` (one-hot, maybe 0 wide)."""
            return self.seq(torch.cat([z, cond], 1))

    class _LeakyReLU(nn.Module):
        """LeakyReLU as ``x * slope_mask`` with the mask detached.

        Same values and first derivative as ``F.leaky_relu``; but autograd's double backward of
        ``leaky_relu`` sends a zero gradient back through the whole forward graph, which the
        gradient penalty pays for with full-size matmuls of zeros. A detached mask has no such path.
        """

        def __init__(self, slope: float = 0.2) -> None:
            super().__init__()
            self.slope = float(slope)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                mask = torch.where(x > 0, 1.0, self.slope).to(x.dtype)
            return x * mask

    class _Discriminator(nn.Module):
        """Critic on packs of ``pac`` rows. No BatchNorm (per-sample gradients stay
        DP-compatible)."""

        def __init__(self, in_dim: int, dims: Sequence[int], pac: int, generator_fn: Any) -> None:
            super().__init__()
            self.pac = int(pac)
            self.pack_dim = in_dim * self.pac
            layers: list[nn.Module] = []
            width = self.pack_dim
            for d in dims:
                layers += [
                    nn.Linear(width, int(d)),
                    _LeakyReLU(0.2),
                    _nn.SeededDropout(0.5, generator_fn),
                ]
                width = int(d)
            layers.append(nn.Linear(width, 1))
            self.seq = nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.seq(x.reshape(-1, self.pack_dim))

        def _blocks(self) -> tuple[list[nn.Linear], list[tuple[float, _nn.SeededDropout | None]]]:
            linears: list[nn.Linear] = []
            after: list[tuple[float, _nn.SeededDropout | None]] = []
            for m in self.seq:
                if isinstance(m, nn.Linear):
                    linears.append(m)
                elif isinstance(m, _LeakyReLU):
                    after.append((m.slope, None))
                elif isinstance(m, _nn.SeededDropout):
                    active = self.training and m.p > 0
                    after[-1] = (after[-1][0], m if active else None)
                else:  # pragma: no cover - the constructor builds only these
                    raise TypeError(f"critic layer {type(m).__name__} has no closed form")
            return linears, after

        @torch.no_grad()
        def wgan_gp_terms(
            self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor, lam: float
        ) -> CriticTerms:
            """Scores, penalty and per-pack gradient terms of ``D(fake) - D(real) + lam * GP`` in
            closed form (no autograd graph, no double backward).

            ``real``/``fake``: (n, pack_dim) packs, ``alpha``: (n, 1). The critic is a LeakyReLU
            MLP (dropout masks are constants once drawn), so with ``delta_l`` the gradient of the
            output at layer l's pre-activation and ``a_{l-1}`` the layer input, the real and fake
            terms contribute ``-/+ delta_l a_{l-1}^T`` to W_l. The penalty depends on the weights
            only through ``v = dD/dx = W_1^T M_1 ... W_L^T`` (the slope pattern is piecewise
            constant), so its gradient w.r.t. W_l is ``delta_l t_{l-1}^T``, where ``t`` is
            ``rho = 2 lam (||v|| - 1) v / ||v||`` pushed forward through the linear maps and
            masks (a Jacobian-vector product). Every term is rank one per pack: DP-SGD clips them
            exactly (``privacy.clip_linear_uses``), plain training sums them
            (``privacy.write_linear_grads``). Tested against autograd's double backward.
            """
            linears, after = self._blocks()
            n = real.shape[0]
            x = torch.cat([real, fake, alpha * real + (1 - alpha) * fake], 0)
            inputs, masks = [], []
            for i, layer in enumerate(linears):
                inputs.append(x)
                x = torch.addmm(layer.bias, x, layer.weight.t())
                if i < len(after):
                    slope, dropout = after[i]
                    m = torch.where(x > 0, 1.0, slope).to(x.dtype)
                    if dropout is not None:
                        keep = 1.0 - dropout.p
                        draw = torch.rand(
                            x.shape, generator=dropout._get_generator(), device=x.device
                        )
                        m = m * (draw < keep).to(x.dtype) / keep
                    masks.append(m)
                    x = x * m
            deltas: list[torch.Tensor] = [x] * len(linears)
            d = x.new_ones(3 * n, 1)
            for i in range(len(linears) - 1, -1, -1):
                deltas[i] = d
                if i > 0:
                    d = (d @ linears[i].weight) * masks[i - 1]
            v = deltas[0][2 * n :] @ linears[0].weight  # dD/dx at the interpolates
            norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
            t = 2.0 * float(lam) * (norm - 1.0) * v / norm.clamp_min(1e-12)
            uses: list[LinearUse] = []
            for i, layer in enumerate(linears):
                a, dl = inputs[i], deltas[i]
                uses.append(LinearUse(layer, a[:n], -dl[:n]))
                uses.append(LinearUse(layer, a[n : 2 * n], dl[n : 2 * n]))
                uses.append(LinearUse(layer, t, dl[2 * n :], bias=False))
                if i < len(masks):
                    t = (t @ layer.weight.t()) * masks[i][2 * n :]
            out = x.squeeze(1)
            return CriticTerms(out[:n], out[n : 2 * n], ((norm - 1.0) ** 2).squeeze(1), uses)

    return SimpleNamespace(Generator=_Generator, Discriminator=_Discriminator, LeakyReLU=_LeakyReLU)


class _ConditionSampler:
    """Training-by-sampling without per-row Python work.

    Every category of every discrete column gets a *global* index ``g`` (its position in the
    condition vector). Rows are sorted once per column by category, so "a random row having
    category g" is ``order[col(g)][first(g) + floor(u * count(g))]`` for a whole batch at once.
    A (column, category) pair is drawn in one ``torch.multinomial`` over all categories:
    P(g) = 1/n_columns * p_column(g), with p ∝ log(1 + count) while training (rare categories are
    seen) and p ∝ count when sampling (empirical frequencies: no distortion of the marginals).
    """

    def __init__(self, transformer: Any, device: torch.device) -> None:
        self.device = device
        columns = list(transformer.discrete_columns_)
        spans = [transformer.category_span(c) for c in columns]
        self.columns = columns
        self.widths = np.array([int(s.width) for s in spans], dtype=np.int64)
        # exclusive cumulative sum: also right (empty) for a table without discrete columns,
        # where CTGAN trains unconditionally (no condition vector), as the paper's code does
        self.offsets = (np.cumsum(self.widths) - self.widths).astype(np.int64)
        self.starts = np.array([int(s.start) for s in spans], dtype=np.int64)
        self.cond_dim = int(self.widths.sum())
        n_cols = len(columns)
        self.col_of = torch.as_tensor(
            np.repeat(np.arange(n_cols, dtype=np.int64), self.widths), device=device
        )
        self.offset_of = torch.as_tensor(np.repeat(self.offsets, self.widths), device=device)
        max_w = int(self.widths.max()) if n_cols else 0
        # output positions of each column's one-hot, padded to the widest column
        pad = np.zeros((n_cols, max_w), dtype=np.int64)
        valid = np.zeros((n_cols, max_w), dtype=bool)
        for j in range(n_cols):  # per column, not per row
            pad[j, : self.widths[j]] = self.starts[j] + np.arange(self.widths[j])
            valid[j, : self.widths[j]] = True
        self.out_index = torch.as_tensor(pad, device=device)
        self.out_valid = torch.as_tensor(valid, device=device)
        self.counts: torch.Tensor | None = None

    # -- fitted state ---------------------------------------------------------------------
    def fit(self, X: CompactTable) -> None:
        """Per-column sorted row indices and per-category counts from the encoded table."""
        n = len(X)
        self.n_rows = n
        if not self.columns:
            self.counts = torch.zeros(0, device=self.device)
            return
        # one column at a time, the row order kept as int32 when it fits: on a 10M-row table
        # this is what bounds the sampler's memory
        small = n < 2**31
        self.order = torch.empty(
            len(self.columns) * n, dtype=torch.int32 if small else torch.long, device=self.device
        )
        col_first = torch.arange(len(self.columns), device=self.device) * n
        counts = torch.zeros(self.cond_dim, dtype=torch.float64, device=self.device)
        for j, s in enumerate(self.starts):
            codes = X.span_codes(int(s)).clamp_(min=0)
            self.order[j * n : (j + 1) * n] = torch.argsort(codes, stable=True)
            counts.index_add_(
                0,
                codes + int(self.offsets[j]),
                torch.ones(n, dtype=torch.float64, device=self.device),
            )
        self.set_counts(counts)
        self.row_count = counts  # real rows per category (``counts`` may later be replaced)
        cum = torch.cumsum(counts, 0) - counts  # exclusive cumsum over all categories
        first_in_col = cum - cum[torch.as_tensor(self.offsets, device=self.device)][self.col_of]
        self.row_start = (col_first[self.col_of] + first_in_col).long()

    def set_counts(self, counts: torch.Tensor) -> None:
        """Category counts → training (log) and sampling (empirical) probabilities.

        Also the entry point for externally computed (e.g. DP-noised) counts; row draws keep
        using the true per-category row counts found by ``fit``.
        """
        self.counts = counts.to(self.device, torch.float64)
        if not self.columns:
            return
        self.p_train = self._per_column(torch.log1p(self.counts))
        self.p_sample = self._per_column(self.counts)

    def _per_column(self, weights: torch.Tensor) -> torch.Tensor:
        totals = torch.zeros(len(self.columns), dtype=weights.dtype, device=self.device)
        totals.index_add_(0, self.col_of, weights)
        totals = torch.where(totals > 0, totals, torch.ones_like(totals))
        return (weights / totals[self.col_of] / len(self.columns)).float()

    # -- draws ------------------------------------------------------------------------------
    def draw_conditions(
        self, n: int, generator: torch.Generator, *, log_frequency: bool, training: bool
    ) -> torch.Tensor:
        """Global category indices, shape (n,)."""
        probs = self.p_train if (training and log_frequency) else self.p_sample
        return torch.multinomial(probs, n, replacement=True, generator=generator)

    def draw_rows(self, g: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """For each global category in ``g`` a uniformly random row that has it."""
        u = torch.rand(g.shape[0], generator=generator, device=self.device, dtype=torch.float64)
        count = self.row_count[g]
        pick = torch.minimum((u * count).long(), (count - 1).long())
        return self.order[self.row_start[g] + pick].long()

    def conditions_of_rows(self, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Condition derived FROM given encoded rows: a uniform column, that row's category.

        The DP path samples rows first (Poisson) and needs each row's condition to depend on
        that row only; with exact frequencies this equals training-by-sampling in law.
        """
        j = torch.randint(
            len(self.columns), (rows.shape[0],), generator=generator, device=self.device
        )
        values = torch.gather(rows, 1, self.out_index[j]).masked_fill(~self.out_valid[j], -1.0)
        return torch.as_tensor(self.offsets, device=self.device)[j] + values.argmax(1)

    def one_hot(self, g: torch.Tensor) -> torch.Tensor:
        return F.one_hot(g, self.cond_dim).float()

    def cond_loss(self, logits: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the generator's raw logits on the conditioned column (batched)."""
        col = self.col_of[g]
        gathered = torch.gather(logits, 1, self.out_index[col])
        gathered = gathered.masked_fill(~self.out_valid[col], float("-inf"))
        return F.cross_entropy(gathered, g - self.offset_of[g])


def _adam(module: nn.Module, lr: float, decay: float, private: bool = False) -> Any:
    """Adam(β=(0.5, 0.9)) as in CTGAN (see ``_nn.adam``)."""
    return _nn.adam(module.parameters(), lr, decay, betas=(0.5, 0.9), private=private)


class CTGAN(BaseSynthesizer):
    """Conditional tabular GAN (Xu et al. 2019), an own implementation tuned for speed.

    A residual generator learns to produce rows that a PacGAN critic (WGAN-GP) cannot tell from
    real ones. Each categorical value, numeric mode and null flag is a one-hot span generated
    through a Gumbel-softmax; training-by-sampling with a condition vector makes rare categories
    as visible to the generator as frequent ones, and ``sample(conditions=...)`` uses the same
    vector to steer generation. How it differs from the reference implementation and why is
    in ``docs/architecture.md``; speed figures are in ``docs/benchmarks.md``.

    Parameters
    ----------
    embedding_dim : int, default=128
        Size of the random noise vector fed to the generator.
    generator_dim : sequence of int, default=(256, 256)
        Widths of the generator's residual blocks (Linear + BatchNorm + ReLU).
    discriminator_dim : sequence of int, default=(256, 256)
        Widths of the critic's layers (Linear + LeakyReLU(0.2) + Dropout(0.5)).
    generator_lr, discriminator_lr : float, default=2e-4
        Adam learning rates (betas 0.5, 0.9).
    generator_decay, discriminator_decay : float, default=1e-6
        Adam weight decay.
    batch_size : int, default=500
        Rows per step; rounded to a multiple of ``pac`` and capped by the table size (warned).
        Under DP it is the expected size of the Poisson batches.
    discriminator_steps : int, default=1
        Critic steps per generator step (each one is a noisy step under DP).
    log_frequency : bool, default=True
        Draw training conditions with log-frequency (rare categories seen more often).
    pac : int, default=10
        Rows the critic judges together (PacGAN, against mode collapse). Set to 1 under DP,
        where each example must be one row (warned).
    epochs : int or None, default=300
        Passes over the table. ``None``: a training length fitted to the table, with no
        validation (a GAN has no held-out likelihood to stop on): the batch is capped so an
        epoch has about 10 steps on small tables and training runs 15,000 steps, but at most
        300 epochs and 20,000 steps (or ``max_steps``). Under DP ``None`` means a fixed plan
        of ``round(4 * epsilon)`` epochs (2-30).
    device : {"auto", "cpu", "cuda"} or torch device string, default="auto"
        ``"auto"`` trains on CUDA when available. A model trained on a GPU loads on CPU.
    verbose : bool, default=True
        Progress bar with the losses per epoch (and the privacy ledger under DP).
    random_state : int or None, default=None
        Seed of every draw of a non-DP fit and of sampling: the same seed gives bit-identical
        fits and samples on CPU. Under DP the privacy-relevant draws ignore it (OS entropy).
    max_fit_samples : int or None, default=20000
        Rows the column encoders are fitted on (a seeded subsample; None = all rows).
    epsilon : float or None, default=None
        Train with differential privacy at this (epsilon, delta) end to end; needs a public
        schema (see ``docs/privacy.md``).
    delta : float or None, default=None
        DP delta; None picks a value well below 1/n.
    max_grad_norm : float, default=1.0
        Per-example gradient clipping norm of DP-SGD.
    accountant : {"prv"}, default="prv"
        Privacy accountant of the ledger (PRV, with an RDP cross-check in the report).
    dp_domains : bool, default=False
        Under DP, derive undeclared category lists with a thresholded noisy histogram (paid
        from epsilon; rare values are dropped).
    rare_threshold : "auto", float, int or None, default="auto"
        Categorical values seen fewer times than this share one ``other`` slot, sampled back
        by their frequency: ``"auto"`` is max(5, 0.1 % of rows) in columns of over 50 distinct
        values; a float < 1 is a share of rows, a number >= 1 a count, ``None`` no grouping.
        Ignored under DP (the domain is declared or DP-derived).
    precision : {"fp32", "bf16"}, default="fp32"
        ``"bf16"`` trains under ``torch.autocast`` with bfloat16 matmuls (GPUs with bf16
        tensor cores; weights, optimizer state and gradients stay float32). Non-DP fits only:
        DP-SGD's per-example clipping needs exact float32 norms.
    max_steps : int or None, default=None
        With ``epochs=None``: the number of generator steps (default: from the table size).

    Attributes
    ----------
    metadata_ : Metadata
        The schema the model was fitted with (declared, inferred or DP-derived facts).
    transformer_ : TableTransformer
        The fitted reversible encoding of the table.
    history_ : pandas.DataFrame
        One row per epoch: ``generator_loss``, ``discriminator_loss`` and ``seconds`` (under DP
        only values that are DP, see ``docs/privacy.md``).
    n_rows_fit_ : int
        Rows the model was fitted on (under DP the noisy or declared count).
    batch_size_ : int
        The batch size actually used.
    device_ : torch.device
        Where the networks were trained.
    privacy_report_ : dict or None
        The DP ledger of the fit (also ``privacy_report()``); None without DP.
    last_sample_stats_ : dict or None
        Requested/produced/generated rows and acceptance rate of the last conditional sample.

    Examples
    --------
    >>> import tabsynth
    >>> from tabsynth.datasets import make_patients
    >>> real = make_patients(1000, random_state=0)
    >>> model = tabsynth.CTGAN(epochs=5, random_state=0, verbose=False).fit(real)
    >>> synthetic = model.sample(100, conditions={"ward": "icu"})
    >>> bool((synthetic["ward"] == "icu").all()), list(synthetic.columns) == list(real.columns)
    (True, True)
    """

    def __init__(
        self,
        embedding_dim: int = 128,
        generator_dim: Sequence[int] = (256, 256),
        discriminator_dim: Sequence[int] = (256, 256),
        generator_lr: float = 2e-4,
        generator_decay: float = 1e-6,
        discriminator_lr: float = 2e-4,
        discriminator_decay: float = 1e-6,
        batch_size: int = 500,
        discriminator_steps: int = 1,
        log_frequency: bool = True,
        pac: int = 10,
        epochs: int | None = 300,
        device: str = "auto",
        verbose: bool = True,
        random_state: int | None = None,
        max_fit_samples: int | None = 20_000,
        epsilon: float | None = None,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        accountant: str = "prv",
        dp_domains: bool = False,
        rare_threshold: float | str | None = "auto",
        precision: str = "fp32",
        max_steps: int | None = None,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.generator_dim = generator_dim
        self.discriminator_dim = discriminator_dim
        self.generator_lr = generator_lr
        self.generator_decay = generator_decay
        self.discriminator_lr = discriminator_lr
        self.discriminator_decay = discriminator_decay
        self.batch_size = batch_size
        self.discriminator_steps = discriminator_steps
        self.log_frequency = log_frequency
        self.pac = pac
        self.epochs = epochs
        self.device = device
        self.verbose = verbose
        self.random_state = random_state
        self.max_fit_samples = max_fit_samples
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.accountant = accountant
        self.dp_domains = dp_domains
        self.rare_threshold = rare_threshold
        self.precision = precision
        self.max_steps = max_steps

    #: ``epochs=None`` chooses the training length from the table size
    _auto_epochs: ClassVar[bool] = True
    #: one generator forward per iteration: the last critic step's fakes (and conditions)
    #: also feed the generator step, DCGAN-style. Turn off where the generator must not see
    #: conditions derived from real rows (the DP path draws them from DP frequencies instead).
    _reuse_fakes: ClassVar[bool] = True
    #: the DP loop's generator loss reads only the DP critic and fake rows: post-processing
    _dp_log_keys: ClassVar[tuple[str, ...]] = ("loss_g",)
    #: the generator's BatchNorm cannot train on a batch of one row
    _min_batch: ClassVar[int] = 2

    # -- validation ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        for name in ("embedding_dim", "pac", "discriminator_steps"):
            check_int(name, getattr(self, name))
        check_int("max_steps", self.max_steps, optional=True)
        for name in ("generator_dim", "discriminator_dim"):
            check_dims(name, getattr(self, name))
        for name in ("generator_lr", "discriminator_lr"):
            check_number(name, getattr(self, name), low_open=True)
        for name in ("generator_decay", "discriminator_decay"):
            check_number(name, getattr(self, name))

    def _pac(self) -> int:
        """Packing size in use: 1 under DP (a pack would mix records in one gradient)."""
        return 1 if self.epsilon is not None else int(self.pac)

    def _check_private_params(self) -> None:
        if int(self.pac) != 1:
            warnings.warn(
                f"CTGAN: pac={self.pac} mixes several records in one critic input, which "
                "differential privacy cannot allow; training with pac=1",
                UserWarning,
                stacklevel=4,
            )

    def _critic_steps(self) -> int:
        return int(self.discriminator_steps)

    def _train_private(self, private: PrivateFit) -> None:
        """DP-SGD for the critic; the generator sees only noise, DP frequencies and the critic.

        Per Poisson batch of real rows: each row's condition is derived from that row, each
        fake is generated for that condition (paired 1:1, no permutation), and the
        per-example loss ``-D(real_i) + D(fake_i) + lambda * GP_i`` is clipped per example
        with ghost clipping (``critic_clipped_grads``: the gradient penalty included, exactly)
        and noised by the DPOptimizer. The critic runs without dropout under DP. The generator
        step draws its conditions from the DP category frequencies and updates only the
        generator.
        """
        gen, dev = self._train_generator, self.device_
        G, D = self.generator_, self.discriminator_
        sampler, layout = self._sampler, self._layout
        has_cond = sampler.cond_dim > 0
        if has_cond:
            probs = np.concatenate([private.category_probs[c] for c in sampler.columns])
            sampler.set_counts(torch.as_tensor(probs * private.n_estimate, dtype=torch.float64))
        emb, d_steps = int(self.embedding_dim), int(self.discriminator_steps)
        clip = float(self.max_grad_norm)
        loader = private.loader(private.X.place(dev))  # dense batches on the device
        opt_d = private.optimizer(
            D,
            _adam(D, self.discriminator_lr, self.discriminator_decay, private=True),
            clip,
            clipping="ghost",
        )
        opt_g = _adam(G, self.generator_lr, self.generator_decay)
        D.eval()  # no dropout under DP

        def condition_of(rows: torch.Tensor) -> torch.Tensor:
            if not has_cond:
                return rows.new_zeros(rows.shape[0], 0)
            return sampler.one_hot(sampler.conditions_of_rows(rows, gen))

        batches = loader.batches(private.steps)
        for _epoch in self._epochs():
            sum_g = torch.zeros((), device=dev)  # summed on the device: no sync per step
            for _ in range(private.steps_per_epoch):
                for _k in range(d_steps):
                    real = next(batches).to(dev)
                    b = real.shape[0]
                    cond = condition_of(real)
                    # the fakes of a critic step are paired with real rows (their conditions
                    # come from those rows): the generator must not mix rows through BatchNorm
                    # batch statistics nor update its running statistics from them, so it
                    # runs in eval mode here
                    G.eval()
                    with torch.no_grad():
                        z = torch.randn(b, emb, generator=gen, device=dev)
                        fake = layout.activate(G(z, cond), tau=_TAU, generator=gen)
                    G.train()
                    alpha = torch.rand(b, 1, generator=gen, device=dev)
                    critic_clipped_grads(
                        D,
                        torch.cat([real, cond], 1),
                        torch.cat([fake, cond], 1),
                        alpha,
                        _GP_LAMBDA,
                        clip,
                    )
                    opt_d.step()
                    opt_d.zero_grad(set_to_none=True)
                # generator step: noise + DP condition frequencies + the (DP) critic only
                # noise only, no private row: at least 2 rows for the generator's BatchNorm
                # (a tiny noisy row count gives an expected batch of 1)
                B = max(private.expected_batch, 2)
                if has_cond:
                    g = sampler.draw_conditions(
                        B, gen, log_frequency=self.log_frequency, training=True
                    )
                    cond = sampler.one_hot(g)
                else:
                    g, cond = None, torch.zeros(B, 0, device=dev)
                z = torch.randn(B, emb, generator=gen, device=dev)
                logits = G(z, cond)
                fake = layout.activate(logits, tau=_TAU, generator=gen)
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
                sum_g += loss_g.detach()
            self._log_epoch(loss_g=float(sum_g) / max(private.steps_per_epoch, 1))

    def _batch_multiple(self) -> int:
        return self._pac()

    # -- networks -------------------------------------------------------------------------------
    def _build(self) -> None:
        tt = self.transformer_
        self._layout = _nn.SpanLayout(tt.spans_, tt.output_dim_)
        self._sampler = _ConditionSampler(tt, self.device_)
        data_dim = int(tt.output_dim_)
        cond_dim = self._sampler.cond_dim
        emb, g_dims, d_dims = (
            int(self.embedding_dim),
            list(self.generator_dim),
            list(self.discriminator_dim),
        )
        self._active_generator: torch.Generator | None = None
        nets = _nets()
        self.generator_ = _nn.seeded_module(
            lambda: nets.Generator(emb + cond_dim, g_dims, data_dim),
            self._init_generator,
            self.device_,
        )
        pac = self._pac()
        self.discriminator_ = _nn.seeded_module(
            lambda: nets.Discriminator(
                data_dim + cond_dim, d_dims, pac, lambda: self._active_generator
            ),
            self._init_generator,
            self.device_,
        )

    def _modules(self) -> dict[str, nn.Module]:
        return {"generator": self.generator_, "discriminator": self.discriminator_}

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {"category_counts": self._sampler.counts.detach().cpu().numpy()}

    def _gather_fitted_state(self) -> None:
        # each process trained on the category frequencies of its shard; the saved ones (the
        # sampling-time condition frequencies) are those of the whole table
        counts = self._sampler.counts.clone()
        _distributed.all_reduce_([counts], average=False)
        self._sampler.set_counts(counts)

    def _set_extra_state(self, state: dict[str, np.ndarray]) -> None:
        counts = np.asarray(state["category_counts"], dtype=np.float64)
        if set(state) != {"category_counts"} or counts.shape != (self._sampler.cond_dim,):
            raise ValueError(f"expected category_counts of shape ({self._sampler.cond_dim},)")
        if not (np.isfinite(counts).all() and (counts >= 0).all()):
            raise ValueError("category_counts must be finite and non-negative")
        self._sampler.set_counts(torch.as_tensor(counts))

    # -- training -------------------------------------------------------------------------------
    def _train(self, X: CompactTable) -> None:
        gen = self._train_generator
        self._active_generator = gen
        sampler, layout = self._sampler, self._layout
        sampler.fit(X)
        G, D = self.generator_, self.discriminator_
        opt_g = _adam(G, self.generator_lr, self.generator_decay)
        opt_d = _adam(D, self.discriminator_lr, self.discriminator_decay)
        pac, emb = self._pac(), int(self.embedding_dim)
        n = X.shape[0]
        if self.epochs is None:  # small tables: ~10 steps per epoch, a multiple of pac
            self.batch_size_ = max(2 * pac, auto_batch(self.batch_size_, n) // pac * pac)
        B = self.batch_size_
        steps = max(n // B, 1)
        if self.epochs is None:
            budget = step_budget(n, B, self.max_steps, max_epochs=300, min_steps=15_000)
            max_epochs = max(1, math.ceil(budget / steps))
        else:
            max_epochs = int(self.epochs)
        has_cond = sampler.cond_dim > 0
        dev = self.device_
        log_freq = bool(self.log_frequency)
        d_params = list(D.parameters())
        d_steps = int(self.discriminator_steps)
        reuse = bool(self._reuse_fakes)
        lam = _GP_LAMBDA

        def condition(
            b: int, with_rows: bool
        ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
            if not has_cond:
                rows = torch.randint(n, (b,), generator=gen, device=dev) if with_rows else None
                return None, torch.zeros(b, 0, device=dev), rows
            g = sampler.draw_conditions(b, gen, log_frequency=log_freq, training=True)
            rows = sampler.draw_rows(g, gen) if with_rows else None
            return g, sampler.one_hot(g), rows

        for _epoch in self._epochs(max_epochs):
            sum_d = torch.zeros((), device=dev)
            sum_g = torch.zeros((), device=dev)
            for _ in range(steps):
                for k in range(d_steps):
                    g, cond, rows = condition(B, True)
                    keep = reuse and k == d_steps - 1  # these fakes also serve the G step
                    z = torch.randn(B, emb, generator=gen, device=dev)
                    with torch.set_grad_enabled(keep):
                        logits = G(z, cond)
                        fake = layout.activate(logits, tau=_TAU, generator=gen)
                    real_cat = torch.cat([X.dense(rows), cond], 1)
                    fake_cat = torch.cat([fake.detach(), cond], 1)
                    pack_dim = D.pack_dim
                    alpha = torch.rand(B // pac, 1, generator=gen, device=dev)
                    terms = D.wgan_gp_terms(
                        real_cat.reshape(-1, pack_dim), fake_cat.reshape(-1, pack_dim), alpha, lam
                    )
                    n_packs = terms.real.shape[0]
                    opt_d.zero_grad(set_to_none=True)
                    write_linear_grads(terms.uses, 1.0 / n_packs)
                    loss_d = terms.fake.mean() - terms.real.mean() + lam * terms.penalty.mean()
                    opt_d.step()

                if not reuse:
                    g, cond, _ = condition(B, False)
                    z = torch.randn(B, emb, generator=gen, device=dev)
                    logits = G(z, cond)
                    fake = layout.activate(logits, tau=_TAU, generator=gen)
                for p in d_params:
                    p.requires_grad_(False)
                y_fake = D(torch.cat([fake, cond], 1))
                for p in d_params:
                    p.requires_grad_(True)
                loss_g = -y_fake.mean()
                if has_cond:
                    loss_g = loss_g + sampler.cond_loss(logits, g)
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                sum_d += loss_d.detach()
                sum_g += loss_g.detach()
            self._log_epoch(
                generator_loss=(sum_g / steps).item(), discriminator_loss=(sum_d / steps).item()
            )
        self._active_generator = None

    # -- sampling -------------------------------------------------------------------------------
    def _generate(
        self, n: int, cond: dict[str, Any] | None, generator: torch.Generator
    ) -> torch.Tensor:
        sampler, dev = self._sampler, self.device_
        self._active_generator = generator
        z = torch.randn(n, int(self.embedding_dim), generator=generator, device=dev)
        if sampler.cond_dim == 0:
            c = torch.zeros(n, 0, device=dev)
        else:
            g_fixed = self._condition_index(cond)
            if g_fixed is None:
                g = sampler.draw_conditions(n, generator, log_frequency=False, training=False)
            else:
                g = torch.full((n,), g_fixed, dtype=torch.long, device=dev)
            c = sampler.one_hot(g)
        out = self._layout.draw(self.generator_(z, c), generator)
        self._active_generator = None
        return out

    def _condition_index(self, cond: dict[str, Any] | None) -> int | None:
        """Global condition index of the rarest categorical condition (most to gain from it)."""
        if not cond:
            return None
        sampler = self._sampler
        best: tuple[float, int] | None = None
        for column, value in cond.items():
            if column not in sampler.columns:
                continue
            j = sampler.columns.index(column)
            g = int(sampler.offsets[j]) + int(self.transformer_.category_position(column, value))
            freq = float(sampler.p_sample[g])
            if best is None or freq < best[0]:
                best = (freq, g)
        return None if best is None else best[1]


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
