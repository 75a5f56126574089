"""TVAE-family model: a variational autoencoder over the ``TableTransformer`` encoding."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np

from tabsynth._lazy import F, nn, torch
from tabsynth._params import check_dims, check_int, check_number
from tabsynth.errors import DataError
from tabsynth.models import _nn
from tabsynth.models._stopping import EarlyStopping, auto_schedule, holdout_size
from tabsynth.models.base import BaseSynthesizer
from tabsynth.privacy.ghost import LinearUse, clip_linear_uses, write_linear_grads

if TYPE_CHECKING:  # the DP fit's plan; importing it at run time would load Opacus
    from tabsynth.models._private import PrivateFit
    from tabsynth.transform.compact import CompactTable

_LR = 1e-3
_LOG2E = 1.0 / math.log(2.0)
#: learned per-column scale of the scalar spans is kept in [0.01, 1] (as in the TVAE paper code)
_LOG_SIGMA_MIN = math.log(0.01)
_LOG_SIGMA_MAX = 0.0
_LOG_SIGMA_INIT = math.log(0.1)


class _Layout:
    """The decoder's output order and the index tables of the fused reconstruction loss.

    Decoder output order: every scalar span first, then the softmax spans sorted by width, so
    the scalars and the one-hot block are contiguous slices. ``perm[j]`` is the transformer
    column produced by decoder output ``j``.

    The one-hot spans are padded into a few *groups* (``(n_spans, width)`` index matrices into
    the one-hot block; padding, also marked in a mask, points at the column just after the
    block, which the loss and the sampler fill with ``-inf``, so padding gets probability 0
    without a masking pass): widths are split where padding would cost more
    than an extra group of ops, so a table with 40 distinct widths still takes ~3 groups, and a
    single very wide column does not inflate the narrow ones. ``inverse`` maps every one-hot
    position back into the concatenated padded groups (used by the backward pass).
    """

    #: padded elements per row that one extra group is worth (its ~10 ops' fixed overhead)
    GROUP_COST = 128

    def __init__(self, spans: Sequence[Any], output_dim: int) -> None:
        scalar: list[int] = []
        soft: list[tuple[int, int]] = []  # (width, start)
        for s in spans:
            if s.activation == "tanh":
                scalar.append(int(s.start))
            elif s.activation == "softmax":
                soft.append((int(s.width), int(s.start)))
            else:
                raise DataError(f"span of column {s.column!r}: unknown activation {s.activation!r}")
        soft.sort()
        order = list(scalar)
        for width, start in soft:
            order.extend(range(start, start + width))
        if sorted(order) != list(range(int(output_dim))):
            raise DataError(
                f"the transformer's spans do not tile its {output_dim} output columns exactly"
            )
        self.dim = int(output_dim)
        self.n_scalar = len(scalar)
        self.n_segments = len(soft)
        self.perm = np.asarray(order, dtype=np.int64)
        widths = [w for w, _ in soft]
        offsets = np.concatenate([[0], np.cumsum(widths)]).astype(np.int64)
        self.groups: list[tuple[np.ndarray, np.ndarray]] = []  # (index, pad mask), (n, W)
        inverse = np.zeros(int(offsets[-1]), dtype=np.int64)
        base = 0
        for lo, hi in self._split(widths):
            w = widths[hi - 1]
            idx = np.full((hi - lo, w), offsets[-1], dtype=np.int64)  # padding: the -inf column
            pad = np.ones((hi - lo, w), dtype=bool)
            for r, j in enumerate(range(lo, hi)):  # per span, at build time only
                idx[r, : widths[j]] = offsets[j] + np.arange(widths[j])
                pad[r, : widths[j]] = False
                inverse[offsets[j] : offsets[j + 1]] = base + r * w + np.arange(widths[j])
            self.groups.append((idx, pad))
            base += idx.size
        self.inverse = inverse

    def _split(self, widths: list[int]) -> list[tuple[int, int]]:
        """Contiguous ranges of the sorted widths minimising padded size + GROUP_COST per group."""
        n = len(widths)
        best = [0.0] + [math.inf] * n
        cut = [0] * (n + 1)
        for hi in range(1, n + 1):
            for lo in range(hi):
                cost = best[lo] + (hi - lo) * widths[hi - 1] + self.GROUP_COST
                if cost < best[hi]:
                    best[hi], cut[hi] = cost, lo
        out, hi = [], n
        while hi > 0:
            out.append((cut[hi], hi))
            hi = cut[hi]
        return out[::-1]

    def tensors(self, device: torch.device) -> _LayoutTensors:
        return _LayoutTensors(
            n_scalar=self.n_scalar,
            groups=[  # indices into the padded decoder output (scalars first)
                (
                    torch.as_tensor(self.n_scalar + i.reshape(-1), device=device),
                    torch.as_tensor(p, device=device),
                )
                for i, p in self.groups
            ],
            grad_index=torch.as_tensor(
                np.concatenate([np.arange(self.n_scalar), self.n_scalar + self.inverse]),
                device=device,
            ),
            last=[torch.as_tensor((~p).sum(1) - 1, device=device) for _, p in self.groups],
        )


@dataclass(frozen=True)
class _LayoutTensors:
    n_scalar: int
    groups: list[tuple[torch.Tensor, torch.Tensor]]  # flat index into the padded logits, pad mask
    grad_index: torch.Tensor  # decoder column j <- column j of [scalars | padded groups]
    last: list[torch.Tensor]  # per group: the last valid position of each span (width - 1)


def _pad(logits: torch.Tensor) -> torch.Tensor:
    """``logits`` with a last column of ``-inf`` appended (what the groups' padding reads)."""
    return F.pad(logits, (0, 1), value=-math.inf)


def _reconstruction(
    logits: torch.Tensor,
    x: torch.Tensor,
    log_sigma: torch.Tensor,
    lt: _LayoutTensors,
    weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-row negative log-likelihood of a batch and its gradients, in one pass.

    ``x`` (b, dim) in decoder order; ``logits`` (b, dim + 1) in decoder order with a last
    column of ``-inf`` (``_pad``: the padding of every group reads it); ``log_sigma`` is
    ``(batch, n_scalar)`` or ``(1, n_scalar)``. Scalar spans: Gaussian with mean
    ``tanh(logit)`` and scale ``exp(log_sigma)`` (the constant ``log sqrt(2 pi)`` is dropped).
    One-hot spans: cross-entropy, computed per padded group (see ``_Layout``) as
    ``sum(logsumexp) - sum(target * logit)``; targets are exact one-hots.

    Returns ``nll`` (b,) and ``weight`` (> 0) times its gradients: ``d nll_i / d logits_i``
    (b, dim) and ``d nll_i / d log_sigma`` (b, n_scalar): the closed forms
    ``softmax - target`` and the Gaussian's derivatives, so a training step has no autograd
    node for the loss (a dozen ops per group, none per column; the weight is folded into small
    tensors, not a pass of its own).
    """
    ns = lt.n_scalar
    b, dim = x.shape
    t = torch.tanh(logits[:, :ns])
    diff = x[:, :ns] - t
    scaled = diff * torch.exp(-2.0 * log_sigma)  # (x - mean) / sigma^2
    nll = (0.5 * diff * scaled + log_sigma).sum(1) if ns else logits.new_zeros(b)
    grad_log_sigma = (scaled * diff).sub_(1.0).mul_(-weight)
    # the gradient is written into one [scalars | padded groups] buffer, then gathered once
    buf = logits.new_empty(b, ns + sum(pad.numel() for _, pad in lt.groups))
    # weight * -(x - mean)/sigma^2 (1 - tanh^2)
    torch.mul(t.mul_(t).sub_(1.0), scaled.mul_(weight), out=buf[:, :ns])
    off = ns
    for flat, pad in lt.groups:
        v = logits.index_select(1, flat).view(b, *pad.shape)
        m = v.amax(-1, keepdim=True)
        e = torch.exp2(v.sub_(m).mul_(_LOG2E))  # exp2 is ~2x cheaper than exp on CPU
        s = e.sum(-1, keepdim=True)
        nll += (torch.log(s) + m).sum((1, 2))
        out = buf[:, off : off + pad.numel()].view(b, *pad.shape)
        torch.div(e, s.mul_(1.0 / weight), out=out)  # weight * softmax
        off += pad.numel()
    grad = buf.index_select(1, lt.grad_index)
    if lt.groups:
        nll -= (logits[:, ns:dim] * x[:, ns:]).sum(1)
        grad[:, ns:].sub_(x[:, ns:], alpha=weight)  # weight * (softmax - target)
    return nll, grad, grad_log_sigma


def _reparameterise(h: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``h = [mu, logvar]`` → ``z = mu + noise * exp(logvar / 2)``, the per-row
    KL(q(z|x) || N(0, I)) and what the backward pass reuses (``noise * std``, ``var - 1``)."""
    mu, logvar = h.chunk(2, dim=-1)
    std = torch.exp(0.5 * logvar)
    var_m1 = torch.addcmul(std.new_tensor(-1.0), std, std)  # var - 1, in one pass
    kl = 0.5 * (mu * mu).add_(var_m1).sub_(logvar).sum(-1)
    noise_std = noise * std
    return mu + noise_std, kl, noise_std, var_m1


def _reparameterise_grad(
    h: torch.Tensor,
    noise_std: torch.Tensor,
    var_m1: torch.Tensor,
    grad_z: torch.Tensor,
    kl_weight: float,
) -> torch.Tensor:
    """Gradient w.r.t. ``h`` of ``sum_i (grad_z_i . z_i + kl_weight * kl_i)``: three passes."""
    mu = h.chunk(2, dim=-1)[0]
    e = mu.shape[-1]
    out = h.new_empty(h.shape)
    torch.add(grad_z, mu, alpha=kl_weight, out=out[:, :e])  # d / d mu
    # d / d logvar = (grad_z * noise * std + kl_weight * (var - 1)) / 2
    torch.addcmul(var_m1 * (0.5 * kl_weight), grad_z, noise_std, value=0.5, out=out[:, e:])
    return out


class ElboTerms(NamedTuple):
    """Per-row loss terms of one VAE step and the rank-one gradient terms of their sum."""

    reconstruction: torch.Tensor  # (b,) NLL
    kl: torch.Tensor  # (b,) KL divergence
    uses: list[LinearUse]  # the gradient of sum_i (rec_weight * rec_i + kl_weight * kl_i)


def _mlp(in_dim: int, dims: Sequence[int]) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    width = in_dim
    for d in dims:
        layers += [nn.Linear(width, int(d)), nn.ReLU()]
        width = int(d)
    return nn.Sequential(*layers), width


@functools.cache
def _nets() -> SimpleNamespace:
    """TVAE's network, defined on first use so that importing this file does not import torch
    (``tabsynth._lazy``): ``_nets().VAE``."""

    class _LogScale(nn.Module):
        """Per-column log standard deviation of the scalar spans, shaped ``(batch, n_scalar)``.

        A bias-free ``Linear(1, n)`` applied to a constant input of ones: the parameter is an
        ordinary Linear weight, so per-example clipping treats it like every other layer (its
        rank-one term has the input 1).
        """

        def __init__(self, n: int) -> None:
            super().__init__()
            self.linear = nn.Linear(1, n, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.linear(x.new_ones(x.shape[0], 1))

        @torch.no_grad()
        def reset(self) -> None:
            self.linear.weight.fill_(_LOG_SIGMA_INIT)

        @torch.no_grad()
        def clamp_(self) -> None:
            self.linear.weight.clamp_(_LOG_SIGMA_MIN, _LOG_SIGMA_MAX)

    class _VAE(nn.Module):
        """Encoder, decoder and scalar log-scales in ONE module, so DP-SGD can clip all of them.

        Only Linear and ReLU layers (no BatchNorm), so every example's gradient is a sum of rank-one
        terms per layer (``elbo_terms``). The noise of the reparameterisation is an argument: the
        module itself draws nothing at random.
        """

        def __init__(
            self,
            data_dim: int,
            n_scalar: int,
            embedding_dim: int,
            compress_dims: Sequence[int],
            decompress_dims: Sequence[int],
        ) -> None:
            super().__init__()
            self.encoder, width = _mlp(data_dim, compress_dims)
            self.latent = nn.Linear(width, 2 * embedding_dim)  # mean and log-variance in one matmul
            body, width = _mlp(embedding_dim, decompress_dims)
            self.decoder = nn.Sequential(*body, nn.Linear(width, data_dim))
            self.log_scale = _LogScale(n_scalar)

        def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.decoder(z), self.log_scale(z)

        def forward(
            self, x: torch.Tensor, noise: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            """Decoder logits, scalar log-scales and the per-row KL term for a batch ``x`` (the
            differentiable reference of ``elbo_terms``)."""
            z, kl, _, _ = _reparameterise(self.latent(self.encoder(x)), noise)
            logits, log_sigma = self.decode(z)
            return logits, log_sigma, kl

        @torch.no_grad()
        def elbo_terms(
            self,
            x: torch.Tensor,
            noise: torch.Tensor,
            lt: _LayoutTensors,
            rec_weight: float,
            kl_weight: float,
        ) -> ElboTerms:
            """Per-row reconstruction NLL and KL of a batch ``x`` (decoder order) and the gradient
            of ``sum_i (rec_weight * rec_i + kl_weight * kl_i)`` as rank-one terms, in closed form.

            One forward pass keeps each Linear layer's input ``a``; the backward pass carries the
            loss gradient ``g`` at each layer's output (ReLU: zero where the output was; latent
            layer: the reparameterisation's derivative plus the KL's). Layer l's weight gradient is
            ``sum_i g_i a_i^T``: plain training sums it (``privacy.write_linear_grads``), DP-SGD
            clips it per example exactly (``privacy.clip_linear_uses``). No autograd graph: ~40
            fewer nodes per step and nothing recorded by hooks. Tested against autograd.
            """
            enc = [m for m in self.encoder if isinstance(m, nn.Linear)]
            dec = [m for m in self.decoder if isinstance(m, nn.Linear)]
            layers = [*enc, self.latent, *dec]
            inputs: list[torch.Tensor] = []
            h = x
            for layer in enc:
                inputs.append(h)
                h = torch.addmm(layer.bias, h, layer.weight.t()).relu_()
            inputs.append(h)
            hl = torch.addmm(self.latent.bias, h, self.latent.weight.t())
            h, kl, noise_std, var_m1 = _reparameterise(hl, noise)
            for layer in dec[:-1]:
                inputs.append(h)
                h = torch.addmm(layer.bias, h, layer.weight.t()).relu_()
            inputs.append(h)
            dim = dec[-1].out_features
            logits = x.new_empty(x.shape[0], dim + 1)  # the decoder's output, then -inf (see _pad)
            logits[:, dim] = -math.inf
            if torch.is_autocast_enabled(x.device.type):  # bf16: autocast has no out= form
                logits[:, :dim] = torch.addmm(dec[-1].bias, h, dec[-1].weight.t())
            else:
                torch.addmm(dec[-1].bias, h, dec[-1].weight.t(), out=logits[:, :dim])
            log_sigma = self.log_scale.linear.weight.t()  # (1, n_scalar)
            rec, g, g_log_sigma = _reconstruction(logits, x, log_sigma, lt, rec_weight)
            ones = x.new_ones(x.shape[0], 1)
            uses = [LinearUse(self.log_scale.linear, ones, g_log_sigma, bias=False)]
            z_layer = len(enc) + 1
            for i in range(len(layers) - 1, -1, -1):
                uses.append(LinearUse(layers[i], inputs[i], g))
                if i == 0:
                    break
                g = g @ layers[i].weight
                if i == z_layer:
                    g = _reparameterise_grad(hl, noise_std, var_m1, g, kl_weight)
                else:  # ReLU's derivative from its output, in one kernel
                    g = torch.ops.aten.threshold_backward(g, inputs[i], 0.0)
            return ElboTerms(rec, kl, uses)

    return SimpleNamespace(VAE=_VAE)


class TVAE(BaseSynthesizer):
    """Tabular variational autoencoder (Xu et al. 2019), an own implementation tuned for speed.

    An encoder MLP maps each row to a Gaussian latent code and a decoder MLP maps codes back to
    rows: a cross-entropy for every one-hot span (categories, numeric modes and null flags, so
    missingness is learned jointly with the values) and a Gaussian likelihood with a learned
    scale for every scalar. Sampling draws codes from N(0, I) and samples the decoder's
    distribution (not its argmax, which drops rare categories). A VAE has no condition input, so
    ``sample(conditions=...)`` uses the base class's vectorised rejection sampling: every
    returned row matches, or ``SamplingError`` says how many could be produced. Design notes are
    in ``docs/architecture.md``; speed and quality figures in ``docs/benchmarks.md``.

    Parameters
    ----------
    embedding_dim : int, default=128
        Size of the latent code.
    compress_dims : sequence of int, default=(128, 128)
        Widths of the encoder's Linear + ReLU layers.
    decompress_dims : sequence of int, default=(128, 128)
        Widths of the decoder's Linear + ReLU layers.
    l2scale : float, default=1e-5
        Adam weight decay (learning rate 1e-3).
    batch_size : int, default=500
        Rows per step, capped by the table size (warned). Under DP it is the expected size of
        the Poisson batches.
    epochs : int or None, default=None
        Passes over the table. ``None``: train until the validation loss (the ELBO of a
        held-out ``validation_share`` of the rows) stops improving, halving the learning rate
        at each stall, within a step budget (15,000 steps, but at most 400 epochs and 20,000
        steps; or ``max_steps``), and keep the best weights; on small tables the batch is
        capped so an epoch has about 10 steps. Under DP ``None`` means a fixed plan
        of ``round(4 * epsilon)`` epochs (2-30), nothing selected on private data.
    loss_factor : float, default=2.0
        Weight of the reconstruction term.
    kl_weight : float, default=1.0
        Weight of the KL term.
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
        Per-example gradient clipping norm of DP-SGD (exact ghost clipping).
    accountant : {"prv"}, default="prv"
        Privacy accountant of the ledger (PRV, with an RDP cross-check in the report).
    max_steps : int or None, default=None
        With ``epochs=None``: the step budget (default: grows with the table).
    patience : int, default=4
        With ``epochs=None``: validation stalls before training stops.
    validation_share : float, default=0.1
        With ``epochs=None``: the share of the rows held out for the validation loss.
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

    Attributes
    ----------
    metadata_ : Metadata
        The schema the model was fitted with (declared, inferred or DP-derived facts).
    transformer_ : TableTransformer
        The fitted reversible encoding of the table.
    history_ : pandas.DataFrame
        One row per epoch: ``loss``, ``reconstruction_loss``, ``kl_loss`` and ``seconds``
        (under DP only values that are DP, see ``docs/privacy.md``).
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
    >>> model = tabsynth.TVAE(epochs=5, random_state=0, verbose=False).fit(real)
    >>> synthetic = model.sample(100, random_state=1)
    >>> synthetic.dtypes.equals(real.dtypes)
    True
    """

    #: ``epochs=None`` trains until the validation ELBO stops improving
    _auto_epochs: ClassVar[bool] = True

    def __init__(
        self,
        embedding_dim: int = 128,
        compress_dims: Sequence[int] = (128, 128),
        decompress_dims: Sequence[int] = (128, 128),
        l2scale: float = 1e-5,
        batch_size: int = 500,
        epochs: int | None = None,
        loss_factor: float = 2.0,
        kl_weight: float = 1.0,
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
        patience: int = 4,
        validation_share: float = 0.1,
    ) -> None:
        self.embedding_dim = embedding_dim
        self.compress_dims = compress_dims
        self.decompress_dims = decompress_dims
        self.l2scale = l2scale
        self.batch_size = batch_size
        self.epochs = epochs
        self.loss_factor = loss_factor
        self.kl_weight = kl_weight
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
        self.patience = patience
        self.validation_share = validation_share

    # -- validation ---------------------------------------------------------------------------
    def _check_params(self) -> None:
        check_int("embedding_dim", self.embedding_dim)
        for name in ("compress_dims", "decompress_dims"):
            check_dims(name, getattr(self, name))
        check_number("loss_factor", self.loss_factor, low_open=True)
        check_number("kl_weight", self.kl_weight)
        check_number("l2scale", self.l2scale)
        check_int("max_steps", self.max_steps, optional=True)
        check_int("patience", self.patience)
        check_number("validation_share", self.validation_share, low_open=True, high=0.5)

    # -- networks -------------------------------------------------------------------------------
    def _build(self) -> None:
        tt = self.transformer_
        layout = _Layout(tt.spans_, tt.output_dim_)
        self._layout = layout
        self._lt = layout.tensors(self.device_)
        self._perm = torch.as_tensor(layout.perm, device=self.device_)
        emb = int(self.embedding_dim)
        comp, decomp = [int(d) for d in self.compress_dims], [int(d) for d in self.decompress_dims]
        self.vae_ = _nn.seeded_module(
            lambda: _nets().VAE(layout.dim, layout.n_scalar, emb, comp, decomp),
            self._init_generator,
            self.device_,
        )
        self.vae_.log_scale.reset()

    def _modules(self) -> dict[str, nn.Module]:
        return {"vae": self.vae_}

    def _elbo_terms(self, x: torch.Tensor, noise: torch.Tensor, scale: float = 1.0) -> ElboTerms:
        """Per-row loss terms of a batch ``x`` in decoder order and the gradient terms of
        ``scale * sum_i (loss_factor * rec_i + kl_weight * kl_i)``."""
        rf, kw = float(self.loss_factor) * scale, float(self.kl_weight) * scale
        return self.vae_.elbo_terms(x, noise, self._lt, rf, kw)

    def _optimizer(self, private: bool = False) -> Any:
        """Adam, lr 1e-3, weight decay ``l2scale`` (see ``_nn.adam``)."""
        return _nn.adam(self.vae_.parameters(), _LR, float(self.l2scale), private=private)

    # -- training -------------------------------------------------------------------------------
    def _train(self, X: CompactTable) -> None:
        gen, dev = self._train_generator, self.device_
        vae = self.vae_
        Xp = X.reorder(self._perm)  # rows come out in the decoder's column order

        def rows_of(idx: torch.Tensor) -> torch.Tensor:
            return Xp.dense(idx)

        n, B, emb = len(X), int(self.batch_size_), int(self.embedding_dim)
        rf, kw = float(self.loss_factor), float(self.kl_weight)
        opt = self._optimizer()
        auto = self.epochs is None
        n_val = holdout_size(n, self.validation_share) if auto else 0
        val = val_noise = None
        train_rows = None  # every row
        if n_val:  # epochs=None: a held-out slice and fixed noise for the validation ELBO
            perm = torch.randperm(n, generator=gen, device=dev)
            val, train_rows = rows_of(perm[:n_val]), perm[n_val:]
            n = train_rows.shape[0]
            val_noise = torch.randn(n_val, emb, generator=gen, device=dev)
        if auto:
            B, budget, max_epochs, every = auto_schedule(
                n, B, self.max_steps, max_epochs=400, min_steps=15_000
            )
            self.batch_size_ = B
        else:
            max_epochs, every, budget = int(self.epochs), 1, math.inf
        stopper = EarlyStopping({"vae": vae}, int(self.patience), opt, _LR)
        steps = 0
        for epoch in self._epochs(max_epochs):
            sum_rec = torch.zeros((), device=dev)
            sum_kl = torch.zeros((), device=dev)
            shuffled = torch.randperm(n, generator=gen, device=dev)
            if train_rows is not None:
                shuffled = train_rows[shuffled]
            for start in range(0, n, B):
                xb = rows_of(shuffled[start : start + B])
                noise = torch.randn(xb.shape[0], emb, generator=gen, device=dev)
                terms = self._elbo_terms(xb, noise, 1.0 / xb.shape[0])  # the batch mean
                write_linear_grads(terms.uses)
                opt.step()
                vae.log_scale.clamp_()
                sum_rec += terms.reconstruction.sum()
                sum_kl += terms.kl.sum()
                steps += 1
            rec_mean, kl_mean = (sum_rec / n).item(), (sum_kl / n).item()
            row = {
                "loss": rf * rec_mean + kw * kl_mean,
                "reconstruction_loss": rec_mean,
                "kl_loss": kl_mean,
            }
            last = epoch + 1 == max_epochs or steps >= budget
            if val is not None and ((epoch + 1) % every == 0 or last):
                with torch.no_grad():
                    t = self._elbo_terms(val, val_noise)
                    val_loss = float((rf * t.reconstruction + kw * t.kl).mean())
                row["val_loss"] = stopper.update(val_loss)
            if auto:
                row["lr"] = stopper.lr
            self._log_epoch(**row)
            if auto and (stopper.done or steps >= budget):
                break
        stopper.restore()

    def _train_private(self, private: PrivateFit) -> None:
        """DP-SGD for the whole VAE (encoder, decoder and log-scales under one DPOptimizer).

        Every trainable parameter is a Linear weight or bias used once per forward, so each
        example's gradient of its ELBO term (reconstruction NLL + weighted KL, un-averaged) is
        a rank-one term per layer, computed in closed form (``_VAE.elbo_terms``, the same pass
        as non-private training). Ghost clipping (``privacy.ghost``) gets the per-example
        norms from ``||g_i|| ||a_i||`` and writes the clipped sum as one matmul per layer --
        no per-sample gradient is materialised. The reparameterisation noise is drawn from the
        model's generator, one row per example, so every row of the loss depends on one
        record only.
        """
        gen, dev = self._train_generator, self.device_
        vae = self.vae_
        emb = int(self.embedding_dim)
        clip = float(self.max_grad_norm)
        # rows come out in the decoder's column order, expanded batch by batch on the device
        loader = private.loader(private.X.place(dev).reorder(self._perm))
        opt = private.optimizer(vae, self._optimizer(private=True), clip, clipping="ghost")
        batches = loader.batches(private.steps)
        for _epoch in self._epochs():
            for _ in range(private.steps_per_epoch):
                xb = next(batches).to(dev)
                noise = torch.randn(xb.shape[0], emb, generator=gen, device=dev)
                self._clipped_grads(xb, noise, clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
                vae.log_scale.clamp_()
            self._log_epoch()  # no real-data loss is logged under DP

    def _clipped_grads(
        self, xb: torch.Tensor, noise: torch.Tensor, max_grad_norm: float
    ) -> torch.Tensor:
        """Write the clipped sum of the per-example ELBO gradients into ``p.grad`` of the VAE
        and return the per-example norms before clipping (an empty batch writes zeros)."""
        terms = self._elbo_terms(xb, noise)
        return clip_linear_uses(terms.uses, max_grad_norm, module=self.vae_)

    # -- sampling -------------------------------------------------------------------------------
    def _generate(
        self, n: int, cond: dict[str, Any] | None, generator: torch.Generator
    ) -> torch.Tensor:
        """``n`` rows in transformer order; ``cond`` is ignored (the base rejects misses)."""
        lt, dev = self._lt, self.device_
        z = torch.randn(n, int(self.embedding_dim), generator=generator, device=dev)
        logits, log_sigma = self.vae_.decode(z)
        ns = lt.n_scalar
        out = logits.new_zeros(n, logits.shape[1])  # transformer order, written in place
        if ns:
            noise = torch.randn(n, ns, generator=generator, device=dev)
            value = torch.tanh(logits[:, :ns]) + noise * torch.exp(log_sigma)
            out.index_copy_(1, self._perm[:ns], value)
        padded = _pad(logits)
        for (flat, pad), last in zip(lt.groups, lt.last, strict=True):
            k = pad.shape[0]
            v = padded.index_select(1, flat).view(n, *pad.shape)
            # inverse CDF: one uniform per span (not one Gumbel draw per category)
            cdf = torch.softmax(v, -1).cumsum_(-1)
            u = torch.rand(n, k, 1, generator=generator, device=dev)
            pick = torch.minimum(torch.searchsorted(cdf, u).squeeze(-1), last)
            target = self._perm[flat.view(k, -1).gather(1, pick.t()).t()]
            out.scatter_(1, target, 1.0)
        return out


__all__ = ["TVAE"]
